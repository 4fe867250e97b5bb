//! Stripe mapping (SPEC §4.2): collection path → resource, method and shape →
//! action, ids and verbs pulled out of the path.

use serde_json::Value;

use crate::normalize::decoded_segments;
use crate::{Ctx, Intent, IntentError, merge_strict, object};

/// Path segments that group collections rather than name one, so the
/// segment after them is a collection, not an id.
pub(crate) const NAMESPACES: &[&str] = &[
    "apps",
    "billing",
    "billing_portal",
    "checkout",
    "climate",
    "core",
    "entitlements",
    "financial_connections",
    "forwarding",
    "identity",
    "issuing",
    "money_management",
    "radar",
    "reporting",
    "sigma",
    "tax",
    "terminal",
    "test_helpers",
    "treasury",
];

/// Segments that are operations on an object or collection.
pub(crate) const VERBS: &[&str] = &[
    "accept",
    "activate",
    "advance",
    "apply_customer_balance",
    "approve",
    "attach",
    "cancel",
    "cancel_action",
    "capture",
    "close",
    "confirm",
    "create_preview",
    "deactivate",
    "decline",
    "detach",
    "expire",
    "fail",
    "finalize",
    "fund_cash_balance",
    "increment_authorization",
    "invalidate",
    "mark_uncollectible",
    "pay",
    "post",
    "process_payment_intent",
    "process_setup_intent",
    "reactivate",
    "redact",
    "refund",
    "reject",
    "release",
    "reopen",
    "resume",
    "return",
    "reverse",
    "run",
    "search",
    "send",
    "submit",
    "upcoming",
    "verify",
    "verify_microdeposits",
    "void",
];

/// Single objects addressed without an id (`/v1/balance`, `/v1/account`).
pub(crate) const SINGLETONS: &[&str] = &["account", "balance", "cash_balance", "balance_settings"];

/// `cus_1`, `ch_3NxYz`, `sub_sched_1A`: lower-case prefix(es), `_`, then a
/// part with a digit or capital (collection names are all lower-case words).
fn looks_like_id(s: &str) -> bool {
    let Some((prefix, tail)) = s.rsplit_once('_') else {
        return false;
    };
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_alphanumeric())
        && tail
            .bytes()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

enum End {
    Collection,
    Id,
    Verb(String),
    Singleton,
}

pub(crate) fn map(ctx: &Ctx<'_>) -> Result<Intent, IntentError> {
    let segs = decoded_segments(&ctx.req.path);
    let rest: &[String] = match segs.first().map(String::as_str) {
        Some("v1" | "v2") => segs.get(1..).unwrap_or(&[]),
        _ => &segs,
    };
    let mut names: Vec<&str> = Vec::new();
    let mut ids: Vec<&str> = Vec::new();
    let mut end = End::Collection;
    // After a collection comes an id (or a verb); after an id or namespace,
    // a collection (or a verb).
    let mut expect_id = false;
    for (i, seg) in rest.iter().enumerate() {
        let s = seg.as_str();
        let last = i + 1 == rest.len();
        if VERBS.contains(&s) && (last || !expect_id) && !names.is_empty() {
            end = End::Verb(s.to_string());
            if !last {
                // e.g. `/v1/invoices/upcoming/lines`: keep the tail as names.
                names.push(s);
                end = End::Collection;
            }
            expect_id = false;
            continue;
        }
        if expect_id || (looks_like_id(s) && !names.is_empty()) {
            ids.push(s);
            end = End::Id;
            expect_id = false;
        } else {
            names.push(s);
            let singleton = SINGLETONS.contains(&s);
            end = if singleton {
                End::Singleton
            } else {
                End::Collection
            };
            expect_id = !NAMESPACES.contains(&s) && !singleton;
        }
    }
    let method = ctx.method();
    let action = match end {
        End::Verb(v) => v,
        End::Id | End::Singleton => match method {
            "GET" | "HEAD" => "retrieve".into(),
            "POST" | "PUT" | "PATCH" => "update".into(),
            "DELETE" => "delete".into(),
            m => m.to_ascii_lowercase(),
        },
        End::Collection => match method {
            "GET" | "HEAD" => "list".into(),
            "POST" => "create".into(),
            "DELETE" => "delete".into(),
            m => m.to_ascii_lowercase(),
        },
    };
    let resource = if names.is_empty() {
        "stripe".to_string()
    } else {
        format!("stripe.{}", names.join("."))
    };
    let mut args = if matches!(method, "GET" | "HEAD" | "DELETE") {
        object(ctx.query_args()?)
    } else {
        object(ctx.body.args()?)
    };
    if matches!(method, "GET" | "HEAD" | "DELETE") {
        if !ctx.body.is_empty() {
            merge_strict(&mut args, ctx.body.args()?)?;
        }
    } else {
        // Stripe reads query parameters on POST too; both must be judged.
        merge_strict(&mut args, ctx.query_args()?)?;
    }
    // The id the upstream acts on is the one in the path, whatever the body says.
    if let Some((id, parents)) = ids.split_last() {
        args.insert("id".into(), Value::String((*id).to_string()));
        if !parents.is_empty() {
            args.insert(
                "parent_ids".into(),
                Value::Array(
                    parents
                        .iter()
                        .map(|p| Value::String((*p).to_string()))
                        .collect(),
                ),
            );
        }
    }
    Ok(Intent::new(resource, action, Value::Object(args)))
}

#[cfg(test)]
mod tests {
    use crate::test_support::{map, req};
    use serde_json::json;

