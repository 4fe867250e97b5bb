//! `decide` with 1,000 CEL rules (SPEC §14: < 20 µs median). Run:
//! `cargo bench -p sudomode-policy --bench decide -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sudomode_intent::{Intent, Mapped, NormalizedRequest};
use sudomode_policy::{Policy, Verdict};

const RESOURCES: &[&str] = &[
    "stripe.charges",
    "stripe.refunds",
    "stripe.customers",
    "stripe.payouts",
    "stripe.transfers",
    "stripe.payment_intents",
    "stripe.subscriptions",
    "stripe.invoices",
    "aws.s3",
    "aws.ec2",
    "aws.iam",
    "aws.dynamodb",
    "aws.lambda",
    "aws.sqs",
    "aws.secretsmanager",
    "sql",
    "db.users",
    "db.orders",
    "db.tickets",
    "llm.openai",
    "llm.anthropic",
    "http.api.github.com",
    "http.hooks.slack.com",
    "http.api.example.com",
];
const ACTIONS: &[&str] = &[
    "create", "update", "delete", "retrieve", "list", "capture", "confirm",
];
const WILDCARDS: &[&str] = &["stripe.*", "aws.*", "db.*", "http.*"];

/// 1,000 rules: 999 that do not decide a billing-bot charge of 5,000, the
/// deciding one at position 996 (then three more).
fn policy_yaml(all_wildcard: bool) -> String {
    let mut y = String::from("rules:\n");
    for i in 0..1000usize {
        let (resource, action, cond, decision) = if i == 995 {
            (
                "stripe.charges".to_string(),
                "create".to_string(),
                r#"args.amount > 100 && agent == "billing-bot""#.to_string(),
                "REQUIRE_APPROVAL",
            )
        } else {
            let resource = if all_wildcard {
                "*".to_string()
            } else if i % 10 == 3 {
                WILDCARDS[i % WILDCARDS.len()].to_string()
            } else {
                RESOURCES[(i * 7) % RESOURCES.len()].to_string()
            };
            let action = ACTIONS[(i * 3) % ACTIONS.len()].to_string();
            let cond = match i % 4 {
                0 => format!(r#"args.amount > {} && agent == "agent-{}""#, i * 10, i),
                1 => format!(
                    r#"has(args.currency) && args.currency == "eur" && args.amount < {}"#,
                    i
                ),
                2 => format!(
                    r#"agent.startsWith("team-{i}") || request.path.startsWith("/admin/{i}")"#
                ),
                _ => format!(r#"size(args) > {} && now.getHours("UTC") < 25"#, 50 + i),
            };
            let decision = ["ALLOW", "DENY", "REQUIRE_APPROVAL"][i % 3];
            (resource, action, cond, decision)
        };
        let _ = write!(
            y,
            "  - name: rule_{i}\n    resource: \"{resource}\"\n    action: {action}\n    condition: '{cond}'\n    decision: {decision}\n"
        );
    }
    y
}

fn mapped() -> Mapped {
    Mapped {
        request: NormalizedRequest {
            method: "POST".into(),
            scheme: "https".into(),
            host: "api.stripe.com".into(),
            port: 443,
            path: "/v1/charges".into(),
            query: BTreeMap::new(),
            headers: BTreeMap::from([
                (
                    "content-type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                ),
                (
                    "user-agent".to_string(),
                    "Stripe/v1 PythonBindings/11.0.0".to_string(),
                ),
            ]),
        },
        intents: vec![Intent::new(
            "stripe.charges",
            "create",
            json!({"amount": 5000, "currency": "usd", "source": "tok_visa",
                   "description": "Order 1234", "metadata": {"order": 1234}}),
        )],
    }
}

fn bench(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let m = mapped();
    for (label, all_wildcard) in [
        ("decide_1000_rules", false),
        ("decide_1000_rules_all_wildcard", true),
    ] {
        let yaml = policy_yaml(all_wildcard);
        let p = match Policy::from_sources(&[("bench.yaml", yaml.as_str())]) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let d = p.decide("billing-bot", &m, now);
        assert_eq!(d.verdict, Verdict::RequireApproval, "{d:?}");
        assert_eq!(d.rule.as_ref().map(|r| r.0.as_str()), Some("rule_995"));
        c.bench_function(label, |b| {
            b.iter(|| p.decide(black_box("billing-bot"), black_box(&m), now))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
