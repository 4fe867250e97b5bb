//! PostgREST / Supabase mapping (SPEC §4.4): table or RPC from the path,
//! action from method and `Prefer`, filters from the query.

use serde_json::{Map, Value, json};

use crate::decode::Kind;
use crate::normalize::decoded_segments;
use crate::{Ctx, Intent, IntentError};

/// Query parameters that shape the result rather than select rows
/// (`_method` is a method override, judged as such, not a row filter).
const RESERVED: &[&str] = &[
    "_method",
    "select",
    "order",
    "limit",
    "offset",
    "on_conflict",
    "columns",
];

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

pub(crate) fn map(ctx: &Ctx<'_>) -> Result<Intent, IntentError> {
    let segs = decoded_segments(&ctx.req.path);
    let rest: &[String] = match segs.as_slice() {
        [a, b, rest @ ..] if a == "rest" && b == "v1" => rest,
        all => all,
    };
    let method = ctx.method();
    let (resource, action) = match rest {
        [rpc, f] if rpc == "rpc" => (format!("db.rpc.{f}"), "call".to_string()),
        [table] if table != "rpc" => (format!("db.{table}"), table_action(ctx)),
        [] => ("db".to_string(), table_action(ctx)),
        _ => return Err(bad(format!("unexpected PostgREST path {}", ctx.req.path))),
    };
    let mut filters = Map::new();
    for (k, v) in url::form_urlencoded::parse(ctx.raw_query.as_bytes()) {
        if RESERVED.contains(&k.as_ref()) {
            continue;
        }
        let v = Value::String(v.into_owned());
        match filters.get_mut(k.as_ref()) {
            None => {
                filters.insert(k.into_owned(), v);
            }
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let old = existing.take();
                *existing = Value::Array(vec![old, v]);
            }
        }
    }
    let (rows, body) = body_rows(ctx)?;
    let mut tables: Vec<String> = match rest {
        [table] if table != "rpc" => vec![table.clone()],
        _ => Vec::new(),
    };
    for (k, v) in url::form_urlencoded::parse(ctx.raw_query.as_bytes()) {
        if k == "select" {
            for t in embedded_tables(&v) {
                if !tables.contains(&t) {
                    tables.push(t);
                }
            }
        }
    }
    let mut args = json!({
        "tables": tables,
        "filters": filters.clone(),
        "rows": rows,
        "unfiltered": filters.is_empty(),
        "body": body,
    });
    if let Value::Object(m) = &mut args {
        let schema = if matches!(method, "GET" | "HEAD") {
            ctx.header("accept-profile")
        } else {
            ctx.header("content-profile")
        };
        if let Some(s) = schema {
            m.insert("schema".into(), Value::String(s.to_string()));
        }
        if let Some(p) = ctx.header("prefer") {
            m.insert("prefer".into(), Value::String(p.to_string()));
        }
    }
    Ok(Intent::new(resource, action, args))
}

/// PostgREST aggregates that look like an embedding with an empty list (`count()`).
const AGGREGATES: &[&str] = &["count", "sum", "avg", "max", "min"];

/// Tables embedded by a `select` list: `payment_tokens(*)`, aliased
/// `t:payment_tokens(*)`, hinted `payment_tokens!inner(*)` or
/// `payment_tokens!fk(*)`, spread `...payment_tokens(*)`, nested at any depth.
fn embedded_tables(select: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in select.char_indices() {
        match c {
            '(' => {
                let token = select.get(start..i).unwrap_or("").trim();
                let empty = select
                    .get(i + 1..)
                    .is_some_and(|r| r.trim_start().starts_with(')'));
                let name = token
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .split('!')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("...")
                    .trim_matches('"');
                // `col.sum()` is an aggregate, not an embedding.
                let aggregate = name.contains('.') || (empty && AGGREGATES.contains(&name));
                if !name.is_empty() && !aggregate && !out.iter().any(|t| t == name) {
                    out.push(name.to_string());
                }
                start = i + 1;
            }
            ',' | ')' => start = i + 1,
            _ => {}
        }
    }
    out
}

fn table_action(ctx: &Ctx<'_>) -> String {
    let merge = crate::header_lists(ctx.headers, "prefer", "resolution=merge-duplicates");
    match ctx.method() {
        "GET" | "HEAD" => "select".into(),
        "POST" if merge => "upsert".into(),
        "POST" => "insert".into(),
        "PATCH" => "update".into(),
        "PUT" => "upsert".into(),
        "DELETE" => "delete".into(),
        m => m.to_ascii_lowercase(),
    }
}

