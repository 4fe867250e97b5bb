//! The tokens of condition text as CEL's lexer sees them (strings with their prefixes,
//! quotes and escapes, identifiers, numbers, operators), so the Python reading and the
//! size bounds never look inside a string literal.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ident,
    /// A string or bytes literal, prefix and quotes included.
    Str,
    Number,
    /// An operator or bracket (`&&`, `==`, `(`, `.`, …).
    Punct,
    /// Anything CEL does not know; the CEL parser reports it.
    Other,
}

/// One token and the whitespace before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: Kind,
    pub(crate) text: &'a str,
    pub(crate) space: &'a str,
}

impl Token<'_> {
    pub(crate) fn is(&self, punct: &str) -> bool {
        self.kind == Kind::Punct && self.text == punct
    }

    pub(crate) fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Ident && self.text == word
    }
}

const TWO_CHAR: &[&str] = &["&&", "||", "==", "!=", "<=", ">="];
const ONE_CHAR: &str = "+-*/%<>!?:.,()[]{}=";

/// Splits `src` into tokens. Never fails: an unterminated string runs to the end.
pub(crate) fn tokenize(src: &str) -> Vec<Token<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ws = i;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        let kind = if let Some(end) = string_end(b, i) {
            i = end;
            Kind::Str
        } else if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            i = ident_end(b, i);
            Kind::Ident
        } else if b[i].is_ascii_digit()
            || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i = number_end(b, i);
            Kind::Number
        } else if TWO_CHAR.iter().any(|op| b[i..].starts_with(op.as_bytes())) {
            i += 2;
            Kind::Punct
        } else if ONE_CHAR.as_bytes().contains(&b[i]) {
            i += 1;
            Kind::Punct
        } else {
            i += src[i..].chars().next().map_or(1, char::len_utf8);
            Kind::Other
        };
        out.push(Token {
            kind,
            text: &src[start..i],
            space: &src[ws..start],
        });
    }
    out
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

fn number_end(b: &[u8], mut i: usize) -> usize {
    if b[i..].starts_with(b"0x") || b[i..].starts_with(b"0X") {
        i += 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
    } else {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            let mut j = i + 1;
            if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                j += 1;
            }
            if j < b.len() && b[j].is_ascii_digit() {
                i = j;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
    }
    if i < b.len() && (b[i] == b'u' || b[i] == b'U') {
        i += 1;
    }
    i
}

/// The end of a string literal starting at `i` (with an optional `r`/`b` prefix, any
/// case, in either order), or `None` when no string starts there.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut q = i;
    let mut raw = false;
    while q < b.len() && q - i < 2 && matches!(b[q], b'r' | b'R' | b'b' | b'B') {
        raw |= matches!(b[q], b'r' | b'R');
        q += 1;
    }
    let quote = *b.get(q).filter(|c| **c == b'"' || **c == b'\'')?;
    // `rb"…"` but not `rr"…"` or `bb"…"`; `r` alone is an identifier unless a quote follows.
    if q - i == 2 && b[i].eq_ignore_ascii_case(&b[i + 1]) {
        return None;
    }
    let triple = b[q..].starts_with(&[quote, quote, quote]);
    let mut j = q + if triple { 3 } else { 1 };
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && !raw {
            j += 2;
            continue;
        }
        if triple {
            if b[j..].starts_with(&[quote, quote, quote]) {
                return Some(j + 3);
            }
        } else if c == quote {
            return Some(j + 1);
        } else if c == b'\n' || c == b'\r' {
            // CEL ends a one-line string here (an error it reports itself).
            return Some(j);
        }
        j += 1;
    }
    Some(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, &str)> {
        tokenize(src).iter().map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn strings_in_every_spelling() {
        for (src, lit) in [
            (r#"x == "a and b""#, r#""a and b""#),
            (r#"x == 'a or b'"#, r#"'a or b'"#),
            (r#"x == "say \"not\" now""#, r#""say \"not\" now""#),
            (r#"x == 'it\'s not'"#, r#"'it\'s not'"#),
            (r#"x == """a "and" b""""#, r#""""a "and" b""""#),
            (r#"x == '''not ' this'''"#, r#"'''not ' this'''"#),
            (r#"x == r"C:\" "#, r#"r"C:\""#),
            (r#"x == R'and\'"#, r#"R'and\'"#),
            (r#"x == b"or""#, r#"b"or""#),
            (r#"x == rb'not'"#, r#"rb'not'"#),
            (r#"x == Br"and""#, r#"Br"and""#),
        ] {
            let toks = kinds(src);
            assert_eq!(toks[2], (Kind::Str, lit), "{src}: {toks:?}");
            assert_eq!(toks.len(), 3, "{src}: {toks:?}");
        }
        // Unterminated: to the end.
        assert_eq!(kinds("x == 'and")[2], (Kind::Str, "'and"));
        // `r` and `b` alone are identifiers.
        assert_eq!(kinds("r + b")[0], (Kind::Ident, "r"));
        assert_eq!(kinds("rr'x'")[0], (Kind::Ident, "rr"));
    }

    #[test]
    fn operators_numbers_and_spacing() {
        let t = tokenize("args.a>=1.5e3&&!(b||c) in [0x1F, 2u]");
        let texts: Vec<&str> = t.iter().map(|t| t.text).collect();
        assert_eq!(
            texts,
            [
                "args", ".", "a", ">=", "1.5e3", "&&", "!", "(", "b", "||", "c", ")", "in", "[",
                "0x1F", ",", "2u", "]"
            ]
        );
        let t = tokenize("a  and\tb");
        assert_eq!((t[1].space, t[1].text, t[2].space), ("  ", "and", "\t"));
        assert_eq!(kinds("a # b")[1], (Kind::Other, "#"));
        assert_eq!(kinds("é")[0], (Kind::Other, "é"));
    }
}
