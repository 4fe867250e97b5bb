//! SQL statements (SPEC §4.4): one intent per statement, with the verb,
//! tables, functions and WHERE found by a real SQL parser.

use serde_json::{Value, json};
use sqlparser::ast::{
    Insert, OnConflictAction, OnInsert, Query, SetExpr, SqliteOnConflict, Statement,
};
use sqlparser::dialect::{Dialect, GenericDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::sql_tables::Names;
use crate::{Intent, IntentError};

/// One intent per statement is judged per rule; a request with more is not
/// a client, it is an attempt to exhaust the judge.
const MAX_STATEMENTS: usize = 1000;

/// Which grammar the server speaks, so the statement split matches its own
/// (`$$…$$` is a string to Postgres, not to SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    Sqlite,
    /// Unknown server: try both.
    Any,
}

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(msg.into())
}

/// Verbs ranked by harm: a statement that nests several (a CTE with a
/// DELETE inside a SELECT) is judged as the most harmful.
fn rank(verb: &str) -> u8 {
    match verb {
        "select" => 0,
        "explain" | "show" | "set" | "begin" | "start" | "commit" | "rollback" | "savepoint"
        | "release" => 1,
        "insert" => 3,
        "create" => 4,
        "update" | "upsert" | "merge" | "copy" | "call" | "execute" | "replace" => 5,
        "grant" | "revoke" => 6,
        "alter" => 7,
        "delete" => 8,
        "truncate" => 9,
        "drop" => 10,
        _ => 2,
    }
}

pub(crate) const KNOWN_VERBS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "drop",
    "truncate",
    "alter",
    "create",
    "grant",
    "revoke",
    "merge",
    "copy",
    "call",
    "execute",
    "explain",
    "set",
    "show",
    "begin",
    "start",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "vacuum",
    "analyze",
    "pragma",
    "attach",
    "detach",
    "lock",
    "comment",
    "prepare",
    "deallocate",
    "discard",
    "listen",
    "notify",
    "unlisten",
    "reindex",
    "cluster",
    "refresh",
    "use",
    "declare",
    "fetch",
    "close",
    "kill",
    "replace",
];

fn own_verb(s: &Statement) -> (String, bool) {
    match s {
        Statement::Query(q) => match q.body.as_ref() {
            // `SELECT … INTO t` creates a table.
            SetExpr::Select(sel) if sel.into.is_some() => {
                ("create".into(), sel.selection.is_some())
            }
            SetExpr::Select(sel) => ("select".into(), sel.selection.is_some()),
            _ => ("select".into(), false),
        },
        Statement::Insert(i) if is_upsert(i) => ("upsert".into(), false),
        Statement::Insert(_) => ("insert".into(), false),
        Statement::Update(u) => ("update".into(), u.selection.is_some()),
        Statement::Delete(d) => ("delete".into(), d.selection.is_some()),
        other => {
            let text = other.to_string();
            let first = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let verb = if KNOWN_VERBS.contains(&first.as_str()) {
                first
            } else {
                "other".into()
            };
            (verb, false)
        }
    }
}

/// `INSERT … ON CONFLICT DO UPDATE`, `ON DUPLICATE KEY UPDATE`, `REPLACE
/// INTO` and `INSERT OR REPLACE` overwrite existing rows.
fn is_upsert(i: &Insert) -> bool {
    i.replace_into
        || matches!(i.or, Some(SqliteOnConflict::Replace))
        || match &i.on {
            Some(OnInsert::DuplicateKeyUpdate(_)) => true,
            Some(OnInsert::OnConflict(c)) => matches!(c.action, OnConflictAction::DoUpdate(_)),
            _ => false,
        }
}

/// How deep nested statements are followed; the parser's own recursion
/// limit keeps real inputs far below this.
const MAX_WALK_DEPTH: usize = 64;

/// Every statement nested where Postgres allows data-modifying ones (CTEs,
/// INSERT sources, set operations, EXPLAIN ANALYZE), outermost first.
fn walk_stmt(s: &Statement, depth: usize, acc: &mut Vec<(String, bool)>) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    acc.push(own_verb(s));
    match s {
        Statement::Query(q) => walk_query(q, depth + 1, acc),
        Statement::Insert(i) => {
            if let Some(src) = &i.source {
                walk_query(src, depth + 1, acc);
            }
        }
        // Judged as what it explains: EXPLAIN ANALYZE executes it.
        Statement::Explain { statement, .. } => walk_stmt(statement, depth + 1, acc),
        _ => {}
    }
}

fn walk_query(q: &Query, depth: usize, acc: &mut Vec<(String, bool)>) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            walk_query(&cte.query, depth + 1, acc);
        }
    }
    walk_set(&q.body, depth + 1, acc);
}