/// Rows in the body: array length, 1 for an object, CSV lines minus the
/// header; a body that is none of these cannot be judged.
fn body_rows(ctx: &Ctx<'_>) -> Result<(usize, Value), IntentError> {
    if ctx.body.is_empty() {
        return Ok((0, Value::Null));
    }
    let csv = ctx
        .header("content-type")
        .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("text/csv"));
    if csv {
        let text = String::from_utf8_lossy(&ctx.body.bytes);
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        return Ok((lines.saturating_sub(1), Value::Null));
    }
    let body = match (ctx.body.kind, ctx.body.json()) {
        (_, Ok(v)) => v,
        (Kind::Form, Err(_)) => ctx.body.args()?,
        (_, Err(e)) => return Err(e),
    };
    let rows = match &body {
        Value::Array(a) => a.len(),
        Value::Object(_) => 1,
        _ => 0,
    };
    Ok((rows, body))
}

#[cfg(test)]
mod tests {
    use crate::test_support::{map, one, req};
    use serde_json::json;

    const H: &str = "abc.supabase.co";

    #[test]
    fn tables_and_actions() {
        let i = one(&req(
            "GET",
            H,
            "/rest/v1/users?select=id,name&id=eq.5&order=id",
            &[],
            b"",
        ));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str()),
            ("db.users", "select")
        );
        assert_eq!(
            i.args,
            json!({"tables":["users"],"filters":{"id":"eq.5"},"rows":0,"unfiltered":false,"body":null})
        );
        let i = one(&req(
            "POST",
            H,
            "/rest/v1/users",
            &[("content-type", "application/json")],
            br#"[{"a":1},{"a":2}]"#,
        ));
        assert_eq!((i.action.as_str(), &i.args["rows"]), ("insert", &json!(2)));
        let i = one(&req(
            "POST",
            H,
            "/rest/v1/users",
            &[("prefer", "return=minimal, resolution=merge-duplicates")],
            br#"{"a":1}"#,
        ));
        assert_eq!((i.action.as_str(), &i.args["rows"]), ("upsert", &json!(1)));
        assert_eq!(
            one(&req("PUT", H, "/rest/v1/users?id=eq.1", &[], br#"{"a":1}"#)).action,
            "upsert"
        );
        let i = one(&req("PATCH", H, "/rest/v1/users", &[], br#"{"a":1}"#));
        assert_eq!(
            (i.action.as_str(), &i.args["unfiltered"]),
            ("update", &json!(true))
        );
        let i = one(&req("DELETE", H, "/rest/v1/users?limit=1", &[], b""));
        assert_eq!(
            (i.action.as_str(), &i.args["unfiltered"]),
            ("delete", &json!(true))
        );
        let i = one(&req(
            "DELETE",
            H,
            "/rest/v1/users?or=(id.eq.1,id.eq.2)",
            &[],
            b"",
        ));
        assert_eq!(i.args["filters"], json!({"or":"(id.eq.1,id.eq.2)"}));
        let i = one(&req("POST", H, "/rest/v1/rpc/reset_db", &[], br#"{"x":1}"#));
        assert_eq!(
            (i.resource.as_str(), i.action.as_str(), &i.args["body"]),
            ("db.rpc.reset_db", "call", &json!({"x":1}))
        );
    }

    #[test]
    fn embedded_resources_are_tables() {
        let tables = |select: &str| {
            one(&req(
                "GET",
                H,
                &format!("/rest/v1/users?select={select}"),
                &[],
                b"",
            ))
            .args["tables"]
                .clone()
        };
        assert_eq!(
            tables("id,payment_tokens(*)"),
            json!(["users", "payment_tokens"])
        );
        assert_eq!(
            tables("id,t:payment_tokens(*)"),
            json!(["users", "payment_tokens"])
        );
        assert_eq!(
            tables("id,payment_tokens!inner(token)"),
            json!(["users", "payment_tokens"])
        );
        assert_eq!(
            tables("id,tok:payment_tokens!fk_user!inner(*)"),
            json!(["users", "payment_tokens"])
        );
        assert_eq!(
            tables("id,...payment_tokens(*)"),
            json!(["users", "payment_tokens"])
        );
        assert_eq!(
            tables("id,orders(id,payment_tokens(*))"),
            json!(["users", "orders", "payment_tokens"])
        );
        assert_eq!(
            tables("id,%22payment_tokens%22(*)"),
            json!(["users", "payment_tokens"])
        );
        // Aggregates are not embeddings.
        assert_eq!(tables("count(),amount.sum()"), json!(["users"]));
        let rpc = one(&req(
            "POST",
            H,
            "/rest/v1/rpc/f?select=payment_tokens(*)",
            &[],
            b"",
        ));
        assert_eq!(rpc.args["tables"], json!(["payment_tokens"]));
    }

    #[test]
    fn evasions() {
        // Dot segments cannot move the call to another table.
        let i = one(&req("DELETE", H, "/rest/v1/logs/%2e%2e/users", &[], b""));
        assert_eq!(i.resource, "db.users");
        assert!(map(&req("DELETE", H, "/rest/v1/users/extra", &[], b"")).is_err());
        assert!(
            map(&req(
                "POST",
                H,
                "/rest/v1/users",
                &[("content-type", "application/json")],
                b"{bad"
            ))
            .is_err()
        );
    }
}
