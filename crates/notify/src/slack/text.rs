//! Agent-controlled text made safe for Slack mrkdwn (SPEC §10): nothing an
//! agent sends can format, link, mention, or draw a line of its own.
//!
//! - Control characters become visible escapes (`\n`, `\t`, `[U+0007]`), so
//!   no value breaks a line; bidi controls and zero-width characters become
//!   visible markers (`[U+202E]`), so no value reorders or hides text.
//! - `&`, `<`, `>` become entities: no link, mention or `<!channel>`, and no
//!   `>` quote.
//! - Inside code spans `*`, `_`, `~` are inert and backticks are replaced by
//!   `ˋ` so the span cannot be closed early; in plain text `*`, `_`, `~`
//!   are replaced by full-width lookalikes.
//! - Long values are cut and say how long they were.

/// Mention keywords neutralised when they follow `@`.
const MENTIONS: [&str; 3] = ["channel", "here", "everyone"];
/// Zero-width space inserted after `@` in `@channel`-style text.
const ZWSP: char = '\u{200B}';

/// Characters that reorder or hide text: bidi embeddings, overrides and
/// isolates, marks, zero-width characters, joiners and the BOM.
pub fn is_invisible_control(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{206A}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// `s` with control, bidi and zero-width characters made visible.
/// `keep_newlines` keeps `\n` (code blocks, where a line stays in the block).
pub fn visible(s: &str, keep_newlines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible_control(c) => {
                out.push_str(&format!("[U+{:04X}]", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Escape text for Slack mrkdwn: `&`, `<`, `>` become entities (so no link,
/// mention or `<!channel>` can be injected) and `@channel` / `@here` /
/// `@everyone` get a zero-width space after the `@`.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, c) in s.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                let rest = &s[i + 1..];
                if MENTIONS.iter().any(|m| {
                    rest.get(..m.len())
                        .is_some_and(|head| head.eq_ignore_ascii_case(m))
                }) {
                    out.push(ZWSP);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// At most `max` characters; a cut value ends with `… (N chars)`.
pub fn truncate(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}… ({total} chars)")
}

/// Plain mrkdwn text: visible, cut, escaped, formatting characters inert.
pub fn text(s: &str, max: usize) -> String {
    let t = visible(&truncate(s, max), false)
        .replace('*', "\u{FF0A}")
        .replace('_', "\u{FF3F}")
        .replace('~', "\u{FF5E}")
        .replace('`', "\u{02CB}");
    escape_mrkdwn(&t)
}

/// Inline code span, same rules; `_(empty)_` for an empty value.
pub fn code(s: &str, max: usize) -> String {
    let t = visible(&truncate(s, max), false).replace('`', "\u{02CB}");
    if t.is_empty() {
        return "_(empty)_".to_string();
    }
    format!("`{}`", escape_mrkdwn(&t))
}

/// Code block: newlines kept (they stay inside the block), the rest as
/// [`code`].
pub fn code_block(s: &str, max: usize) -> String {
    let t = visible(&truncate(s, max), true).replace('`', "\u{02CB}");
    format!("```{}```", escape_mrkdwn(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_rules() {
        assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
        assert_eq!(
            escape_mrkdwn("@Channel @here @everyone"),
            "@\u{200B}Channel @\u{200B}here @\u{200B}everyone"
        );
        assert_eq!(escape_mrkdwn("bob@example.com"), "bob@example.com");
        assert_eq!(escape_mrkdwn("&amp;"), "&amp;amp;");
    }

    #[test]
    fn no_value_draws_a_line_or_formats() {
        let forged = "x\n• *destination:* acct_1\r\n> _quote_ ~s~ `c`";
        let c = code(forged, 200);
        assert!(!c.contains('\n') && !c.contains('\r'), "{c}");
        assert_eq!(c.matches('`').count(), 2, "{c}");
        assert!(c.contains("\\n• *destination:*"), "{c}");
        assert!(c.contains("&gt; _quote_"), "{c}");
        let t = text(forged, 200);
        assert!(!t.contains(['\n', '*', '_', '~', '`']), "{t}");
    }

    #[test]
    fn bidi_and_zero_width_are_shown() {
        let account = "acct_\u{202E}1234\u{202C}\u{200B}";
        assert_eq!(visible(account, false), "acct_[U+202E]1234[U+202C][U+200B]");
        assert_eq!(visible("a\u{7}b\u{FEFF}", false), "a[U+0007]b[U+FEFF]");
        assert_eq!(visible("a\nb", true), "a\nb");
    }

    #[test]
    fn cut_values_say_their_length() {
        assert_eq!(truncate("héllo", 3), "hél… (5 chars)");
        assert_eq!(truncate("héllo", 5), "héllo");
    }
}