fn walk_set(b: &SetExpr, depth: usize, acc: &mut Vec<(String, bool)>) {
    if depth > MAX_WALK_DEPTH {
        return;
    }
    match b {
        SetExpr::Query(q) => walk_query(q, depth + 1, acc),
        SetExpr::SetOperation { left, right, .. } => {
            walk_set(left, depth + 1, acc);
            walk_set(right, depth + 1, acc);
        }
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            walk_stmt(s, depth + 1, acc);
        }
        _ => {}
    }
}

/// How deep SQL handed to `query_to_xml`/`dblink`… inside SQL is followed.
const MAX_EMBEDDED_DEPTH: usize = 3;

/// Verb (the most harmful one nested), WHERE and names of one statement,
/// SQL it hands to functions that run it included.
fn analyze(stmt: &Statement, text: &str, flavor: Flavor, depth: usize) -> (String, bool, Names) {
    let mut all = Vec::new();
    walk_stmt(stmt, 0, &mut all);
    let mut best: Option<(u8, String, bool)> = None;
    for (verb, has_where) in all {
        let r = rank(&verb);
        if best.as_ref().is_none_or(|(br, ..)| r > *br) {
            best = Some((r, verb, has_where));
        }
    }
    let (mut rank_found, mut verb, has_where) = best.unwrap_or((2, "other".into(), false));
    if rank_found <= 1
        && let Some(nested) = nested_write(text).filter(|v| rank(v) > rank_found)
    {
        rank_found = rank(&nested);
        verb = nested;
    }
    let mut names = crate::sql_tables::names(text, flavor == Flavor::Sqlite);
    let embedded = std::mem::take(&mut names.embedded);
    for inner in embedded.iter().take_while(|_| depth < MAX_EMBEDDED_DEPTH) {
        let Ok(Some(stmts)) = parse(inner, flavor) else {
            continue;
        };
        for s in stmts.iter().take(MAX_STATEMENTS) {
            let (v, _, n) = analyze(s, &s.to_string(), flavor, depth + 1);
            if rank(&v) > rank_found {
                rank_found = rank(&v);
                verb = v;
            }
            names.merge(n);
        }
    }
    (verb, has_where, names)
}

/// One SQL text from a request and its bind parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SqlText {
    pub sql: String,
    pub params: Value,
}

impl SqlText {
    pub fn new(sql: &str, params: Value) -> SqlText {
        SqlText {
            sql: sql.to_string(),
            params,
        }
    }
}

fn intent(
    action: &str,
    sql: &str,
    names: Names,
    has_where: bool,
    database: &str,
    params: &Value,
) -> Intent {
    Intent::new(
        "sql",
        action,
        json!({
            "sql": sql,
            "tables": names.tables,
            "qualified_tables": names.qualified_tables,
            "has_where": has_where,
            "database": database,
            "functions": names.functions,
            "params": params,
        }),
    )
}

/// `unparsed` / `other` for a request with no SQL text to judge.
pub(crate) fn intent_without_sql(action: &str, database: &str) -> Intent {
    intent(action, "", Names::default(), false, database, &json!([]))
}

fn too_many() -> IntentError {
    bad(format!("more than {MAX_STATEMENTS} SQL statements"))
}

/// `Ok(None)` when no grammar accepts the text (judged as `unparsed`).
fn parse(sql: &str, flavor: Flavor) -> Result<Option<Vec<Statement>>, IntentError> {
    let dialects: Vec<Box<dyn Dialect>> = match flavor {
        Flavor::Postgres => vec![Box::new(PostgreSqlDialect {}), Box::new(GenericDialect)],
        Flavor::Sqlite => vec![Box::new(SQLiteDialect {}), Box::new(GenericDialect)],
        Flavor::Any => {
            vec![
                Box::new(PostgreSqlDialect {}),
                Box::new(SQLiteDialect {}),
                Box::new(GenericDialect),
            ]
        }
    };
    let Some(primary) = dialects.first() else {
        return Ok(None);
    };
    let Ok(primary_tokens) = Tokenizer::new(primary.as_ref(), sql).tokenize() else {
        return Ok(None);
    };
    if statement_count(&primary_tokens) > MAX_STATEMENTS {
        // Counted by the lexer, refused without parsing every statement.
        return Err(too_many());
    }
    if let Some(stmts) = parse_tokens(primary.as_ref(), primary_tokens.clone()) {
        return Ok(Some(stmts));
    }
    // A fallback grammar may lex differently (backticks, `#` comments) and
    // see fewer statements than the server does: only trust it when the
    // server's own lexer splits the text into as many statements.
    let expected = statement_count(&primary_tokens);
    Ok(dialects[1..]
        .iter()
        .filter_map(|d| {
            let tokens = Tokenizer::new(d.as_ref(), sql).tokenize().ok()?;
            parse_tokens(d.as_ref(), tokens)
        })
        .find(|stmts| stmts.len() == expected))
}

