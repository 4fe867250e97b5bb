//! Agent-supplied text in text logs (SPEC §11): control characters, bidi
//! controls and zero-width characters are escaped, so a newline or a
//! terminal escape in a resource name cannot forge a log line or repaint the
//! operator's terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must not reach a log line as itself.
fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || sudomode_notify::slack::text::is_invisible_control(c)
}

/// `s` with `\n`, `\r`, `\t`, `\\` and every other control, bidi or
/// zero-width character written as an escape (`\u{1b}`); borrowed when
/// nothing needs escaping (the usual case).
pub fn escape_log(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_a_line() {
        assert!(matches!(escape_log("stripe.charges"), Cow::Borrowed(_)));
        assert_eq!(
            escape_log("a\nb\r\tc\\n\u{1b}[2K\u{202E}"),
            "a\\nb\\r\\tc\\\\n\\u{1b}[2K\\u{202e}"
        );
    }
}
