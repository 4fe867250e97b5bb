//! Policy-level tests: loading, validation messages, decisions, explanations, examples.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;
use sudomode_intent::{Intent, Mapped, Mapper, NormalizedRequest};

use crate::*;

const ORIGINAL: &str = include_str!("../../../policies/examples/original-sudomode.yaml");

pub(crate) fn now() -> time::OffsetDateTime {
    time::macros::datetime!(2026-11-23 21:30:00 UTC)
}

pub(crate) fn request(method: &str, host: &str, path: &str) -> NormalizedRequest {
    NormalizedRequest {
        method: method.into(),
        scheme: "https".into(),
        host: host.into(),
        port: 443,
        path: path.into(),
        query: BTreeMap::new(),
        headers: BTreeMap::new(),
    }
}

pub(crate) fn intent(resource: &str, action: &str, args: serde_json::Value) -> Intent {
    Intent::new(resource, action, args)
}

pub(crate) fn mapped(intents: Vec<Intent>) -> Mapped {
    Mapped {
        request: request("POST", "api.stripe.com", "/v1/charges"),
        intents,
    }
}

fn charge(amount: serde_json::Value) -> Mapped {
    mapped(vec![intent(
        "stripe.charges",
        "create",
        json!({"amount": amount, "currency": "usd"}),
    )])
}

pub(crate) fn policy(yaml: &str) -> Policy {
    match Policy::from_sources(&[("test.yaml", yaml)]) {
        Ok(p) => p,
        Err(e) => panic!("policy should load:\n{e}"),
    }
}

pub(crate) fn load_err(yaml: &str) -> String {
    Policy::from_sources(&[("test.yaml", yaml)])
        .expect_err("policy should be refused")
        .to_string()
}

fn rule_of(d: &Decision) -> Option<&str> {
    d.rule.as_ref().map(RuleName::as_str)
}

#[test]
fn original_example_loads_unchanged_and_decides() {
    let p = policy(ORIGINAL);
    assert_eq!(p.rules().len(), 11);
    // Each Python-spelled condition is read as CEL, with one warning per rule.
    let warned: Vec<&str> = p
        .warnings()
        .iter()
        .map(|w| w.0.message.split('"').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        warned,
        [
            "require_approval_mid_refund",
            "allow_seasoning_note",
            "allow_small_or_standard_usd_payout",
            "deny_customer_without_email"
        ]
    );
    let d = p.decide("agent", &charge(json!(5000)), now());
    assert_eq!(d.verdict, Verdict::RequireApproval);
    assert_eq!(rule_of(&d), Some("require_approval_high_amount"));
    assert_eq!(d.reason, "High-value charge requires approval");
    assert_eq!(d.approvals, 1);
    let d = p.decide("agent", &charge(json!(30)), now());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(rule_of(&d), Some("allow_low_amount"));
    let d = p.decide("agent", &charge(json!(50.5)), now());
    assert_eq!(d.verdict, Verdict::RequireApproval);
    let d = p.decide(
        "agent",
        &mapped(vec![intent("files", "delete", json!({}))]),
        now(),
    );
    assert_eq!(
        (d.verdict, rule_of(&d)),
        (Verdict::Deny, Some("deny_delete"))
    );
    let d = p.decide(
        "agent",
        &mapped(vec![intent("files", "read", json!({}))]),
        now(),
    );
    assert_eq!(d.verdict, Verdict::Allow);
    // Missing amount: the REQUIRE_APPROVAL rule matches (fail closed).
    let d = p.decide(
        "agent",
        &mapped(vec![intent("stripe.charges", "create", json!({}))]),
        now(),
    );
    assert_eq!(d.verdict, Verdict::RequireApproval);
    assert_eq!(d.condition_errors.len(), 1, "{:?}", d.condition_errors);
    assert!(d.condition_errors[0].contains("require_approval_high_amount"));
}

#[test]
fn no_match_is_deny() {
    let p = policy("rules:\n  - name: a\n    resource: aws.s3\n    decision: ALLOW\n");
    let d = p.decide("x", &charge(json!(1)), now());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.rule, None);
    assert_eq!(d.reason, "no rule matched");
}

