//! Tests of the language additions: Python spellings, shadowed rules, unknown names,
//! path variants, and what load errors may quote.

use serde_json::json;
use sudomode_intent::Mapped;

use crate::tests::{intent, load_err, now, policy, request};
use crate::*;

#[test]
fn python_spellings_load_with_one_warning_per_rule() {
    let p = policy(
        "rules:\n  - name: py\n    resource: x\n    condition: args.amount > 50 and not args.ok or args.flag == None\n    decision: DENY\n  - name: cel\n    resource: x\n    condition: args.note == 'a and b'\n    decision: DENY\n",
    );
    let w: Vec<String> = p.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("test.yaml:4:5: warning: rule \"py\""),
        "{w:?}"
    );
    assert!(w[0].contains("(and, not, or, None)"), "{w:?}");
    assert!(
        w[0].contains("`args.amount > 50 && !args.ok || args.flag == null`"),
        "{w:?}"
    );
    let info = &p.rules_info()[0];
    assert_eq!(
        info.condition_cel.as_deref(),
        Some("args.amount > 50 && !args.ok || args.flag == null")
    );
    assert!(p.rules_info()[1].condition_cel.is_none());
    // Whatever else is not CEL stays an error, every one of them in one load.
    let e = load_err(
        "rules:\n  - name: a\n    resource: x\n    condition: args.x = 5\n    decision: DENY\n  - name: b\n    resource: x\n    condition: args.y is None\n    decision: DENY\n",
    );
    assert!(
        e.contains("test.yaml:4:5: rule \"a\"") && e.contains("`==`"),
        "{e}"
    );
    assert!(
        e.contains("test.yaml:8:5: rule \"b\"") && e.contains("== null"),
        "{e}"
    );
}

#[test]
fn shadowed_rules_are_reported_naming_both() {
    let p = policy(
        "rules:\n  - name: deny_all\n    resource: '*'\n    decision: DENY\n  - name: allow_charges\n    resource: stripe.charges\n    decision: ALLOW\n",
    );
    let w: Vec<String> = p.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("test.yaml:5:3: warning: rule \"allow_charges\": can never match: rule \"deny_all\" (test.yaml:2)"),
        "{w:?}"
    );
    // Not shadowed: a condition, report mode, a narrower matcher, or a later catch-all.
    for yaml in [
        "rules:\n  - name: a\n    resource: '*'\n    condition: args.x > 1\n    decision: DENY\n  - name: b\n    resource: x\n    decision: ALLOW\n",
        "rules:\n  - name: a\n    resource: '*'\n    mode: report\n    decision: DENY\n  - name: b\n    resource: x\n    decision: ALLOW\n",
        "rules:\n  - name: a\n    resource: '*'\n    agent: bot\n    decision: DENY\n  - name: b\n    resource: x\n    decision: ALLOW\n",
        "rules:\n  - name: a\n    resource: 'stripe.*'\n    action: create\n    decision: DENY\n  - name: b\n    resource: stripe.charges\n    decision: ALLOW\n",
        "rules:\n  - name: a\n    resource: x\n    condition: args.x > 1\n    decision: ALLOW\n  - name: b\n    resource: '*'\n    decision: DENY\n",
        // An exact ALLOW path does not take the variants a DENY path matches.
        "rules:\n  - name: a\n    resource: '*'\n    path: '/admin/*'\n    decision: ALLOW\n  - name: b\n    resource: '*'\n    path: '/admin/*'\n    decision: DENY\n",
    ] {
        let p = policy(yaml);
        assert!(p.warnings().is_empty(), "{yaml}: {:?}", p.warnings());
    }
    // Subsumed globs are caught.
    let p = policy(
        "rules:\n  - name: a\n    resource: 'stripe.*'\n    action: ['create', 'update']\n    decision: DENY\n  - name: b\n    resource: stripe.charges\n    action: create\n    method: POST\n    decision: ALLOW\n",
    );
    assert_eq!(p.warnings().len(), 1, "{:?}", p.warnings());
    // The shipped starter policy and examples shadow nothing.
    assert!(
        Policy::builtin().warnings().is_empty(),
        "{:?}",
        Policy::builtin().warnings()
    );
}