/// Most tokens one list element (between `,` / `;`) may have. The parser
/// builds `a + b + c …` as a left-deep tree without a recursion limit, and
/// printing or dropping a tree 100k deep overflows the stack; no real query
/// has an element this long (a string literal is one token).
const MAX_ELEMENT_TOKENS: usize = 4096;

fn too_complex(tokens: &[Token]) -> bool {
    let mut run = 0usize;
    for t in tokens {
        match t {
            Token::Comma | Token::SemiColon => run = 0,
            Token::Whitespace(_) => {}
            _ => {
                run += 1;
                if run > MAX_ELEMENT_TOKENS {
                    return true;
                }
            }
        }
    }
    false
}

/// Parses already-lexed SQL; `None` when it does not parse or is too
/// complex to analyse safely (then it is judged as `unparsed`).
fn parse_tokens(dialect: &dyn Dialect, tokens: Vec<Token>) -> Option<Vec<Statement>> {
    if too_complex(&tokens) {
        return None;
    }
    Parser::new(dialect)
        .with_tokens(tokens)
        .parse_statements()
        .ok()
}

/// Non-empty `;`-separated token groups as the lexer saw them.
fn statement_count(tokens: &[Token]) -> usize {
    let mut count = 0;
    let mut open = false;
    for t in tokens {
        match t {
            Token::SemiColon => {
                if open {
                    count += 1;
                }
                open = false;
            }
            Token::Whitespace(_) | Token::EOF => {}
            _ => open = true,
        }
    }
    if open {
        count += 1;
    }
    count
}

/// Data-modifying words nested anywhere in a statement the AST walk judged
/// as a read (e.g. a DML CTE inside a derived table or an expression
/// subquery): the most harmful one, read from the lexer's tokens so strings,
/// comments and quoted identifiers never count. `FOR UPDATE` row locks and
/// `ON DELETE` clauses are not modifications.
fn nested_write(text: &str) -> Option<String> {
    let tokens = Tokenizer::new(&GenericDialect, text).tokenize().ok()?;
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut best: Option<(u8, String)> = None;
    for (i, t) in words.iter().enumerate() {
        let Token::Word(w) = t else { continue };
        if w.quote_style.is_some() {
            continue;
        }
        let prev = i
            .checked_sub(1)
            .and_then(|j| words.get(j))
            .and_then(|p| match p {
                Token::Word(pw) if pw.quote_style.is_none() => Some(pw.keyword),
                _ => None,
            });
        // Followed by `(`, `.`, `,`, `)` or `=` it is a name, not a statement.
        let next_is_name_context = matches!(
            words.get(i + 1),
            Some(Token::LParen | Token::Period | Token::Comma | Token::RParen | Token::Eq)
        );
        let verb = match w.keyword {
            Keyword::INSERT => "insert",
            Keyword::UPDATE if !matches!(prev, Some(Keyword::FOR | Keyword::KEY | Keyword::ON)) => {
                "update"
            }
            Keyword::DELETE if !matches!(prev, Some(Keyword::ON)) => "delete",
            Keyword::MERGE => "merge",
            _ => continue,
        };
        let after_period = i
            .checked_sub(1)
            .and_then(|j| words.get(j))
            .is_some_and(|p| matches!(p, Token::Period));
        if next_is_name_context || after_period || matches!(prev, Some(Keyword::AS)) {
            continue;
        }
        let r = rank(verb);
        if best.as_ref().is_none_or(|(br, _)| r > *br) {
            best = Some((r, verb.to_string()));
        }
    }
    best.map(|(_, v)| v)
}

/// One intent per statement of `sql`; `unparsed` when no dialect accepts it.
pub fn sql_intents(sql: &str, database: &str, flavor: Flavor) -> Result<Vec<Intent>, IntentError> {
    text_intents(&SqlText::new(sql, json!([])), database, flavor)
}

fn text_intents(t: &SqlText, database: &str, flavor: Flavor) -> Result<Vec<Intent>, IntentError> {
    let sql = t.sql.as_str();
    let Some(stmts) = parse(sql, flavor)? else {
        return Ok(vec![intent(
            "unparsed",
            sql,
            Names::default(),
            false,
            database,
            &t.params,
        )]);
    };
    if stmts.len() > MAX_STATEMENTS {
        return Err(too_many());
    }
    if stmts.is_empty() {
        return Ok(vec![intent(
            "other",
            sql,
            Names::default(),
            false,
            database,
            &t.params,
        )]);
    }
    Ok(stmts
        .iter()
        .map(|s| {
            let text = s.to_string();
            let (verb, has_where, names) = analyze(s, &text, flavor, 0);
            intent(&verb, &text, names, has_where, database, &t.params)
        })
        .collect())
}

