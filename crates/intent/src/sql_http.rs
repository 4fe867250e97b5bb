//! SQL endpoints over HTTP (SPEC §4.4): the SQL texts and bind parameters in
//! Neon, libSQL / Turso and Cloudflare D1 request bodies.

use serde_json::Value;

use crate::normalize::decoded_segments;
use crate::sql::{Flavor, SqlText, intent_without_sql, many};
use crate::{Ctx, Intent, IntentError};

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

/// Bind parameters next to a statement: Neon and D1 `params`, Hrana `args`
/// and `named_args` (both kept, in that order).
fn params_of(m: &serde_json::Map<String, Value>) -> Value {
    let mut out = Vec::new();
    for key in ["params", "args", "named_args"] {
        match m.get(key) {
            Some(Value::Array(a)) => out.extend(a.iter().cloned()),
            Some(Value::Null) | None => {}
            Some(other) => out.push(other.clone()),
        }
    }
    Value::Array(out)
}

/// Every string under an `sql` key, anywhere (Hrana pipelines, batches,
/// `store_sql`), plus legacy `statements` entries, each with the parameters
/// beside it; `stored_ref` is set when a statement refers to SQL stored by
/// an earlier request (`sql_id`).
fn collect_sql(v: &Value, out: &mut Vec<SqlText>, stored_ref: &mut bool) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("sql", Value::String(s)) => out.push(SqlText::new(s, params_of(m))),
                    ("sql_id", Value::Number(_)) if !m.contains_key("sql") => *stored_ref = true,
                    ("statements", Value::Array(items)) => {
                        for it in items {
                            match it {
                                Value::String(s) => out.push(SqlText::new(s, Value::Array(vec![]))),
                                Value::Object(o) => {
                                    if let Some(Value::String(q)) = o.get("q") {
                                        out.push(SqlText::new(q, params_of(o)));
                                    }
                                    collect_sql(it, out, stored_ref);
                                }
                                other => collect_sql(other, out, stored_ref),
                            }
                        }
                    }
                    _ => collect_sql(v, out, stored_ref),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_sql(x, out, stored_ref)),
        _ => {}
    }
}

/// Neon, Turso and D1; `None` when the request is none of them.
pub(crate) fn builtin(ctx: &Ctx<'_>) -> Result<Option<Vec<Intent>>, IntentError> {
    let host = ctx.req.host.as_str();
    let path = ctx.req.path.as_str();
    if ctx.method() != "POST" {
        return Ok(None);
    }
    if host.ends_with(".neon.tech") && path == "/sql" {
        let body = ctx.body.json()?;
        let mut texts = Vec::new();
        if body.get("query").is_some() && body.get("queries").is_some() {
            // Which one Neon runs is its parser's choice; judging one of
            // them would leave the other unjudged.
            return Err(bad("Neon request with both query and queries"));
        }
        match (body.get("query"), body.get("queries")) {
            (Some(Value::String(q)), _) => {
                let params = body.as_object().map(params_of).unwrap_or_default();
                texts.push(SqlText::new(q, params));
            }
            (_, Some(Value::Array(qs))) => {
                for q in qs {
                    match (q.get("query"), q.as_object()) {
                        (Some(Value::String(s)), Some(o)) => {
                            texts.push(SqlText::new(s, params_of(o)));
                        }
                        _ => return Err(bad("Neon batch entry without a query")),
                    }
                }
            }
            _ => return Err(bad("Neon request without a query")),
        }
        return many(&texts, host, Flavor::Postgres).map(Some);
    }
    let turso = host.ends_with(".turso.io")
        && matches!(
            path,
            "/" | "/v1/execute" | "/v1/batch" | "/v2/pipeline" | "/v3/pipeline"
        );
    let segs = decoded_segments(path);
    let d1 = host == "api.cloudflare.com"
        && segs.len() == 8
        && segs.first().is_some_and(|s| s == "client")
        && segs.get(2).is_some_and(|s| s == "accounts")
        && segs.get(4).is_some_and(|s| s == "d1")
        && segs.get(5).is_some_and(|s| s == "database")
        && segs.get(7).is_some_and(|s| s == "query" || s == "raw");
    if !turso && !d1 {
        return Ok(None);
    }
    let body = ctx.body.json()?;
    let mut texts = Vec::new();
    let mut stored_ref = false;
    collect_sql(&body, &mut texts, &mut stored_ref);
    if d1 && texts.is_empty() {
        return Err(bad("D1 request without sql"));
    }
    let mut intents = many(&texts, host, Flavor::Sqlite)?;
    if texts.is_empty() {
        intents.clear();
    }
    if stored_ref {
        // SQL stored on the server earlier cannot be judged from here.
        intents.push(intent_without_sql("unparsed", host));
    }
    if intents.is_empty() {
        intents.push(intent_without_sql("other", host));
    }
    if d1 {
        let db = segs.get(6).cloned().unwrap_or_default();
        for i in &mut intents {
            if let Value::Object(m) = &mut i.args {
                m.insert("database_id".into(), Value::String(db.clone()));
            }
        }
    }
    Ok(Some(intents))
}

