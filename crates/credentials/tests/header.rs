//! Header credentials, host matching, YAML config and redaction.

mod common;

use sudomode_credentials::{CredentialError, CredentialSpec, Injector, Secret};

fn stripe() -> CredentialSpec {
    CredentialSpec {
        name: "stripe".into(),
        hosts: vec!["api.stripe.com".into()],
        header: Some("Authorization".into()),
        value: Some(Secret::new("Bearer sk_live_real")),
        aws: None,
        plaintext: false,
    }
}

#[test]
fn placeholder_is_replaced_and_duplicates_removed() {
    let injector = Injector::new(vec![stripe()]).unwrap();
    let mut parts = common::agent_request(
        "POST",
        "https://api.stripe.com/v1/charges",
        &[
            ("authorization", "Bearer sk_test_placeholder"),
            ("Authorization", "Bearer sk_test_second"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    );
    let applied = injector
        .apply("api.stripe.com", &mut parts, b"amount=5000")
        .unwrap();
    assert_eq!(applied.as_deref(), Some("stripe"));
    let values: Vec<_> = parts.headers.get_all("authorization").iter().collect();
    assert_eq!(values, ["Bearer sk_live_real"]);
    assert!(values[0].is_sensitive());
    assert_eq!(
        parts.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(parts.uri, "https://api.stripe.com/v1/charges");
    let all = common::dump(&parts);
    assert!(
        !all.contains("placeholder") && !all.contains("sk_test_second"),
        "{all}"
    );
}

#[test]
fn header_is_added_when_the_agent_sent_none() {
    let injector = Injector::new(vec![stripe()]).unwrap();
    let mut parts = common::agent_request("GET", "https://api.stripe.com/v1/charges", &[]);
    injector.apply("API.STRIPE.COM.", &mut parts, b"").unwrap();
    assert_eq!(parts.headers["authorization"], "Bearer sk_live_real");
}

#[test]
fn other_hosts_are_untouched() {
    let injector = Injector::new(vec![stripe()]).unwrap();
    for host in [
        "api.stripe.com.evil.com",
        "evilapi.stripe.com",
        "stripe.com",
        "files.stripe.com",
    ] {
        let url = format!("https://{host}/v1/charges");
        let mut parts = common::agent_request(
            "POST",
            &url,
            &[("authorization", "Bearer sk_test_placeholder")],
        );
        let before = common::dump(&parts);
        assert_eq!(
            injector.apply(host, &mut parts, b"").unwrap(),
            None,
            "{host}"
        );
        assert_eq!(common::dump(&parts), before, "{host}");
    }
}

#[test]
fn first_matching_spec_wins_and_globs_are_anchored() {
    let mut wide = stripe();
    wide.name = "wide".into();
    wide.hosts = vec!["*.example.com".into(), "api?.other.org".into()];
    wide.header = Some("X-Api-Key".into());
    wide.value = Some(Secret::new("wide-key-0001"));
    let mut narrow = stripe();
    narrow.name = "narrow".into();
    narrow.hosts = vec!["api.example.com".into()];
    let injector = Injector::new(vec![wide, narrow]).unwrap();
    assert_eq!(injector.credential_for("api.example.com"), Some("wide"));
    assert_eq!(injector.credential_for("a.b.EXAMPLE.com"), Some("wide"));
    assert_eq!(injector.credential_for("example.com"), None);
    assert_eq!(injector.credential_for("example.com.evil.net"), None);
    assert_eq!(injector.credential_for("api1.other.org"), Some("wide"));
    assert_eq!(injector.credential_for("api.other.org"), None);
    assert_eq!(injector.credential_for("api12.other.org"), None);
}

#[test]
fn uri_host_must_match_the_destination() {
    let injector = Injector::new(vec![stripe()]).unwrap();
    let mut parts = common::agent_request(
        "GET",
        "https://evil.example/v1/charges",
        &[("authorization", "Bearer sk_test_placeholder")],
    );
    let err = injector
        .apply("api.stripe.com", &mut parts, b"")
        .unwrap_err();
    assert!(matches!(err, CredentialError::InvalidRequest(_)));
    assert_eq!(parts.headers["authorization"], "Bearer sk_test_placeholder");
}

#[test]
fn yaml_config_and_validation() {
    let yaml = r#"
- name: stripe
  hosts: ["api.stripe.com"]
  header: Authorization
  value: "Bearer sk_live_real"
- name: aws
  hosts: ["*.amazonaws.com"]
  aws: {access_key_id: "AKIAREAL", secret_access_key: "s3cr3t-key-value", session_token: ""}
- name: aws2
  hosts: ["*.amazonaws.com.cn"]
  aws: {access_key_id: "AKIAREAL2", secret_access_key: "other-secret", session_token: "tok-value-123"}
"#;
    let specs: Vec<CredentialSpec> = serde_yaml::from_str(yaml).unwrap();
    assert!(
        specs[1].aws.as_ref().unwrap().session_token.is_none(),
        "empty token = none"
    );
    assert!(specs[2].aws.as_ref().unwrap().session_token.is_some());
    let injector = Injector::new(specs).unwrap();
    let secrets = injector.secrets();
    for s in [
        "Bearer sk_live_real",
        "sk_live_real",
        "AKIAREAL",
        "s3cr3t-key-value",
        "other-secret",
        "tok-value-123",
    ] {
        assert!(secrets.iter().any(|x| x == s), "{s} missing from secrets()");
    }
    assert!(!secrets.iter().any(|s| s.is_empty()));

    let unknown = "- {name: x, hosts: [a.com], header: X-Key, value: v, extra: 1}";
    assert!(serde_yaml::from_str::<Vec<CredentialSpec>>(unknown).is_err());
    let unknown_aws =
        "- {name: x, hosts: [a.com], aws: {access_key_id: A, secret_access_key: B, region: us}}";
    assert!(serde_yaml::from_str::<Vec<CredentialSpec>>(unknown_aws).is_err());

    let bad = [
        "- {name: x, hosts: [], header: X-Key, value: v}",
        "- {name: x, hosts: [a.com], header: X-Key}",
        "- {name: x, hosts: [a.com], value: v}",
        "- {name: x, hosts: [a.com]}",
        "- {name: x, hosts: [a.com], header: 'Bad Header', value: v}",
        "- {name: x, hosts: [a.com], header: Host, value: v}",
        "- {name: x, hosts: ['https://a.com'], header: X-Key, value: v}",
        "- {name: x, hosts: [a.com], header: X-Key, value: v, aws: {access_key_id: A, secret_access_key: B}}",
        "- {name: x, hosts: [a.com], aws: {access_key_id: '', secret_access_key: B}}",
        "- {name: x, hosts: [a.com], header: X-Key, value: \"line\\nbreak-secret\"}",
        "- {name: x, hosts: [a.com], header: X-Key, value: v}\n- {name: x, hosts: [b.com], header: X-Key, value: w}",
    ];
    for yaml in bad {
        let specs: Vec<CredentialSpec> = serde_yaml::from_str(yaml).unwrap();
        let err = Injector::new(specs).expect_err(yaml);
        assert!(matches!(err, CredentialError::Config(_)), "{yaml}: {err:?}");
        assert!(!err.to_string().contains("break-secret"), "{err}");
    }
}

#[test]
fn debug_and_display_never_show_secrets() {
    let secret = Secret::new("sk_live_real");
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(secret.expose(), "sk_live_real");

    let aws = common::aws_injector(true);
    let specs = vec![stripe()];
    let spec_dbg = format!("{specs:?}");
    let injector = Injector::new(specs).unwrap();
    for text in [
        spec_dbg,
        format!("{injector:?}"),
        format!("{aws:?}"),
        format!("{aws:#?}"),
    ] {
        for s in [
            "sk_live_real",
            common::REAL_AKID,
            common::REAL_SECRET,
            common::REAL_TOKEN,
        ] {
            assert!(!text.contains(s), "{s} leaked in {text}");
        }
    }
    assert!(format!("{injector:?}").contains("stripe"));
}