#[test]
fn first_enforce_rule_wins_in_order() {
    let p = policy(
        r#"
rules:
  - name: deny_big
    resource: "stripe.*"
    action: create
    condition: args.amount > 1000
    decision: deny
  - name: allow_stripe
    resource: ["aws.*", "stripe.*"]
    decision: Allow
  - name: never
    resource: "*"
    decision: DENY
"#,
    );
    assert_eq!(
        rule_of(&p.decide("a", &charge(json!(5000)), now())),
        Some("deny_big")
    );
    assert_eq!(
        rule_of(&p.decide("a", &charge(json!(5)), now())),
        Some("allow_stripe")
    );
    let m = mapped(vec![intent(
        "stripe.customers.sources",
        "create",
        json!({"amount": 5000}),
    )]);
    assert_eq!(rule_of(&p.decide("a", &m, now())), Some("deny_big"));
    let m = mapped(vec![intent("github.repos", "delete", json!({}))]);
    assert_eq!(rule_of(&p.decide("a", &m, now())), Some("never"));
}

#[test]
fn matchers_agent_host_method_path() {
    let p = policy(
        r#"
rules:
  - name: bot_only
    resource: "*"
    agent: ["billing-*", ops]
    host: "API.STRIPE.COM"
    method: post
    path: "/v1/*"
    decision: ALLOW
"#,
    );
    assert_eq!(
        p.decide("billing-bot", &charge(json!(1)), now()).verdict,
        Verdict::Allow
    );
    assert_eq!(
        p.decide("ops", &charge(json!(1)), now()).verdict,
        Verdict::Allow
    );
    assert_eq!(
        p.decide("Billing-bot", &charge(json!(1)), now()).verdict,
        Verdict::Deny
    );
    let mut m = charge(json!(1));
    m.request.method = "GET".into();
    assert_eq!(p.decide("ops", &m, now()).verdict, Verdict::Deny);
    let mut m = charge(json!(1));
    m.request.path = "/v2/charges".into();
    assert_eq!(p.decide("ops", &m, now()).verdict, Verdict::Deny);
}

#[test]
fn fail_closed_on_condition_errors() {
    let p = policy(
        r#"
rules:
  - name: allow_small
    resource: stripe.charges
    condition: args.amount < 100
    decision: ALLOW
  - name: deny_nonusd
    resource: stripe.charges
    condition: args.currency != "usd"
    decision: DENY
  - name: allow_rest
    resource: "*"
    decision: ALLOW
"#,
    );
    // Missing amount: the ALLOW rule does not match; no currency: the DENY rule matches.
    let d = p.decide(
        "a",
        &mapped(vec![intent("stripe.charges", "create", json!({}))]),
        now(),
    );
    assert_eq!(
        (d.verdict, rule_of(&d)),
        (Verdict::Deny, Some("deny_nonusd"))
    );
    assert_eq!(d.condition_errors.len(), 2, "{:?}", d.condition_errors);
    assert!(d.condition_errors[0].starts_with("rule allow_small:"));
    // Wrong type on the ALLOW rule: not a match, falls through.
    let d = p.decide("a", &charge(json!("lots")), now());
    assert_eq!(
        (d.verdict, rule_of(&d)),
        (Verdict::Allow, Some("allow_rest"))
    );
    assert_eq!(d.condition_errors.len(), 1);
    // Fine values: no errors.
    let d = p.decide("a", &charge(json!(5)), now());
    assert_eq!(
        (d.verdict, rule_of(&d), d.condition_errors.len()),
        (Verdict::Allow, Some("allow_small"), 0)
    );
    // A REQUIRE_APPROVAL rule also matches on error.
    let p = policy(
        "rules:\n  - name: r\n    resource: '*'\n    condition: args.nope == 1\n    decision: REQUIRE_APPROVAL\n",
    );
    let d = p.decide("a", &charge(json!(5)), now());
    assert_eq!(d.verdict, Verdict::RequireApproval);
}

