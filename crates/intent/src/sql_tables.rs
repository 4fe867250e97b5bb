//! Table and function names in one SQL statement, read from the lexer's
//! tokens so that strings, comments and quoted identifiers are handled like
//! the server does; names folded as the server resolves them (SPEC §4.4).

use std::collections::HashSet;

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

/// Functions whose text arguments are SQL the server runs (`query_to_xml('select
/// … from t', …)`, `dblink_exec(conn, 'drop table t')`): judged as part of the
/// statement.
const QUERY_TEXT_FUNCTIONS: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "dblink",
    "dblink_exec",
    "dblink_open",
    "dblink_send_query",
];

/// Functions whose first text argument names a table they read in full.
const TABLE_NAME_FUNCTIONS: &[&str] = &[
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
];

/// Keywords that take a parenthesis as syntax, not as a call.
const SYNTAX_BEFORE_PAREN: &[Keyword] = &[
    Keyword::ALL,
    Keyword::AND,
    Keyword::ANY,
    Keyword::ARRAY,
    Keyword::AS,
    Keyword::BETWEEN,
    Keyword::BY,
    Keyword::CASE,
    Keyword::CHECK,
    Keyword::COLUMNS,
    Keyword::CONFLICT,
    Keyword::CONSTRAINT,
    Keyword::CUBE,
    Keyword::DISTINCT,
    Keyword::DO,
    Keyword::ELSE,
    Keyword::EXCEPT,
    Keyword::EXISTS,
    Keyword::FILTER,
    Keyword::FROM,
    Keyword::GROUP,
    Keyword::HAVING,
    Keyword::IN,
    Keyword::INCLUDE,
    Keyword::INTERSECT,
    Keyword::INTO,
    Keyword::IS,
    Keyword::JOIN,
    Keyword::KEY,
    Keyword::LATERAL,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::LIMIT,
    Keyword::NOT,
    Keyword::OFFSET,
    Keyword::ON,
    Keyword::OR,
    Keyword::OVER,
    Keyword::PARTITION,
    Keyword::RECURSIVE,
    Keyword::RETURNING,
    Keyword::ROLLUP,
    Keyword::ROW,
    Keyword::SELECT,
    Keyword::SET,
    Keyword::SETS,
    Keyword::SOME,
    Keyword::TABLE,
    Keyword::THEN,
    Keyword::TO,
    Keyword::UNION,
    Keyword::UNIQUE,
    Keyword::USING,
    Keyword::VALUES,
    Keyword::WHEN,
    Keyword::WHERE,
    Keyword::WITH,
    Keyword::WITHIN,
];

/// An identifier as the server resolves it: PostgreSQL lower-cases unquoted
/// names and keeps quoted ones as written; SQLite ignores case either way.
fn fold(w: &Word, fold_quoted: bool) -> String {
    if w.quote_style.is_none() || fold_quoted {
        w.value.to_ascii_lowercase()
    } else {
        w.value.clone()
    }
}

/// `a`, `s.a`, `"S"."a"` starting at `j`, folded: (qualified name, last
/// part), and the index after it.
fn read_name(
    toks: &[&Token],
    mut j: usize,
    fold_quoted: bool,
) -> (Option<(String, String)>, usize) {
    let Some(Token::Word(w)) = toks.get(j) else {
        return (None, j);
    };
    let mut last = fold(w, fold_quoted);
    let mut name = last.clone();
    j += 1;
    while let (Some(Token::Period), Some(Token::Word(w))) = (toks.get(j), toks.get(j + 1)) {
        last = fold(w, fold_quoted);
        name.push('.');
        name.push_str(&last);
        j += 2;
    }
    (Some((name, last)), j)
}

/// What a statement names.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Names {
    /// Tables without their schema (`Public.Payment_Tokens` → `payment_tokens`).
    pub tables: Vec<String>,
    /// The same tables as named, folded (`public.payment_tokens`).
    pub qualified_tables: Vec<String>,
    /// Called functions (`pg_sleep`, `dblink_exec`, `count`…): a SELECT can still act.
    pub functions: Vec<String>,
    /// SQL texts passed to functions that run them (`query_to_xml`, `dblink`…).
    pub embedded: Vec<String>,
}

impl Names {
    fn add_table(&mut self, qualified: String, last: String) {
        if !self.qualified_tables.contains(&qualified) {
            self.qualified_tables.push(qualified);
        }
        if !self.tables.contains(&last) {
            self.tables.push(last);
        }
    }

