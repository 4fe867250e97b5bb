//! Reading the original SudoMode's Python-spelled conditions as CEL (SPEC §5.1): outside
//! string literals, `and`, `or`, `not`, `not in`, `True`, `False`, `None` become `&&`,
//! `||`, `!`, `!(… in …)`, `true`, `false`, `null`, keeping Python's precedence.
//!
//! Python's `not` binds looser than comparisons (`not a == b` is `not (a == b)`) while
//! CEL's `!` binds tightest, so a `not` takes everything up to the next `and`/`or` (or
//! the end of its bracket) as its operand and is written `!(…)`.

use crate::cel_text::{Kind, Token, tokenize};

/// A condition written with Python spellings, read as CEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonSpelling {
    /// The Python words met, in first-use order (`and`, `not`, `None`…).
    pub words: Vec<&'static str>,
    /// The same condition in CEL.
    pub cel: String,
}

const WORDS: &[&str] = &["and", "or", "not", "True", "False", "None"];

/// Reads `src` as CEL when it uses a Python spelling; `None` when it uses none (the
/// text is then left exactly as written).
pub(crate) fn from_python(src: &str) -> Option<PythonSpelling> {
    let toks = tokenize(src);
    if !(0..toks.len()).any(|i| python_word(&toks, i).is_some()) {
        return None;
    }
    let mut r = Reader {
        toks: &toks,
        i: 0,
        words: Vec::new(),
    };
    let mut cel = String::new();
    while r.i < toks.len() {
        let before = r.i;
        cel.push_str(&r.expr());
        if r.i == before {
            // A stray closing bracket or separator: keep it for CEL to report.
            cel.push_str(&r.raw());
        }
    }
    Some(PythonSpelling {
        words: r.words,
        cel: cel.trim().to_string(),
    })
}