/// Intents for several SQL texts sent in one request.
pub(crate) fn many(
    texts: &[SqlText],
    database: &str,
    flavor: Flavor,
) -> Result<Vec<Intent>, IntentError> {
    let mut out = Vec::new();
    for t in texts {
        out.extend(text_intents(t, database, flavor)?);
        if out.len() > MAX_STATEMENTS {
            return Err(too_many());
        }
    }
    if out.is_empty() {
        out.push(intent_without_sql("other", database));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verbs(sql: &str) -> Vec<(String, bool, Value)> {
        sql_intents(sql, "db", Flavor::Any)
            .unwrap()
            .into_iter()
            .map(|i| {
                (
                    i.action,
                    i.args["has_where"].as_bool().unwrap(),
                    i.args["tables"].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn statements() {
        let v = verbs("SELECT 1; DROP TABLE users");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].0.as_str(), v[1].0.as_str()), ("select", "drop"));
        assert_eq!(v[1].2, json!(["users"]));
        assert_eq!(
            verbs("DELETE FROM t WHERE id = 1")[0],
            ("delete".into(), true, json!(["t"]))
        );
        assert_eq!(
            verbs("delete from t")[0],
            ("delete".into(), false, json!(["t"]))
        );
        assert_eq!(verbs("UPDATE t SET a = 1")[0].0, "update");
        assert_eq!(verbs("INSERT INTO t (a) SELECT a FROM u")[0].0, "insert");
        assert_eq!(verbs("TRUNCATE t")[0].0, "truncate");
        assert_eq!(verbs("ALTER TABLE t ADD COLUMN c int")[0].0, "alter");
        assert_eq!(verbs("CREATE TABLE t (a int)")[0].0, "create");
        assert_eq!(verbs("GRANT ALL ON t TO bob")[0].0, "grant");
        assert_eq!(verbs("REVOKE ALL ON t FROM bob")[0].0, "revoke");
        assert_eq!(verbs("SELECT * INTO t2 FROM t")[0].0, "create");
        assert_eq!(verbs("not sql at all")[0].0, "unparsed");
        assert_eq!(verbs("")[0].0, "other");
    }

    #[test]
    fn hidden_writes_are_found() {
        let v = verbs("WITH x AS (DELETE FROM users RETURNING *) SELECT * FROM x");
        assert_eq!((v.len(), v[0].0.as_str(), v[0].1), (1, "delete", false));
        assert!(v[0].2.as_array().unwrap().contains(&json!("users")));
        // Comments and strings do not split statements.
        let v = verbs("SELECT 'a; DROP TABLE t' /* ; DROP TABLE u */ -- ; DROP TABLE v\n");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, "select");
        assert_eq!(verbs("EXPLAIN ANALYZE DELETE FROM t")[0].0, "delete");
    }

    #[test]
    fn upserts() {
        for sql in [
            "INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = 2",
            "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
            "REPLACE INTO t (id) VALUES (1)",
            "INSERT OR REPLACE INTO t (id) VALUES (1)",
        ] {
            assert_eq!(verbs(sql)[0].0, "upsert", "{sql}");
        }
        assert_eq!(
            verbs("INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING")[0].0,
            "insert"
        );
    }

    #[test]
    fn sql_run_by_functions_is_judged() {
        let v = verbs("SELECT query_to_xml('select * from PAYMENT_TOKENS', true, false, '')");
        assert_eq!(
            (v[0].0.as_str(), &v[0].2),
            ("select", &json!(["payment_tokens"]))
        );
        let v = verbs("SELECT dblink_exec('conn', 'DELETE FROM users')");
        assert_eq!((v[0].0.as_str(), &v[0].2), ("delete", &json!(["users"])));
        let v = verbs("SELECT * FROM table_to_xml('payment_tokens', true, false, '')");
        assert_eq!(v[0].2, json!(["payment_tokens"]));
        // Nested text inside nested text, to the depth limit and no further.
        let v = verbs("SELECT dblink('c', 'SELECT dblink(''c'', ''DROP TABLE x'')')");
        assert_eq!((v[0].0.as_str(), &v[0].2), ("drop", &json!(["x"])));
    }

    #[test]
    fn too_many_statements() {
        let sql = "SELECT 1;".repeat(MAX_STATEMENTS + 1);
        assert!(sql_intents(&sql, "db", Flavor::Postgres).is_err());
    }
}