#[test]
fn report_mode_records_and_continues() {
    let p = policy(
        r#"
rules:
  - name: would_deny_big
    resource: stripe.charges
    condition: args.amount > 100
    decision: DENY
    mode: report
  - name: would_approve
    resource: "*"
    decision: REQUIRE_APPROVAL
    mode: REPORT
  - name: allow_all
    resource: "*"
    decision: ALLOW
"#,
    );
    let d = p.decide("a", &charge(json!(5000)), now());
    assert_eq!(
        (d.verdict, rule_of(&d)),
        (Verdict::Allow, Some("allow_all"))
    );
    let w: Vec<&str> = d.would_have.iter().map(RuleName::as_str).collect();
    assert_eq!(w, ["would_deny_big", "would_approve"]);
    let d = p.decide("a", &charge(json!(5)), now());
    assert_eq!(d.would_have.len(), 1);
    let e = p.explain("a", &charge(json!(5000)), now());
    assert!(
        e.considered[0].why.contains("report mode: would have DENY"),
        "{:?}",
        e.considered[0]
    );
}

#[test]
fn strictest_across_intents() {
    let p = policy(
        r#"
rules:
  - name: allow_select
    resource: sql
    action: select
    decision: ALLOW
  - name: approve_delete
    resource: sql
    action: delete
    decision: REQUIRE_APPROVAL
    approvals: 2
    timeout: 30m
  - name: deny_drop
    resource: sql
    action: drop
    decision: DENY
"#,
    );
    let sel = intent("sql", "select", json!({"sql": "SELECT 1"}));
    let del = intent("sql", "delete", json!({"sql": "DELETE FROM t"}));
    let drop = intent("sql", "drop", json!({"sql": "DROP TABLE t"}));
    let d = p.decide(
        "a",
        &mapped(vec![sel.clone(), del.clone(), sel.clone()]),
        now(),
    );
    assert_eq!(
        (d.verdict, rule_of(&d), d.intent_index),
        (Verdict::RequireApproval, Some("approve_delete"), 1)
    );
    assert_eq!(d.approvals, 2);
    assert_eq!(d.timeout, Some(std::time::Duration::from_secs(1800)));
    let d = p.decide("a", &mapped(vec![sel.clone(), del.clone(), drop]), now());
    assert_eq!((d.verdict, d.intent_index), (Verdict::Deny, 2));
    let d = p.decide(
        "a",
        &mapped(vec![sel.clone(), intent("sql", "update", json!({}))]),
        now(),
    );
    assert_eq!(
        (d.verdict, d.rule.clone(), d.intent_index),
        (Verdict::Deny, None, 1)
    );
    let d = p.decide("a", &mapped(vec![sel]), now());
    assert_eq!(
        (d.verdict, d.approvals, d.timeout),
        (Verdict::Allow, 0, None)
    );
    let d = p.decide("a", &mapped(vec![]), now());
    assert_eq!(d.verdict, Verdict::Deny);
}

#[test]
fn explain_multi_intent_marks_intents() {
    let p = policy(
        "rules:\n  - name: sel\n    resource: sql\n    action: select\n    decision: ALLOW\n  - name: drop\n    resource: sql\n    action: drop\n    decision: REQUIRE_APPROVAL\n",
    );
    let m = mapped(vec![
        intent("sql", "select", json!({})),
        intent("sql", "drop", json!({})),
    ]);
    let e = p.explain("a", &m, now());
    assert_eq!(
        (e.decision, e.full.intent_index),
        (Verdict::RequireApproval, 1)
    );
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["intents"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["considered"][0]["intent"], 0);
    assert_eq!(
        v["considered"][0]["why"],
        "matchers match (no condition); decides ALLOW"
    );
    assert_eq!(v["considered"][1]["intent"], 1);
    assert_eq!(v["considered"][2]["rule"], "drop");
    assert!(e.to_text().contains("[1] ✔ drop"), "{}", e.to_text());
}