#[cfg(test)]
mod tests {
    use crate::test_support::{map, req};
    use serde_json::json;

    #[test]
    fn neon() {
        let m = map(&req(
            "POST",
            "ep-x.us-east-2.aws.neon.tech",
            "/sql",
            &[("content-type", "application/json")],
            br#"{"query":"SELECT 1; DROP TABLE users","params":[]}"#,
        ))
        .unwrap();
        assert_eq!(m.intents.len(), 2);
        assert_eq!(m.intents[1].action, "drop");
        assert_eq!(
            m.intents[1].args["database"],
            "ep-x.us-east-2.aws.neon.tech"
        );
        assert!(map(&req("POST", "ep-x.neon.tech", "/sql", &[], b"{nope")).is_err());
        assert!(
            map(&req(
                "POST",
                "ep-x.neon.tech",
                "/sql",
                &[],
                br#"{"sql":"x"}"#
            ))
            .is_err()
        );
        // Not the SQL endpoint: generic.
        assert_eq!(
            map(&req("GET", "ep-x.neon.tech", "/sql", &[], b""))
                .unwrap()
                .intents[0]
                .resource,
            "http.ep-x.neon.tech"
        );
    }

    #[test]
    fn turso_and_d1() {
        let body = br#"{"requests":[{"type":"execute","stmt":{"sql":"SELECT * FROM a"}},{"type":"batch","batch":{"steps":[{"stmt":{"sql":"DELETE FROM b"}}]}},{"type":"close"}]}"#;
        let m = map(&req("POST", "db-org.turso.io", "/v2/pipeline", &[], body)).unwrap();
        let acts: Vec<_> = m.intents.iter().map(|i| i.action.as_str()).collect();
        assert_eq!(acts, ["select", "delete"]);
        let m = map(&req(
            "POST",
            "db-org.turso.io",
            "/v2/pipeline",
            &[],
            br#"{"requests":[{"type":"close"}]}"#,
        ))
        .unwrap();
        assert_eq!(m.intents[0].action, "other");
        let m = map(&req(
            "POST",
            "db-org.turso.io",
            "/v2/pipeline",
            &[],
            br#"{"requests":[{"type":"execute","stmt":{"sql_id":1}}]}"#,
        ))
        .unwrap();
        assert_eq!(m.intents[0].action, "unparsed");
        let m = map(&req(
            "POST",
            "api.cloudflare.com",
            "/client/v4/accounts/acc/d1/database/dbid/query",
            &[],
            br#"{"sql":"DROP TABLE x"}"#,
        ))
        .unwrap();
        assert_eq!(
            (
                m.intents[0].action.as_str(),
                &m.intents[0].args["database_id"]
            ),
            ("drop", &json!("dbid"))
        );
        assert!(
            map(&req(
                "POST",
                "api.cloudflare.com",
                "/client/v4/accounts/acc/d1/database/dbid/query",
                &[],
                br#"{"q":1}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn bind_parameters_are_args() {
        let m = map(&req(
            "POST",
            "ep-x.neon.tech",
            "/sql",
            &[],
            br#"{"query":"SELECT * FROM t WHERE id = $1","params":[7,"x"]}"#,
        ))
        .unwrap();
        assert_eq!(m.intents[0].args["params"], json!([7, "x"]));
        let m = map(&req(
            "POST",
            "db-org.turso.io",
            "/v2/pipeline",
            &[],
            br#"{"requests":[{"type":"execute","stmt":{"sql":"DELETE FROM t WHERE id = ?","args":[{"type":"integer","value":"3"}]}}]}"#,
        ))
        .unwrap();
        assert_eq!(
            m.intents[0].args["params"],
            json!([{"type":"integer","value":"3"}])
        );
        let m = map(&req(
            "POST",
            "api.cloudflare.com",
            "/client/v4/accounts/acc/d1/database/dbid/query",
            &[],
            br#"{"sql":"SELECT ?1","params":["a"]}"#,
        ))
        .unwrap();
        assert_eq!(m.intents[0].args["params"], json!(["a"]));
        let m = map(&req(
            "POST",
            "ep-x.neon.tech",
            "/sql",
            &[],
            br#"{"query":"SELECT 1"}"#,
        ))
        .unwrap();
        assert_eq!(m.intents[0].args["params"], json!([]));
    }
}
