//! Regressions for evasions found by tests/evasion.rs and the fuzz targets:
//! each input once mapped to something milder than what the upstream runs.

mod common;

use sudomode_intent::{IntentError, Mapped, Mapper, SqlFlavor, sql_intents};

fn map(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Mapped, IntentError> {
    let mapper = Mapper::new(Vec::new(), 1 << 20).unwrap();
    common::run(&mapper, method, host, target, headers, body)
}

fn actions(sql: &str, flavor: SqlFlavor) -> Vec<String> {
    sql_intents(sql, "db", flavor)
        .unwrap()
        .into_iter()
        .map(|i| i.action)
        .collect()
}

#[test]
fn json_bodies_with_repeated_keys_are_refused() {
    const JSON: (&str, &str) = ("content-type", "application/json");
    // Which copy wins differs between parsers: judge neither.
    for body in [
        &br#"{"amount":99999,"amount":1}"#[..],
        br#"{"amount":1,"amount":99999}"#,
        br#"{"a":{"b":1,"b":2}}"#,
        br#"[{"x":1},{"y":{"z":1,"z":1}}]"#,
        br#"{"query":"DROP TABLE users","qu\u0065ry":"SELECT 1"}"#,
    ] {
        let r = map("api.stripe.com", "POST", "/v2/core/things", &[JSON], body);
        assert!(
            matches!(r, Err(IntentError::BadRequest(_))),
            "{}: {r:?}",
            String::from_utf8_lossy(body)
        );
        // Sniffed (no Content-Type) too.
        let r = map("api.stripe.com", "POST", "/v2/core/things", &[], body);
        assert!(
            matches!(r, Err(IntentError::BadRequest(_))),
            "sniffed {}: {r:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Colons in strings and equal keys in different objects are fine.
    let ok = br#"{"a":"x:y:z","b":[{"k":1},{"k":2}],"c":{"k":3}}"#;
    assert!(map("api.stripe.com", "POST", "/v2/core/things", &[JSON], ok).is_ok());
}

#[test]
fn neon_query_and_queries_together_are_refused() {
    let body = br#"{"query":"SELECT 1","queries":[{"query":"DROP TABLE users"}]}"#;
    let r = map(
        "ep-x.us-east-2.aws.neon.tech",
        "POST",
        "/sql",
        &[("content-type", "application/json")],
        body,
    );
    assert!(matches!(r, Err(IntentError::BadRequest(_))), "{r:?}");
}

#[test]
fn a_fallback_grammar_never_hides_statements() {
    // Postgres's lexer sees two statements here; the generic grammar reads
    // one backtick-quoted identifier.
    let a = actions("SELECT `;DROP TABLE users;`", SqlFlavor::Postgres);
    assert_ne!(a, vec!["select".to_string()], "{a:?}");
    let a = actions("SELECT `;DROP TABLE users;`", SqlFlavor::Any);
    assert_ne!(a, vec!["select".to_string()], "{a:?}");
}

#[test]
fn writes_nested_in_reads_are_judged_as_writes() {
    for (sql, want) in [
        (
            "SELECT * FROM (WITH u AS (UPDATE users SET a = 1 RETURNING *) SELECT * FROM u) x",
            "update",
        ),
        (
            "SELECT * FROM t WHERE id IN (WITH d AS (DELETE FROM users RETURNING id) SELECT id FROM d)",
            "delete",
        ),
        (
            "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
            "delete",
        ),
    ] {
        let a = actions(sql, SqlFlavor::Postgres);
        assert_eq!(a, vec![want.to_string()], "{sql}");
    }
    // Row locks, strings, quoted and qualified names are not writes.
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t FOR SHARE",
        "SELECT 'delete from users' FROM t",
        "SELECT \"delete\" FROM t",
        "SELECT t.update FROM t",
        "SELECT update_count, deleted FROM t",
    ] {
        assert_eq!(
            actions(sql, SqlFlavor::Postgres),
            vec!["select".to_string()],
            "{sql}"
        );
    }
}

/// `SELECT 1+1+…` 100k long used to overflow the stack (the parser builds a
/// left-deep tree without a recursion limit; printing and dropping it
/// recurse), aborting the whole proxy. Run on a 2 MiB stack like a tokio
/// worker's; every shape must come back with an answer.
#[test]
fn huge_or_deep_sql_never_overflows_the_stack() {
    let n = 4000;
    let cases = vec![
        format!("SELECT {}1", "1+".repeat(100_000)),
        format!("SELECT {}1", "1+".repeat(1_000_000)),
        format!("SELECT 1 WHERE {}b", "a OR ".repeat(200_000)),
        format!("SELECT {}1", "NOT ".repeat(n)),
        format!("SELECT {}1", "- ".repeat(n)),
        format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
        format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n)),
        format!("SELECT 1{}", "::int".repeat(n)),
        format!("SELECT a{}", "[1]".repeat(n)),
        format!(
            "SELECT {}1{}",
            "CASE WHEN 1 THEN ".repeat(n),
            " END".repeat(n)
        ),
        format!("SELECT 1 {}", "UNION SELECT 1 ".repeat(n)),
        format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
        format!("SELECT {}", "f(".repeat(n) + &")".repeat(n)),
        format!("SELECT 1 {}", "|| 'a' ".repeat(n)),
        format!("SELECT x FROM t {}", "JOIN t ON 1 ".repeat(n)),
    ];
    for (i, sql) in cases.into_iter().enumerate() {
        for flavor in [SqlFlavor::Postgres, SqlFlavor::Sqlite, SqlFlavor::Any] {
            let sql = sql.clone();
            let r = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || sql_intents(&sql, "db", flavor).map(|v| v.len()))
                .unwrap()
                .join();
            assert!(
                matches!(r, Ok(Ok(n)) if n >= 1),
                "case {i} {flavor:?}: {r:?}"
            );
        }
    }
    assert_eq!(
        actions(
            &format!("SELECT {}1", "1+".repeat(100_000)),
            SqlFlavor::Postgres
        ),
        vec!["unparsed".to_string()]
    );
    assert_eq!(
        actions(
            &format!("SELECT {}1", "1+".repeat(1000)),
            SqlFlavor::Postgres
        ),
        vec!["select".to_string()]
    );
}