#[test]
fn indexed_decide_agrees_with_explain() {
    let p = policy(
        r#"
rules:
  - name: a
    resource: [stripe.charges, stripe.refunds]
    action: list
    decision: ALLOW
  - name: b
    resource: "stripe.*"
    action: create
    condition: args.amount > 10
    decision: REQUIRE_APPROVAL
  - name: c
    resource: stripe.charges
    decision: ALLOW
  - name: d
    resource: "*"
    decision: DENY
"#,
    );
    for (res, act, amount) in [
        ("stripe.charges", "list", 1),
        ("stripe.charges", "create", 100),
        ("stripe.charges", "create", 1),
        ("stripe.refunds", "create", 1),
        ("aws.s3", "GetObject", 1),
    ] {
        let m = mapped(vec![intent(res, act, json!({"amount": amount}))]);
        let d = p.decide("x", &m, now());
        let e = p.explain("x", &m, now());
        assert_eq!(d, e.full, "{res} {act}");
    }
}

#[test]
fn explain_json_shape_and_text() {
    let p = policy(ORIGINAL);
    let e = p.explain("agent", &charge(json!(5000)), now());
    let v = serde_json::to_value(&e).unwrap();
    assert_eq!(v["decision"], "REQUIRE_APPROVAL");
    assert_eq!(v["rule"], "require_approval_high_amount");
    assert_eq!(v["intents"][0]["resource"], "stripe.charges");
    assert_eq!(v["intents"][0]["args"]["amount"], 5000);
    let whys: Vec<(String, bool, String)> = e
        .considered
        .iter()
        .map(|c| (c.rule.clone(), c.matched, c.why.clone()))
        .collect();
    assert_eq!(whys.len(), 3);
    assert_eq!(whys[0].2, "action create does not match read");
    assert!(!whys[1].1);
    assert!(
        whys[2].1 && whys[2].2.starts_with("condition true"),
        "{:?}",
        whys[2]
    );
    assert_eq!(v["considered"][0]["matched"], false);
    assert!(v["considered"][0].get("intent").is_none());
    let text = e.to_text();
    assert!(
        text.contains("decision: REQUIRE_APPROVAL (rule: require_approval_high_amount)"),
        "{text}"
    );
    let p = policy("rules:\n  - name: aws\n    resource: 'aws.*'\n    decision: ALLOW\n");
    let e = p.explain("agent", &charge(json!(1)), now());
    assert_eq!(
        e.considered[0].why,
        "resource stripe.charges does not match aws.*"
    );
    assert!(e.to_text().contains("no rule matched"));
    // Fail-closed wording.
    let p = policy(
        "rules:\n  - name: a\n    resource: '*'\n    condition: args.x > 1\n    decision: ALLOW\n  - name: d\n    resource: '*'\n    condition: args.x > 1\n    decision: DENY\n",
    );
    let e = p.explain("agent", &charge(json!(1)), now());
    assert!(e.considered[0].why.starts_with("condition error:"));
    assert!(
        e.considered[0]
            .why
            .ends_with("(fail closed: ALLOW rule does not match)")
    );
    assert!(
        e.considered[1]
            .why
            .contains("(fail closed: counts as match)"),
        "{}",
        e.considered[1].why
    );
}

// ---- validation messages ----

#[test]
fn yaml_syntax_error_has_location() {
    let e = load_err("rules:\n  - name: a\n    resource: [unclosed\n");
    assert!(e.starts_with("test.yaml:"), "{e}");
    let e = load_err("rules:\n  - name: a\n   resource: *\n");
    assert!(e.starts_with("test.yaml:3:"), "{e}");
}

#[test]
fn unknown_field_has_location() {
    let e = load_err("rules:\n  - name: a\n    resource: x\n    decison: ALLOW\n");
    assert!(e.starts_with("test.yaml:4:"), "{e}");
    assert!(e.contains("unknown field `decison`"), "{e}");
    assert!(e.contains("rule \"a\": unknown field"), "{e}");
    let e = load_err(
        "rules:\n  - name: ok\n    resource: x\n    decision: ALLOW\n  - name: 'second'\n    resource: x\n    approvals: [1]\n    decision: ALLOW\n",
    );
    assert!(
        e.starts_with("test.yaml:7:") && e.contains("rule \"second\""),
        "{e}"
    );
    let e = load_err("rulez: []\n");
    assert!(e.starts_with("test.yaml:1:") && e.contains("rulez"), "{e}");
}