    /// Adds what `other` names (nested SQL judged with its statement).
    pub(crate) fn merge(&mut self, other: Names) {
        for (q, t) in other.qualified_tables.into_iter().zip(other.tables) {
            self.add_table(q, t);
        }
        for f in other.functions {
            if !self.functions.contains(&f) {
                self.functions.push(f);
            }
        }
    }
}

/// The function called by the `(` at `open`, if it is a call: not a table's
/// column list, not syntax (`IN (`, `VALUES (`), not a type (`AS numeric(10,2)`,
/// `::varchar(3)`) and not a CTE's column list (`WITH t(n) AS`).
fn called_function(toks: &[&Token], open: usize, fold_quoted: bool) -> Option<String> {
    let Token::Word(w) = toks.get(open.checked_sub(1)?)? else {
        return None;
    };
    if w.quote_style.is_none() && SYNTAX_BEFORE_PAREN.contains(&w.keyword) {
        return None;
    }
    let before = open.checked_sub(2).and_then(|k| toks.get(k));
    let typed_or_cte = match before {
        Some(Token::DoubleColon) => true,
        Some(Token::Word(b)) => {
            b.quote_style.is_none()
                && matches!(b.keyword, Keyword::AS | Keyword::WITH | Keyword::RECURSIVE)
        }
        _ => false,
    };
    (!typed_or_cte).then(|| fold(w, fold_quoted))
}

/// The text arguments of the call opened at `open`: each argument made only
/// of string literals (joined by `||`, optionally cast with `::type`).
fn text_args(toks: &[&Token], open: usize) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut current, mut literal_only) = (0usize, String::new(), true);
    for k in open..toks.len() {
        let Some(tok) = toks.get(k) else { break };
        let after_cast = k
            .checked_sub(1)
            .and_then(|p| toks.get(p))
            .is_some_and(|p| matches!(p, Token::DoubleColon));
        match tok {
            Token::LParen => {
                depth += 1;
                literal_only &= depth == 1;
            }
            Token::RParen | Token::Comma if depth == 1 => {
                if literal_only && !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                (current, literal_only) = (String::new(), true);
                if matches!(tok, Token::RParen) {
                    break;
                }
            }
            Token::RParen => depth -= 1,
            _ if depth > 1 => {}
            Token::SingleQuotedString(s)
            | Token::EscapedStringLiteral(s)
            | Token::TripleSingleQuotedString(s) => current.push_str(s),
            Token::DollarQuotedString(d) => current.push_str(&d.value),
            Token::StringConcat | Token::DoubleColon => {}
            Token::Word(_) if after_cast => {}
            _ => literal_only = false,
        }
    }
    out
}

/// A table name given as text (`'Public.Payment_Tokens'` as `regclass` reads it).
fn name_in_text(text: &str, fold_quoted: bool) -> Option<(String, String)> {
    let tokens = Tokenizer::new(&GenericDialect, text).tokenize().ok()?;
    let toks: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let (name, next) = read_name(&toks, 0, fold_quoted);
    (next == toks.len()).then_some(name).flatten()
}