/// Found by the `form_json_args` fuzz target: a form or query whose keys
/// were all numbers became a top-level array, which the mappers' object
/// conversion then dropped, so those parameters went unjudged.
#[test]
fn numeric_top_level_form_keys_stay_arguments() {
    let v = sudomode_intent::parse_form(b"0=a&1=b").unwrap();
    assert_eq!(v, serde_json::json!({"0": "a", "1": "b"}));
    let m = map("api.stripe.com", "GET", "/v1/customers?0=x&1=y", &[], b"").unwrap();
    assert_eq!(m.intents[0].args["0"], "x");
    let m = map(
        "api.stripe.com",
        "POST",
        "/v1/charges?1=z",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"amount=5",
    )
    .unwrap();
    assert_eq!(m.intents[0].args["1"], "z");
    assert_eq!(m.intents[0].args["amount"], 5);
}

/// A UTF-8 BOM before a JSON body must not turn it into an unreadable form.
#[test]
fn json_with_a_byte_order_mark_is_read_as_json() {
    for headers in [&[][..], &[("content-type", "application/json")][..]] {
        let m = map(
            "api.example.com",
            "POST",
            "/x",
            headers,
            b"\xEF\xBB\xBF{\"amount\":99999}",
        )
        .unwrap();
        assert_eq!(m.intents[0].args["amount"], 99999, "{headers:?}");
    }
}

/// Found by the `normalize` fuzz target: `/a%%%C%614F\c` normalised to a
/// path containing `%Ca`, an escape the input never had; the mappers'
/// segment decoding then decoded twice (`%2%65` → `%2e` → `.`).
#[test]
fn normalising_never_creates_new_escapes() {
    for raw in [
        "/a%%%C%614F\\c",
        "/v1/customers/%2%65%2%65",
        "/%%41",
        "/%",
        "/a%2",
    ] {
        let once = sudomode_intent::normalize_path(raw);
        assert_eq!(sudomode_intent::normalize_path(&once), once, "{raw}");
    }
    let m = map(
        "api.stripe.com",
        "DELETE",
        "/v1/customers/cus_1/%2%65%2%65",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(
        m.intents[0].resource, "stripe.customers.%2e%2e",
        "{:?}",
        m.intents
    );
}