fn assert_err(yaml: &str, at: &str, rule: &str, what: &str) {
    let e = load_err(yaml);
    assert!(
        e.lines()
            .any(|l| l.starts_with(at) && l.contains(rule) && l.contains(what)),
        "want {at} {rule} {what} in:\n{e}"
    );
}

#[test]
fn semantic_errors_name_file_line_rule() {
    let head = "rules:\n  - name: ok\n    resource: x\n    decision: ALLOW\n";
    assert_err(
        &format!("{head}  - name: r1\n    decision: ALLOW\n"),
        "test.yaml:5:3:",
        "\"r1\"",
        "missing `resource`",
    );
    assert_err(
        &format!("{head}  - name: r2\n    resource: x\n    decision: MAYBE\n"),
        "test.yaml:7:5:",
        "\"r2\"",
        "bad decision \"MAYBE\"",
    );
    assert_err(
        &format!("{head}  - name: r3\n    resource: x\n"),
        "test.yaml:5:3:",
        "\"r3\"",
        "missing `decision`",
    );
    assert_err(
        &format!("{head}  - name: ok\n    resource: y\n    decision: DENY\n"),
        "test.yaml:5:",
        "\"ok\"",
        "duplicate name",
    );
    assert_err(
        &format!(
            "{head}  - name: r4\n    resource: x\n    condition: args.amount >\n    decision: DENY\n"
        ),
        "test.yaml:7:5:",
        "\"r4\"",
        "does not compile",
    );
    assert_err(
        &format!(
            "{head}  - name: r5\n    resource: x\n    condition: args.amount + 1\n    decision: DENY\n"
        ),
        "test.yaml:7:5:",
        "\"r5\"",
        "not boolean",
    );
    assert_err(
        &format!("{head}  - name: r6\n    resource: x\n    decision: ALLOW\n    approvals: 2\n"),
        "test.yaml:8:5:",
        "\"r6\"",
        "`approvals` only applies to REQUIRE_APPROVAL",
    );
    assert_err(
        &format!("{head}  - name: r7\n    resource: x\n    decision: DENY\n    timeout: 10m\n"),
        "test.yaml:8:5:",
        "\"r7\"",
        "`timeout` only applies to REQUIRE_APPROVAL",
    );
    assert_err(
        &format!(
            "{head}  - name: r8\n    resource: x\n    decision: REQUIRE_APPROVAL\n    timeout: 10 minutes\n"
        ),
        "test.yaml:8:5:",
        "\"r8\"",
        "bad duration",
    );
    assert_err(
        &format!("{head}  - name: r9\n    resource: \"\"\n    decision: DENY\n"),
        "test.yaml:6:5:",
        "\"r9\"",
        "bad glob",
    );
    assert_err(
        &format!("{head}  - name: r10\n    resource: x\n    decision: DENY\n    mode: audit\n"),
        "test.yaml:8:5:",
        "\"r10\"",
        "bad mode",
    );
    assert_err(
        &format!("{head}  - name: r11\n    resource: [x, 3]\n    decision: DENY\n"),
        "test.yaml:6:5:",
        "\"r11\"",
        "strings",
    );
    assert_err(
        &format!("{head}  - name: r13\n    resource: x\n    condition:\n    decision: ALLOW\n"),
        "test.yaml:7:5:",
        "\"r13\"",
        "`condition` is empty",
    );
    assert_err(
        &format!("{head}  - resource: x\n    decision: DENY\n"),
        "test.yaml:5:3:",
        "rule #2",
        "missing `name`",
    );
    assert_err(
        &format!(
            "{head}  - name: r12\n    resource: x\n    decision: REQUIRE_APPROVAL\n    approvals: 0\n"
        ),
        "test.yaml:8:5:",
        "\"r12\"",
        "`approvals`",
    );
}

