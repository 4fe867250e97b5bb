//! Table and function names in one SQL statement, read from the lexer's
//! tokens so that strings, comments and quoted identifiers are handled like
//! the server does.

use std::collections::HashSet;

use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// `a`, `s.a`, `"S"."a"` starting at `j`; the name and the index after it.
fn read_name(toks: &[&Token], mut j: usize) -> (Option<String>, usize) {
    let Some(Token::Word(w)) = toks.get(j) else {
        return (None, j);
    };
    let mut name = w.value.clone();
    j += 1;
    while let (Some(Token::Period), Some(Token::Word(w))) = (toks.get(j), toks.get(j + 1)) {
        name.push('.');
        name.push_str(&w.value);
        j += 2;
    }
    (Some(name), j)
}

/// What a statement names.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Names {
    pub tables: Vec<String>,
    /// Called functions (`pg_sleep`, `dblink_exec`…): a SELECT can still act.
    pub functions: Vec<String>,
}

/// Tables named after FROM / JOIN / INTO / UPDATE / TABLE / TRUNCATE /
/// USING (and after commas in those lists, and GRANT/REVOKE … ON), read
/// from the lexer's tokens of the canonical statement text, so strings and
/// comments never count. Function arguments such as `EXTRACT(YEAR FROM d)`
/// are skipped. Identifiers followed by `(` that are not tables are functions.
pub(crate) fn names(text: &str) -> Names {
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
    let mut out: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut functions: Vec<String> = Vec::new();
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
                if let Some(Token::Word(w)) = prev
                    && (w.quote_style.is_some() || w.keyword == Keyword::NoKeyword)
                    && table_end != Some(i)
                {
                    let f = if w.quote_style.is_some() {
                        w.value.clone()
                    } else {
                        w.value.to_ascii_lowercase()
                    };
                    if seen_fn.insert(f.clone()) {
                        functions.push(f);
                    }
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
                if any || w.quote_style.is_some() || w.keyword == Keyword::NoKeyword {
                    let (name, next) = read_name(&toks, i);
                    if let Some(name) = name {
                        let is_fn = table_fn_ok && matches!(toks.get(next), Some(Token::LParen));
                        if !is_fn {
                            table_end = Some(next);
                            if seen.insert(name.clone()) {
                                out.push(name);
                            }
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
    Names {
        tables: out,
        functions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_from_tokens() {
        let t = |sql: &str| json!(names(sql).tables);
        let f = |sql: &str| json!(names(sql).functions);
        assert_eq!(
            t(
                "SELECT a FROM s.t1 x JOIN \"T2\" ON x.id = \"T2\".id, t3 AS y WHERE a IN (SELECT b FROM t4)"
            ),
            json!(["s.t1", "T2", "t3", "t4"])
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
            json!(["dblink_exec", "pg_sleep", "generate_series"])
        );
        assert_eq!(f("INSERT INTO t (a) VALUES (my_fn('x'))"), json!(["my_fn"]));
    }
}
