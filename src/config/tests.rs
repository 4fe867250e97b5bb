use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, None, Path::new("/base"), "sudomode.yaml")
}

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.proxy_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.dashboard_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(c.ca_dir, PathBuf::from("/base/certs"));
    assert_eq!(c.store_path, PathBuf::from("/base/data/sudomode.redb"));
    assert_eq!(c.hold_timeout, Duration::from_secs(600));
    assert_eq!(c.durability, Durability::Strict);
}

#[test]
fn unknown_key_names_line_and_key() {
    let err = parse("proxy:\n  lisen: 1.2.3.4:5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sudomode.yaml:2:"), "{err}");
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn bad_duration_names_key() {
    let err = parse("hold:\n  timeout: 10 minutes\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hold.timeout"), "{err}");
}

#[test]
fn env_reference_expands_and_missing_names_key_not_value() {
    // SAFETY of test env mutation: the variable name is unique to this test.
    unsafe { std::env::set_var("SUDOMODE_TEST_TOKEN_A", "s3cr3t-value-xyz") };
    let c = parse("agents:\n  - name: bot\n    token: ${env:SUDOMODE_TEST_TOKEN_A}\n").unwrap();
    assert_eq!(c.agents[0].token, "s3cr3t-value-xyz");
    let err = parse("agents:\n  - name: bot\n    token: ${env:SUDOMODE_TEST_MISSING_B}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("agents[0].token"), "{err}");
    assert!(err.contains("SUDOMODE_TEST_MISSING_B"), "{err}");
}

#[test]
fn file_reference_drops_one_newline_and_resolves_relative() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tok"), "abc-token-123\n\n").unwrap();
    let c = Config::parse(
        "agents:\n  - name: bot\n    token: ${file:tok}\n",
        None,
        dir.path(),
        "x.yaml",
    )
    .unwrap();
    assert_eq!(c.agents[0].token, "abc-token-123\n");
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
    assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
    assert!(parse_size("ten").is_err());
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86400)
    );
    assert!(parse_duration("5").is_err());
}

#[test]
fn operator_debug_hides_token() {
    let c =
        parse("operators:\n  - {name: alice, token: tok-alice-123456, role: approver}\n").unwrap();
    let dbg = format!("{:?}", c.operators);
    assert!(!dbg.contains("tok-alice"), "{dbg}");
}

#[test]
fn bad_role_is_rejected_with_line() {
    let err = parse("operators:\n  - {name: a, token: 12345678, role: god}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2:"), "{err}");
}

#[test]
fn hold_reply_after_defaults_to_50s_and_0_disables() {
    let c = parse("").unwrap();
    assert_eq!(c.reply_after, Duration::from_secs(50));
    for zero in ["hold:\n  reply_after: 0\n", "hold:\n  reply_after: \"0\"\n"] {
        assert_eq!(parse(zero).unwrap().reply_after, Duration::ZERO, "{zero}");
    }
    assert_eq!(
        parse("hold:\n  reply_after: 5s\n").unwrap().reply_after,
        Duration::from_secs(5)
    );
    for bad in [
        "hold:\n  reply_after: soon\n",
        "hold:\n  reply_after: [1]\n",
    ] {
        let err = parse(bad).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("hold.reply_after"), "{err}");
    }
}