#[test]
fn show_messages() {
    // Not an assertion: prints what `policy check` would show (run with --nocapture).
    let bad =
        "rules:\n  - name: allow_read\n    resource: '*'\n    action: read\n    decison: ALLOW\n";
    eprintln!("{}", load_err(bad));
    let bad = "rules:\n  - name: a\n    resource: '*'\n    condition: args.amount > 50 and agent == 'x'\n    decision: ALLOW\n    timeout: 10m\n  - name: a\n    decision: Maybe\n  - name: c\n    resource: x\n    condition: args.amount >\n    decision: DENY\n";
    eprintln!("{}", load_err(bad));
    eprintln!("{}", load_err("rules:\n  - name: x\n    resource: *\n"));
}

#[test]
fn all_errors_reported_at_once_across_files() {
    let a = "rules:\n  - name: same\n    resource: x\n    decision: ALLOW\n";
    let b = "rules:\n  - name: same\n    resource: x\n    decision: ALLOW\n  - name: bad\n    resource: x\n    decision: nope\n";
    let e = Policy::from_sources(&[("a.yaml", a), ("b.yaml", b)]).unwrap_err();
    assert_eq!(e.len(), 2, "{e}");
    let s = e.to_string();
    assert!(
        s.contains("b.yaml:2:3: rule \"same\": duplicate name (first defined at a.yaml:2)"),
        "{s}"
    );
    assert!(s.contains("b.yaml:7:5: rule \"bad\": bad decision"), "{s}");
}

#[test]
fn test_entries_validated() {
    let base = "rules:\n  - name: ok\n    resource: x\n    decision: ALLOW\ntests:\n";
    let e = load_err(&format!(
        "{base}  - name: t\n    request: {{url: 'https://x.test/'}}\n    expect: PERHAPS\n"
    ));
    assert!(
        e.contains("test.yaml:8:5:") && e.contains("bad expect"),
        "{e}"
    );
    let e = load_err(&format!(
        "{base}  - name: t\n    request: {{url: 'https://x.test/'}}\n    expect: ALLOW\n    rule: nope\n"
    ));
    assert!(e.contains("names no rule"), "{e}");
    let e = load_err(&format!(
        "{base}  - name: t\n    request: {{url: 'not a url'}}\n    expect: ALLOW\n"
    ));
    assert!(e.contains("bad url"), "{e}");
    let e = load_err(&format!(
        "{base}  - name: t\n    request: {{url: 'https://x.test/', bogus: 1}}\n    expect: ALLOW\n"
    ));
    assert!(e.contains("unknown field `bogus`"), "{e}");
}

// ---- files, version, fingerprint ----

#[test]
fn load_directory_sorted_not_recursive_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("b.yaml"),
        "rules:\n  - name: b\n    resource: x\n    decision: DENY\n",
    )
    .unwrap();
    std::fs::write(
        d.join("a.yml"),
        "rules:\n  - name: a\n    resource: x\n    decision: ALLOW\n",
    )
    .unwrap();
    std::fs::write(d.join("notes.txt"), "not policy").unwrap();
    std::fs::create_dir(d.join("examples")).unwrap();
    std::fs::write(
        d.join("examples/c.yaml"),
        "rules:\n  - name: a\n    resource: x\n    decision: DENY\n",
    )
    .unwrap();
    let paths = vec![d.to_path_buf()];
    let p = Policy::load(&paths).unwrap();
    let names: Vec<&str> = p.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(p.files().len(), 2);
    assert!(p.files()[0].ends_with("a.yml"));
    assert_eq!(p.version().len(), 64);
    let fp = fingerprint(&paths).unwrap();
    assert_eq!(fp, p.version());
    std::fs::write(
        d.join("b.yaml"),
        "rules:\n  - name: b\n    resource: y\n    decision: DENY\n",
    )
    .unwrap();
    assert_ne!(fingerprint(&paths).unwrap(), fp);
    // Files and directories mixed; file errors name the file.
    std::fs::write(d.join("c.yaml"), "rules:\n  - name: c\n    resource: x\n").unwrap();
    let e = Policy::load(&[d.join("c.yaml")]).unwrap_err().to_string();
    assert!(
        e.contains("c.yaml:2:5:") || e.contains("c.yaml:2:3:"),
        "{e}"
    );
    let e = Policy::load(&[PathBuf::from("/nonexistent/policy.yaml")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/policy.yaml: cannot read"),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    assert!(Policy::load(&[empty.path().to_path_buf()]).is_err());
}

#[test]
fn rules_info_and_summary() {
    let p = policy(
        "rules:\n  - name: r\n    description: d\n    resource: [a, 'b*']\n    condition: args.x > 1\n    decision: require_approval\n    approvals: 2\n    timeout: 2h\n",
    );
    let info = p.rules_info();
    assert_eq!(info.len(), 1);
    let v = serde_json::to_value(&info[0]).unwrap();
    assert_eq!(v["resource"], json!(["a", "b*"]));
    assert_eq!(v["action"], json!(["*"]));
    assert_eq!(v["decision"], "REQUIRE_APPROVAL");
    assert_eq!(v["approvals"], 2);
    assert_eq!(v["timeout"], "2h");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["line"], 2);
    assert_eq!(v["file"], "test.yaml");
    assert_eq!(v["reason"], "d");
    let s = serde_json::to_value(p.summary()).unwrap();
    assert_eq!(s["version"].as_str().map(str::len), Some(64));
    assert!(s["loaded_at"].as_str().is_some_and(|t| t.ends_with('Z')));
}