    fn stripe(method: &str, target: &str, body: &str) -> (String, String, serde_json::Value) {
        let i = map(&req(method, "api.stripe.com", target, &[], body.as_bytes()))
            .unwrap()
            .intents
            .remove(0);
        (i.resource, i.action, i.args)
    }

    #[test]
    fn spec_examples() {
        let (r, a, args) = stripe("POST", "/v1/refunds", "charge=ch_1&amount=2500");
        assert_eq!((r.as_str(), a.as_str()), ("stripe.refunds", "create"));
        assert_eq!(args, json!({"charge":"ch_1","amount":2500}));
        assert_eq!(stripe("GET", "/v1/charges", "").0, "stripe.charges");
        assert_eq!(stripe("GET", "/v1/charges?limit=3", "").1, "list");
        assert_eq!(
            stripe("GET", "/v1/charges?limit=3", "").2,
            json!({"limit":3})
        );
        let (r, a, _) = stripe("POST", "/v1/customers/cus_1/sources", "source=tok_visa");
        assert_eq!(
            (r.as_str(), a.as_str()),
            ("stripe.customers.sources", "create")
        );
        let (r, a, args) = stripe("POST", "/v1/customers/cus_1", "name=x");
        assert_eq!((r.as_str(), a.as_str()), ("stripe.customers", "update"));
        assert_eq!(args, json!({"name":"x","id":"cus_1"}));
        let (_, a, args) = stripe("GET", "/v1/customers/cus_1", "");
        assert_eq!((a.as_str(), args), ("retrieve", json!({"id":"cus_1"})));
        assert_eq!(stripe("DELETE", "/v1/customers/cus_1", "").1, "delete");
        let (r, a, args) = stripe("POST", "/v1/payment_intents/pi_1/confirm", "");
        assert_eq!(
            (r.as_str(), a.as_str()),
            ("stripe.payment_intents", "confirm")
        );
        assert_eq!(args["id"], "pi_1");
        assert_eq!(stripe("POST", "/v1/charges/ch_1/capture", "").1, "capture");
        assert_eq!(stripe("POST", "/v1/invoices/in_1/pay", "").1, "pay");
        let (r, a, args) = stripe("GET", "/v1/charges/search?query=amount>5", "");
        assert_eq!((r.as_str(), a.as_str()), ("stripe.charges", "search"));
        assert_eq!(args, json!({"query":"amount>5"}));
    }

    #[test]
    fn nested_ids_and_namespaces() {
        let (r, a, args) = stripe("DELETE", "/v1/customers/cus_1/sources/card_1", "");
        assert_eq!(
            (r.as_str(), a.as_str()),
            ("stripe.customers.sources", "delete")
        );
        assert_eq!(args, json!({"id":"card_1","parent_ids":["cus_1"]}));
        let (r, a, _) = stripe("POST", "/v1/checkout/sessions", "mode=payment");
        assert_eq!(
            (r.as_str(), a.as_str()),
            ("stripe.checkout.sessions", "create")
        );
        let (r, a, args) = stripe("POST", "/v1/checkout/sessions/cs_test_a1/expire", "");
        assert_eq!(
            (r.as_str(), a.as_str()),
            ("stripe.checkout.sessions", "expire")
        );
        assert_eq!(args["id"], "cs_test_a1");
        // An id that does not look like one is still an id by position.
        let (r, a, args) = stripe("POST", "/v1/customers/delete", "");
        assert_eq!(
            (r.as_str(), a.as_str(), &args["id"]),
            ("stripe.customers", "update", &json!("delete"))
        );
        assert_eq!(stripe("GET", "/v1/balance", "").1, "retrieve");
        let (r, a, _) = stripe("POST", "/v1/test_helpers/test_clocks/clock_1A/advance", "");
        assert_eq!(
            (r.as_str(), a.as_str()),
            ("stripe.test_helpers.test_clocks", "advance")
        );
    }

    #[test]
    fn evasions_are_normalised() {
        let (r, a, _) = stripe("POST", "//v1//customers/%2e%2e/charges", "amount=1");
        assert_eq!((r.as_str(), a.as_str()), ("stripe.charges", "create"));
        // An override is read both ways (SPEC §4.8): update as sent, delete as overridden.
        let both = map(&req(
            "DELETE",
            "api.stripe.com",
            "/v1/customers/cus_1?_method=POST",
            &[],
            b"",
        ))
        .unwrap();
        let readings: Vec<_> = both
            .intents
            .iter()
            .map(|i| (i.action.as_str(), i.method.as_deref()))
            .collect();
        assert_eq!(readings, [("delete", None), ("update", Some("POST"))]);
        // Path id beats a body id.
        assert_eq!(
            stripe("POST", "/v1/customers/cus_1", "id=cus_2").2["id"],
            "cus_1"
        );
        // Query parameters on POST are judged too; disagreement is refused.
        assert_eq!(
            stripe("POST", "/v1/charges?amount=100", "currency=usd").2,
            json!({"currency":"usd","amount":100})
        );
        assert!(
            map(&req(
                "POST",
                "api.stripe.com",
                "/v1/charges?amount=1",
                &[],
                b"amount=9"
            ))
            .is_err()
        );
    }

    #[test]
    fn v2_json() {
        let (r, a, args) = stripe("POST", "/v2/core/accounts", r#"{"display_name":"x"}"#);
        assert_eq!((r.as_str(), a.as_str()), ("stripe.core.accounts", "create"));
        assert_eq!(args, json!({"display_name":"x"}));
    }
}