/// The Python word at `i`, unless it is a field name (`args.not`).
fn python_word(toks: &[Token<'_>], i: usize) -> Option<&'static str> {
    let t = toks.get(i)?;
    if t.kind != Kind::Ident || (i > 0 && toks[i - 1].is(".")) {
        return None;
    }
    WORDS.iter().copied().find(|w| *w == t.text)
}

/// Binary operators inside one comparison; their presence makes a `not` operand need
/// parentheses.
const BINARY: &[&str] = &[
    "+", "-", "*", "/", "%", "<", ">", "<=", ">=", "==", "!=", "?",
];

struct Reader<'t, 'a> {
    toks: &'t [Token<'a>],
    i: usize,
    words: Vec<&'static str>,
}

impl<'a> Reader<'_, 'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.toks.get(self.i).copied()
    }

    fn word(&self) -> Option<&'static str> {
        python_word(self.toks, self.i)
    }

    fn note(&mut self, w: &'static str) {
        if !self.words.contains(&w) {
            self.words.push(w);
        }
    }

    /// The current token as written; advances.
    fn raw(&mut self) -> String {
        let t = self.toks[self.i];
        self.i += 1;
        format!("{}{}", t.space, t.text)
    }

    /// `or`-chains joined by CEL's `?` / `:`.
    fn expr(&mut self) -> String {
        let mut out = self.or_chain();
        while self.peek().is_some_and(|t| t.is("?") || t.is(":")) {
            out.push_str(&self.raw());
            out.push_str(&self.or_chain());
        }
        out
    }

    fn or_chain(&mut self) -> String {
        self.chain("or", "||", Self::and_chain)
    }

    fn and_chain(&mut self) -> String {
        self.chain("and", "&&", Self::not_term)
    }

    /// `next (word|op next)*`, the Python `word` written as CEL's `op`.
    fn chain(&mut self, word: &'static str, op: &str, next: fn(&mut Self) -> String) -> String {
        let mut out = next(self);
        loop {
            if self.word() == Some(word) {
                self.note(word);
                out.push_str(&format!("{}{op}", self.toks[self.i].space));
                self.i += 1;
            } else if self.peek().is_some_and(|t| t.is(op)) {
                out.push_str(&self.raw());
            } else {
                return out;
            }
            out.push_str(&next(self));
        }
    }

    /// `not not … comparison`, counted rather than recursed.
    fn not_term(&mut self) -> String {
        let space = self.peek().map_or("", |t| t.space).to_string();
        let mut nots = 0;
        while self.word() == Some("not") {
            self.note("not");
            nots += 1;
            self.i += 1;
        }
        let (inner, simple) = self.comparison();
        if nots == 0 {
            return inner;
        }
        let mut body = inner.trim_start().to_string();
        if !simple {
            body = format!("({body})");
        }
        format!("{space}{}{body}", "!".repeat(nots))
    }

    /// Tokens up to the next `and`/`or`/`&&`/`||`, separator or closing bracket, with
    /// brackets read recursively. `simple` when no binary operator joins its parts.
    fn comparison(&mut self) -> (String, bool) {
        let mut out = String::new();
        let mut simple = true;
        let mut negate = false;
        while let Some(t) = self.peek() {
            if matches!(self.word(), Some("and" | "or"))
                || [",", ":", "?", "&&", "||", ")", "]", "}"]
                    .iter()
                    .any(|p| t.is(p))
            {
                break;
            }
            if t.is("(") || t.is("[") || t.is("{") {
                out.push_str(&self.group());
                continue;
            }
            match self.word() {
                Some("not") if self.toks.get(self.i + 1).is_some_and(|n| n.is_word("in")) => {
                    // `x not in y` is `!(x in y)`.
                    self.note("not");
                    negate = true;
                    simple = false;
                    self.i += 1;
                }
                Some("not") => {
                    // Not Python either (`a == not b`); read it as `!` and let CEL judge.
                    out.push_str(&self.not_term());
                    simple = false;
                }
                Some(w @ ("True" | "False" | "None")) => {
                    self.note(w);
                    let lit = match w {
                        "True" => "true",
                        "False" => "false",
                        _ => "null",
                    };
                    out.push_str(&format!("{}{lit}", t.space));
                    self.i += 1;
                }
                _ => {
                    if BINARY.iter().any(|p| t.is(p)) || t.is_word("in") {
                        simple = false;
                    }
                    out.push_str(&self.raw());
                }
            }
        }
        if negate {
            let space_len = out.len() - out.trim_start().len();
            out = format!("{}!({})", &out[..space_len], out.trim_start());
        }
        (out, simple)
    }

    /// A bracketed group: its items are full expressions.
    fn group(&mut self) -> String {
        let open = self.toks[self.i];
        let close = match open.text {
            "(" => ")",
            "[" => "]",
            _ => "}",
        };
        let mut out = self.raw();
        while let Some(t) = self.peek() {
            if t.is(close) {
                out.push_str(&self.raw());
                break;
            }
            if t.is(")") || t.is("]") || t.is("}") {
                // Mismatched: leave it to the enclosing reader (and CEL's error).
                break;
            }
            if t.is(",") || t.is(":") {
                out.push_str(&self.raw());
                continue;
            }
            let before = self.i;
            out.push_str(&self.expr());
            if self.i == before {
                out.push_str(&self.raw());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cel(src: &str) -> String {
        from_python(src).map_or_else(|| format!("<unchanged> {src}"), |p| p.cel)
    }

    #[test]
    fn words_outside_strings_only() {
        assert_eq!(
            cel("args.amount > 20 and args.amount <= 100"),
            "args.amount > 20 && args.amount <= 100"
        );
        assert_eq!(
            cel("args.text == 'salt and pepper' and not args.urgent"),
            "args.text == 'salt and pepper' && !args.urgent"
        );
        assert_eq!(cel("args.a or args.b"), "args.a || args.b");
        assert_eq!(cel("args.refund == True"), "args.refund == true");
        assert_eq!(
            cel("args.x != None and args.y == False"),
            "args.x != null && args.y == false"
        );
        // Nothing Python: left exactly as written.
        assert!(from_python("args.note == 'this and that' && args.not == 1").is_none());
        assert!(from_python(r#"args.s == "or \"not\" and""#).is_none());
        assert!(from_python(r#"args.s == r'\' && args.t == '''a ' and'''"#).is_none());
        assert!(from_python("args.android || args.notify || args.order").is_none());
        assert!(from_python("args.True == 1 || args.None").is_none());
    }

    #[test]
    fn not_binds_as_in_python() {
        // not a == b  →  not (a == b)
        assert_eq!(cel("not args.a == 1"), "!(args.a == 1)");
        assert_eq!(
            cel("not args.qty > 10 or args.vip == True"),
            "!(args.qty > 10) || args.vip == true"
        );
        // not binds tighter than and/or.
        assert_eq!(
            cel("not args.a and args.b or not args.c"),
            "!args.a && args.b || !args.c"
        );
        assert_eq!(cel("not not has(args.a)"), "!!has(args.a)");
        assert_eq!(cel("not (args.a or args.b)"), "!(args.a || args.b)");
        assert_eq!(
            cel("not args.a + 1 > 2 and True"),
            "!(args.a + 1 > 2) && true"
        );
        assert_eq!(cel("not args.a in ['x']"), "!(args.a in ['x'])");
    }

    #[test]
    fn not_in_and_nesting() {
        assert_eq!(
            cel("args.c not in ['usd', 'eur'] and args.a > 1"),
            "!(args.c in ['usd', 'eur']) && args.a > 1"
        );
        assert_eq!(
            cel("args.tags.exists(t, t == 'x' or not t.startsWith('y'))"),
            "args.tags.exists(t, t == 'x' || !t.startsWith('y'))"
        );
        assert_eq!(
            cel("{'k': not args.a}['k'] and (args.b or args.c)"),
            "{'k': !args.a}['k'] && (args.b || args.c)"
        );
        assert_eq!(
            cel("args.a ? not args.b : args.c"),
            "args.a ? !args.b : args.c"
        );
        assert_eq!(cel("(args.a)and(args.b)"), "(args.a)&&(args.b)");
        // Mixed spellings keep CEL's own operators.
        assert_eq!(
            cel("args.a && args.b or !args.c"),
            "args.a && args.b || !args.c"
        );
    }

    #[test]
    fn words_are_listed_once_in_order() {
        let p = from_python("args.a == None or not args.b or not args.c").unwrap();
        assert_eq!(p.words, ["None", "or", "not"]);
    }

    #[test]
    fn broken_input_never_panics_or_loops() {
        for src in [
            "not",
            "and",
            "(not",
            "args.a and )",
            "] or [",
            "not in",
            "a not",
            "((((not a",
            "'unterminated and",
            "a ? : or",
            "{not: and}",
        ] {
            let _ = from_python(src);
        }
    }
}