/// Tables named after FROM / JOIN / INTO / UPDATE / TABLE / TRUNCATE /
/// USING (and after commas in those lists, and GRANT/REVOKE … ON), read
/// from the lexer's tokens of the canonical statement text, so strings and
/// comments never count. Function arguments such as `EXTRACT(YEAR FROM d)`
/// are skipped. Identifiers followed by `(` that are not tables are functions.
/// `fold_quoted`: the server ignores case in quoted names too (SQLite).
pub(crate) fn names(text: &str, fold_quoted: bool) -> Names {
    let dialect = GenericDialect;
    let Ok(tokens) = Tokenizer::new(&dialect, text).tokenize() else {
        return Names::default();
    };
    let toks: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let list_kw = [
        Keyword::FROM,
        Keyword::USING,
        Keyword::TABLE,
        Keyword::TRUNCATE,
    ];
    let single_kw = [Keyword::JOIN, Keyword::INTO, Keyword::UPDATE];
    let modifiers = [
        Keyword::IF,
        Keyword::NOT,
        Keyword::EXISTS,
        Keyword::ONLY,
        Keyword::LATERAL,
        Keyword::TABLE,
    ];
    let clause_end = [
        Keyword::WHERE,
        Keyword::GROUP,
        Keyword::ORDER,
        Keyword::LIMIT,
        Keyword::HAVING,
        Keyword::WINDOW,
        Keyword::UNION,
        Keyword::EXCEPT,
        Keyword::INTERSECT,
        Keyword::RETURNING,
        Keyword::SET,
        Keyword::VALUES,
        Keyword::SELECT,
    ];
    let grant = matches!(toks.first(), Some(Token::Word(w))
        if w.quote_style.is_none() && matches!(w.keyword, Keyword::GRANT | Keyword::REVOKE));
    let mut names = Names::default();
    let mut seen_fn: HashSet<String> = HashSet::new();
    // Index just after the last table name, so `INSERT INTO t (a)` is no call.
    let mut table_end: Option<usize> = None;
    // One entry per open parenthesis: true when it holds function arguments.
    let mut parens: Vec<bool> = Vec::new();
    // Paren depths at which a comma continues a table list.
    let mut lists: Vec<usize> = Vec::new();
    // Some(true) after a trigger keyword (any word is a name), Some(false)
    // after a list comma (only identifiers are).
    let mut expect: Option<bool> = None;
    let mut table_fn_ok = false;
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        let depth = parens.len();
        match tok {
            Token::LParen => {
                let prev = i.checked_sub(1).and_then(|p| toks.get(p));
                let is_fn = matches!(prev, Some(Token::Word(w)) if w.quote_style.is_some()
                    || matches!(w.keyword, Keyword::NoKeyword | Keyword::EXTRACT | Keyword::SUBSTRING
                        | Keyword::TRIM | Keyword::POSITION | Keyword::OVERLAY));
                parens.push(is_fn);
                expect = None;
                if table_end != Some(i)
                    && let Some(f) = called_function(&toks, i, fold_quoted)
                    && seen_fn.insert(f.clone())
                {
                    names.functions.push(f);
                }
            }
            Token::RParen => {
                parens.pop();
                while lists.last().is_some_and(|d| *d > parens.len()) {
                    lists.pop();
                }
                expect = None;
            }
            Token::Comma if lists.last() == Some(&depth) => {
                expect = Some(false);
                table_fn_ok = true;
            }
            Token::Word(w)
                if w.quote_style.is_none() && parens.last() != Some(&true) && {
                    let trigger = list_kw.contains(&w.keyword) || single_kw.contains(&w.keyword);
                    trigger && !(expect.is_some() && w.keyword == Keyword::TABLE)
                } =>
            {
                if list_kw.contains(&w.keyword) {
                    lists.push(depth);
                }
                expect = Some(true);
                table_fn_ok = matches!(w.keyword, Keyword::FROM | Keyword::JOIN | Keyword::USING);
            }
            Token::Word(w) if grant && w.quote_style.is_none() && w.keyword == Keyword::ON => {
                lists.push(depth);
                expect = Some(false);
                table_fn_ok = false;
            }
            // `… TO bob` / `REVOKE … FROM bob` name roles, not tables.
            Token::Word(w)
                if grant
                    && w.quote_style.is_none()
                    && matches!(w.keyword, Keyword::TO | Keyword::FROM) =>
            {
                lists.clear();
                expect = None;
            }
            Token::Word(w) if w.quote_style.is_none() && clause_end.contains(&w.keyword) => {
                if lists.last() == Some(&depth) {
                    lists.pop();
                }
                expect = None;
            }
            Token::Word(w)
                if expect.is_some()
                    && w.quote_style.is_none()
                    && modifiers.contains(&w.keyword) => {}
            Token::Word(w) if expect.is_some() => {
                let any = expect == Some(true);
                expect = None;
                // A keyword followed by `.` is a schema (`a, public.t`).
                let schema = matches!(toks.get(i + 1), Some(Token::Period));
                if any || schema || w.quote_style.is_some() || w.keyword == Keyword::NoKeyword {
                    let (name, next) = read_name(&toks, i, fold_quoted);
                    if let Some((qualified, last)) = name {
                        let is_fn = table_fn_ok && matches!(toks.get(next), Some(Token::LParen));
                        if !is_fn {
                            table_end = Some(next);
                            names.add_table(qualified, last);
                        }
                        i = next;
                        continue;
                    }
                }
            }
            _ => expect = None,
        }
        i += 1;
    }
    runs_of_text(&toks, fold_quoted, &mut names);
    names
}