// ---- shipped policy files ----

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[test]
fn builtin_policy_loads_and_passes_its_tests() {
    let p = Policy::builtin();
    assert_eq!(p.files(), [DEFAULT_POLICY_NAME]);
    let names: Vec<&str> = p.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"deny_everything_else"));
    assert!(p.tests().len() >= 20);
    // Rule semantics, independent of the mapper.
    let cases = [
        ("llm.openai", "chat.completions", Verdict::Allow),
        ("aws.iam", "ListUsers", Verdict::Allow),
        ("aws.iam", "CreateUser", Verdict::RequireApproval),
        ("aws.s3", "HeadObject", Verdict::Allow),
        ("aws.s3", "PutBucketPolicy", Verdict::RequireApproval),
        ("aws.s3", "PutObject", Verdict::Deny),
        ("aws.ec2", "TerminateInstances", Verdict::RequireApproval),
        ("aws.dynamodb", "DeleteTable", Verdict::RequireApproval),
        ("stripe.charges", "create", Verdict::RequireApproval),
        ("stripe.charges", "capture", Verdict::RequireApproval),
        ("stripe.charges", "list", Verdict::Allow),
        (
            "stripe.payment_intents",
            "confirm",
            Verdict::RequireApproval,
        ),
        ("stripe.customers", "create", Verdict::Deny),
        ("sql", "select", Verdict::Allow),
        ("sql", "truncate", Verdict::RequireApproval),
        ("sql", "revoke", Verdict::RequireApproval),
        ("sql", "insert", Verdict::Deny),
        ("db.users", "delete", Verdict::RequireApproval),
        ("http.example.com", "get", Verdict::Deny),
    ];
    for (r, a, want) in cases {
        let d = p.decide("a", &mapped(vec![intent(r, a, json!({}))]), now());
        assert_eq!(d.verdict, want, "{r} {a}: {d:?}");
    }
    // Through the real intent mapper (Stripe, AWS, SQL, LLM mappings).
    let mapper = Mapper::new(Vec::new(), 10 << 20).unwrap();
    let report = p.run_tests(&mapper);
    eprintln!("default.yaml policy tests:\n{report}");
    assert_eq!(report.results.len(), p.tests().len());
    assert!(report.ok(), "{report}");
}

#[test]
fn shipped_default_yaml_matches_builtin() {
    let on_disk = std::fs::read_to_string(policies_dir().join("default.yaml")).unwrap();
    assert_eq!(on_disk, DEFAULT_POLICY_YAML);
    // Loading the directory reads default.yaml only (examples/ is a subdirectory).
    let p = Policy::load(&[policies_dir()]).unwrap();
    assert_eq!(p.files().len(), 1, "{:?}", p.files());
}