#[test]
fn names_no_mapping_produces_are_reported_with_the_closest() {
    let p = policy(
        "rules:\n  - name: r\n    resource: stripe.customer\n    action: creat\n    decision: ALLOW\n  - name: govern_names\n    resource: database\n    action: read\n    decision: ALLOW\n  - name: star\n    resource: '*'\n    action: retreive\n    decision: ALLOW\n",
    );
    let w: Vec<String> = p
        .name_warnings(&[])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with("test.yaml:3:5: warning: rule \"r\": resource \"stripe.customer\""),
        "{w:?}"
    );
    assert!(w[0].contains("(closest: \"stripe.customers\")"), "{w:?}");
    assert!(
        w[1].starts_with("test.yaml:4:5:") && w[1].contains("(closest: \"create\")"),
        "{w:?}"
    );
    assert!(
        w[2].contains("\"retreive\"") && w[2].contains("(closest: \"retrieve\")"),
        "{w:?}"
    );
    // A custom intent's names are real.
    let custom: Vec<sudomode_intent::CustomIntent> = serde_json::from_value(json!([
        {"match": {"host": "api.github.com"}, "resource": "stripe.customer", "action": "creat"}
    ]))
    .unwrap();
    assert!(
        p.name_warnings(&custom).len() == 1,
        "{:?}",
        p.name_warnings(&custom)
    );
    // The shipped starter policy names only real things.
    assert!(
        Policy::builtin().name_warnings(&[]).is_empty(),
        "{:?}",
        Policy::builtin().name_warnings(&[])
    );
}

#[test]
fn deny_paths_match_their_variants_and_allow_paths_match_exactly() {
    let p = policy(
        "rules:\n  - name: deny_admin\n    resource: '*'\n    path: ['/admin', '/admin/*']\n    decision: DENY\n  - name: allow_reports\n    resource: '*'\n    path: '/reports/*'\n    decision: ALLOW\n",
    );
    let judge = |path: &str| {
        let m = Mapped {
            request: request("GET", "api.example.com", path),
            intents: vec![intent("http.api.example.com", "get", json!({}))],
        };
        let d = p.decide("a", &m, now());
        (d.verdict, d.rule.map(|r| r.0))
    };
    for path in [
        "/admin",
        "/ADMIN/users",
        "/Admin;",
        "/admin;jsessionid=1/users",
        "/admin;/users",
    ] {
        assert_eq!(
            judge(path),
            (Verdict::Deny, Some("deny_admin".into())),
            "{path}"
        );
    }
    assert_eq!(
        judge("/reports/q3"),
        (Verdict::Allow, Some("allow_reports".into()))
    );
    for path in ["/REPORTS/q3", "/reports;x=1/q3"] {
        assert_eq!(judge(path), (Verdict::Deny, None), "{path}");
    }
}

#[test]
fn version_and_errors_do_not_depend_on_path_spelling_or_quote_files() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("x.yaml"),
        "rules:\n  - {name: a, resource: '*', decision: ALLOW}\n",
    )
    .unwrap();
    let v = Policy::load(&[dir.join("x.yaml")])
        .unwrap()
        .version()
        .to_string();
    for p in [
        dir.clone(),
        d.path().join("policies/./x.yaml"),
        d.path().join("policies//x.yaml"),
    ] {
        assert_eq!(
            Policy::load(std::slice::from_ref(&p)).unwrap().version(),
            v,
            "{}",
            p.display()
        );
    }
    assert_eq!(fingerprint(std::slice::from_ref(&dir)).unwrap(), v);
    for text in [
        "sk_live_THE_SECRET_VALUE_0123: x\n",
        "rules:\n  - {name: a, resource: '*', decision: sk_live_THE_SECRET_VALUE_0123}\n",
        "rules:\n  - {name: a, resource: '*', decision: DENY, mode: sk_live_THE_SECRET_VALUE_0123}\n",
    ] {
        let e = load_err(text);
        assert!(!e.contains("THE_SECRET"), "{e}");
    }
    assert!(load_err("rule: []\n").contains("unknown field `rule`"));
    std::fs::write(dir.join("secret.yaml"), "sk_live_THE_SECRET_VALUE").unwrap();
    let e = Policy::load(std::slice::from_ref(&dir))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("secret.yaml") && !e.contains("THE_SECRET"),
        "{e}"
    );
}