/// SQL and table names handed as text to functions that run or read them.
fn runs_of_text(toks: &[&Token], fold_quoted: bool, names: &mut Names) {
    for (i, tok) in toks.iter().enumerate() {
        let (Token::Word(w), Some(Token::LParen)) = (tok, toks.get(i + 1)) else {
            continue;
        };
        let f = fold(w, fold_quoted);
        if QUERY_TEXT_FUNCTIONS.contains(&f.as_str()) {
            names.embedded.extend(text_args(toks, i + 1));
        } else if TABLE_NAME_FUNCTIONS.contains(&f.as_str())
            && let Some(first) = text_args(toks, i + 1).into_iter().next()
            && let Some((qualified, last)) = name_in_text(&first, fold_quoted)
        {
            names.add_table(qualified, last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_from_tokens() {
        let t = |sql: &str| json!(names(sql, false).tables);
        let f = |sql: &str| json!(names(sql, false).functions);
        assert_eq!(
            t(
                "SELECT a FROM s.t1 x JOIN \"T2\" ON x.id = \"T2\".id, t3 AS y WHERE a IN (SELECT b FROM t4)"
            ),
            json!(["t1", "T2", "t3", "t4"])
        );
        assert_eq!(t("SELECT EXTRACT(YEAR FROM d) FROM t"), json!(["t"]));
        assert_eq!(t("SELECT * FROM generate_series(1, 3)"), json!([]));
        assert_eq!(t("DROP TABLE IF EXISTS a, b"), json!(["a", "b"]));
        assert_eq!(t("INSERT INTO t (a) VALUES (1)"), json!(["t"]));
        assert_eq!(
            t("UPDATE ONLY t SET a = 1 FROM u WHERE t.id = u.id"),
            json!(["t", "u"])
        );
        assert_eq!(t("TRUNCATE TABLE a"), json!(["a"]));
        assert_eq!(t("SELECT 'FROM x' FROM y"), json!(["y"]));
        assert_eq!(t("GRANT SELECT ON TABLE a, b TO bob"), json!(["a", "b"]));
        assert_eq!(
            t("GRANT ALL ON ALL TABLES IN SCHEMA public TO bob"),
            json!([])
        );
        assert_eq!(
            f(
                "SELECT dblink_exec('drop table t'), PG_SLEEP(1), count(*) FROM generate_series(1, 2)"
            ),
            json!(["dblink_exec", "pg_sleep", "count", "generate_series"])
        );
        assert_eq!(f("INSERT INTO t (a) VALUES (my_fn('x'))"), json!(["my_fn"]));
    }

    #[test]
    fn names_fold_as_postgres_resolves_them() {
        let n = names(
            r#"SELECT * FROM PAYMENT_TOKENS, Public.Payment_Tokens, "Payment_Tokens", "public"."x""#,
            false,
        );
        assert_eq!(n.tables, ["payment_tokens", "Payment_Tokens", "x"]);
        assert_eq!(
            n.qualified_tables,
            [
                "payment_tokens",
                "public.payment_tokens",
                "Payment_Tokens",
                "public.x"
            ]
        );
        // SQLite ignores case in quoted names too.
        assert_eq!(
            names(r#"SELECT * FROM "Payment_Tokens""#, true).tables,
            ["payment_tokens"]
        );
    }

    #[test]
    fn sql_handed_to_functions_is_seen() {
        let n = names(
            "SELECT query_to_xml('select * from payment_tokens', true, false, ''), \
             dblink_exec('dbname=x', 'DROP TABLE ' || 'users'), \
             table_to_xml('Public.Secrets'::regclass, true, false, '')",
            false,
        );
        assert_eq!(
            n.embedded,
            [
                "select * from payment_tokens",
                "dbname=x",
                "DROP TABLE users"
            ]
        );
        assert_eq!(n.tables, ["secrets"]);
        assert_eq!(n.qualified_tables, ["public.secrets"]);
        // A query built from something other than literals is not guessed at.
        assert!(
            names("SELECT query_to_xml(q, true, false, '') FROM t", false)
                .embedded
                .is_empty()
        );
    }

    #[test]
    fn every_call_is_a_function_but_syntax_and_types_are_not() {
        let f = |sql: &str| names(sql, false).functions;
        assert_eq!(
            f(
                "SELECT COUNT(*), lower(a), CAST(b AS numeric(10,2)), c::varchar(3) FROM t \
               WHERE a IN (1) AND EXISTS (SELECT 1) OR x = ANY (ARRAY[1])"
            ),
            ["count", "lower", "cast"]
        );
        assert_eq!(
            f("WITH t(n) AS (SELECT 1) SELECT n FROM t"),
            Vec::<String>::new()
        );
        assert_eq!(
            f("SELECT lo_unlink(1), pg_catalog.set_config('a', 'b', false), nextval('s')"),
            ["lo_unlink", "set_config", "nextval"]
        );
        assert_eq!(f("INSERT INTO t (a) VALUES (1)"), Vec::<String>::new());
    }
}