#[test]
fn examples_load_and_their_tests_run() {
    let mapper = Mapper::new(Vec::new(), 10 << 20).unwrap();
    for name in [
        "stripe.yaml",
        "aws.yaml",
        "database.yaml",
        "http.yaml",
        "original-sudomode.yaml",
    ] {
        let path = policies_dir().join("examples").join(name);
        let p = match Policy::load(std::slice::from_ref(&path)) {
            Ok(p) => p,
            Err(e) => panic!("{name}:\n{e}"),
        };
        assert!(!p.rules().is_empty());
        let report = p.run_tests(&mapper);
        eprintln!("{name}:\n{report}");
        if name != "original-sudomode.yaml" {
            assert!(!p.tests().is_empty(), "{name} has no tests");
        }
        assert!(report.ok(), "{name}: {report}");
    }
}

#[test]
fn run_tests_reports_failures_by_file_and_name() {
    let p = Policy::from_sources(&[(
        "t.yaml",
        "rules:\n  - name: http\n    resource: 'http.*'\n    action: post\n    decision: ALLOW\ntests:\n  - name: posts allowed\n    request: {method: POST, url: 'https://api.example.com/x', body: 'a=1'}\n    expect: ALLOW\n    rule: http\n  - name: gets allowed\n    request: {url: 'https://api.example.com/x'}\n    expect: ALLOW\n",
    )])
    .unwrap();
    let mapper = Mapper::new(Vec::new(), 1 << 20).unwrap();
    let r = p.run_tests(&mapper);
    assert_eq!((r.passed(), r.failed()), (1, 1), "{r}");
    let s = r.to_string();
    assert!(s.contains("FAIL t.yaml:11: test \"gets allowed\": expected ALLOW, got http.api.example.com get → DENY"), "{s}");
    assert!(s.ends_with("1 passed, 1 failed"));
}

#[test]
fn now_is_available_to_conditions() {
    let p = policy(
        "rules:\n  - name: office_hours\n    resource: '*'\n    condition: now.getHours(\"UTC\") >= 9 && now.getHours(\"UTC\") < 17\n    decision: ALLOW\n",
    );
    assert_eq!(
        p.decide("a", &charge(json!(1)), now()).verdict,
        Verdict::Deny
    );
    let noon = time::macros::datetime!(2026-11-23 12:00:00 UTC);
    assert_eq!(
        p.decide("a", &charge(json!(1)), noon).verdict,
        Verdict::Allow
    );
}

#[test]
fn reply_after_is_a_require_approval_rules_own() {
    let p = policy(
        "rules:\n  - name: quick\n    resource: sql\n    action: delete\n    decision: REQUIRE_APPROVAL\n    reply_after: 20s\n  - name: patient\n    resource: sql\n    action: drop\n    decision: REQUIRE_APPROVAL\n    reply_after: 0\n  - name: plain\n    resource: sql\n    decision: REQUIRE_APPROVAL\n",
    );
    let judge =
        |action: &str| p.decide("a", &mapped(vec![intent("sql", action, json!({}))]), now());
    assert_eq!(
        judge("delete").reply_after,
        Some(std::time::Duration::from_secs(20))
    );
    assert_eq!(judge("drop").reply_after, Some(std::time::Duration::ZERO));
    assert_eq!(
        judge("select").reply_after,
        None,
        "unset: hold.reply_after applies"
    );
    let head = "rules:\n  - name: ok\n    resource: x\n    decision: ALLOW\n";
    assert_err(
        &format!("{head}  - name: r1\n    resource: x\n    decision: DENY\n    reply_after: 10s\n"),
        "test.yaml:8:5:",
        "\"r1\"",
        "`reply_after` only applies to REQUIRE_APPROVAL",
    );
    assert_err(
        &format!(
            "{head}  - name: r2\n    resource: x\n    decision: REQUIRE_APPROVAL\n    reply_after: soon\n"
        ),
        "test.yaml:8:5:",
        "\"r2\"",
        "`reply_after`: bad duration",
    );
}
