//! The one glob engine: `*` / `?` globs, compiled once, matched without
//! allocating — policy rule matchers, custom intents' hosts, credentials'
//! hosts and tunnel hosts.
//!
//! `*` matches any run of characters, dots included (`stripe.*` matches
//! `stripe.customers.sources`); `?` matches exactly one character. There is no
//! escaping and no character class: `[` and `]` are literal. Matching is
//! case-sensitive unless the glob was compiled case-insensitive (methods and
//! hosts).

use std::fmt;

/// One compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    kind: Kind,
    case_insensitive: bool,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    /// `*`: everything.
    Any,
    /// No wildcard at all.
    Literal(String),
    /// `abc*` (no other wildcard).
    Prefix(String),
    /// `*abc` (no other wildcard).
    Suffix(String),
    /// Anything else, matched by a backtracking scan over `chars`.
    General(Vec<char>),
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a glob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty glob")]
    Empty,
    #[error("glob {0:?} contains a control character")]
    Control(String),
}

impl Glob {
    /// Compiles `pattern`. With `case_insensitive`, both the pattern and the
    /// subject are compared in ASCII lower case.
    pub fn new(pattern: &str, case_insensitive: bool) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.chars().any(char::is_control) {
            return Err(GlobError::Control(pattern.to_string()));
        }
        let norm = if case_insensitive {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_string()
        };
        let stars = norm.matches('*').count();
        let has_q = norm.contains('?');
        let kind = if norm.chars().all(|c| c == '*') {
            Kind::Any
        } else if stars == 0 && !has_q {
            Kind::Literal(norm)
        } else if stars == 1 && !has_q && norm.ends_with('*') {
            Kind::Prefix(norm[..norm.len() - 1].to_string())
        } else if stars == 1 && !has_q && norm.starts_with('*') {
            Kind::Suffix(norm[1..].to_string())
        } else {
            Kind::General(norm.chars().collect())
        };
        Ok(Glob {
            source: pattern.to_string(),
            kind,
            case_insensitive,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal this glob matches when it has no wildcard.
    pub fn literal(&self) -> Option<&str> {
        match &self.kind {
            Kind::Literal(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_any(&self) -> bool {
        matches!(self.kind, Kind::Any)
    }

    /// The characters before the first wildcard (all of a literal).
    pub fn fixed_prefix(&self) -> &str {
        let end = self.source.find(['*', '?']).unwrap_or(self.source.len());
        &self.source[..end]
    }

    /// The characters after the last wildcard (all of a literal), as written.
    fn fixed_suffix(&self) -> &str {
        let start = self.source.rfind(['*', '?']).map_or(0, |i| i + 1);
        &self.source[start..]
    }

    /// Whether every subject `other` matches, this glob matches too. A sufficient
    /// check: `false` when it cannot tell (two general patterns that differ).
    pub fn covers(&self, other: &Glob) -> bool {
        if self.is_any() {
            return true;
        }
        if other.is_any() || (other.case_insensitive && !self.case_insensitive) {
            return false;
        }
        let fold = |s: &str| {
            if self.case_insensitive {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        match &self.kind {
            Kind::Any => true,
            _ if self.source == other.source => true,
            _ if other.literal().is_some() => self.is_match(&other.source),
            Kind::Prefix(p) => fold(other.fixed_prefix()).starts_with(p.as_str()),
            Kind::Suffix(sfx) => fold(other.fixed_suffix()).ends_with(sfx.as_str()),
            Kind::Literal(_) | Kind::General(_) => false,
        }
    }

    pub fn is_match(&self, subject: &str) -> bool {
        let ci = self.case_insensitive;
        match &self.kind {
            Kind::Any => true,
            Kind::Literal(s) => {
                if ci {
                    s.eq_ignore_ascii_case(subject)
                } else {
                    s == subject
                }
            }
            Kind::Prefix(p) => {
                subject.len() >= p.len()
                    && subject.is_char_boundary(p.len())
                    && eq_maybe_ci(&subject[..p.len()], p, ci)
            }
            Kind::Suffix(p) => {
                subject.len() >= p.len()
                    && subject.is_char_boundary(subject.len() - p.len())
                    && eq_maybe_ci(&subject[subject.len() - p.len()..], p, ci)
            }
            Kind::General(pat) => general_match(pat, subject, ci),
        }
    }
}

fn eq_maybe_ci(a: &str, b: &str, ci: bool) -> bool {
    if ci {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Classic iterative wildcard match with single-star backtracking: O(n·m)
/// worst case, no allocation (walks the subject by char boundaries).
fn general_match(pat: &[char], subject: &str, ci: bool) -> bool {
    let next_char = |i: usize| subject[i..].chars().next();
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<usize> = None;
    let mut mark = 0usize;
    let eq = |a: char, b: char| {
        if ci {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    while let Some(c) = next_char(i) {
        if p < pat.len() && (pat[p] == '?' || (pat[p] != '*' && eq(pat[p], c))) {
            p += 1;
            i += c.len_utf8();
        } else if p < pat.len() && pat[p] == '*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += next_char(mark).map_or(1, char::len_utf8);
            i = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == '*' {
        p += 1;
    }
    p == pat.len()
}

/// A non-empty list of globs; matches when any matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobList(pub Vec<Glob>);

impl GlobList {
    pub fn any() -> GlobList {
        GlobList(vec![Glob {
            source: "*".into(),
            kind: Kind::Any,
            case_insensitive: false,
        }])
    }

    pub fn is_match(&self, subject: &str) -> bool {
        self.0.iter().any(|g| g.is_match(subject))
    }

    pub fn is_any(&self) -> bool {
        self.0.iter().any(Glob::is_any)
    }

    /// The literals, if every glob is a literal (for indexing).
    pub fn literals(&self) -> Option<Vec<&str>> {
        self.0.iter().map(Glob::literal).collect()
    }

    /// Whether every subject `other` matches, this list matches too (each of
    /// `other`'s globs is covered by one of these).
    pub fn covers(&self, other: &GlobList) -> bool {
        other.0.iter().all(|o| self.0.iter().any(|s| s.covers(o)))
    }

    /// The first glob that a subject fails against, for explanations.
    pub fn describe(&self) -> String {
        if self.0.len() == 1 {
            self.0[0].source.clone()
        } else {
            let v: Vec<&str> = self.0.iter().map(|g| g.as_str()).collect();
            format!("[{}]", v.join(", "))
        }
    }

    pub fn patterns(&self) -> Vec<String> {
        self.0.iter().map(|g| g.source.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    /// Host globs as credentials use them: anchored at both ends, so
    /// `*.amazonaws.com` never matches `amazonaws.com.evil.com`.
    #[test]
    fn host_globs() {
        let m = |p: &str, h: &str| Glob::new(p, true).unwrap().is_match(h);
        assert!(m("*.amazonaws.com", "dynamodb.us-east-1.amazonaws.com"));
        assert!(m("*.amazonaws.com", "s3.amazonaws.com"));
        assert!(!m("*.amazonaws.com", "amazonaws.com"));
        assert!(!m("*.amazonaws.com", "amazonaws.com.evil.com"));
        assert!(!m("*.amazonaws.com", "evilamazonaws.com"));
        assert!(!m("*.amazonaws.com", "s3.amazonaws.com.evil.com"));
        assert!(m("api.stripe.com", "api.stripe.com"));
        assert!(m("API.Stripe.com", "api.stripe.com"));
        assert!(!m("api.stripe.com", "api.stripe.com.evil.com"));
        assert!(!m("api.stripe.com", "xapi.stripe.com"));
        assert!(m("api?.example.com", "api1.example.com"));
        assert!(!m("api?.example.com", "api.example.com"));
        assert!(!m("api?.example.com", "api12.example.com"));
        assert!(m("*", "anything.example"));
        assert!(m("s3.*.amazonaws.com", "s3.eu-west-1.amazonaws.com"));
        assert!(m("**.a.com", "x.a.com"));
        assert!(m("*a*a*a*", "aaa"));
        assert!(!m("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(Glob::new("", true).is_err());
    }

    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p, false).unwrap().is_match(s)
    }

    #[test]
    fn star_matches_dots() {
        assert!(m("stripe.*", "stripe.customers.sources"));
        assert!(m("stripe.*", "stripe.charges"));
        assert!(!m("stripe.*", "stripe"));
        assert!(!m("stripe.*", "aws.s3"));
        assert!(m("*", ""));
        assert!(m("*", "anything.at.all"));
    }

    #[test]
    fn literal_prefix_suffix_general() {
        assert!(m("aws.s3", "aws.s3"));
        assert!(!m("aws.s3", "aws.s31"));
        assert!(m("Get*", "GetObject"));
        assert!(!m("Get*", "getObject"));
        assert!(m("*Policy", "PutBucketPolicy"));
        assert!(m("Put*Policy", "PutBucketPolicy"));
        assert!(m("Put*Policy", "PutPolicy"));
        assert!(!m("Put*Policy", "PutBucketPolicyStatus"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*.*.*", "a.b.c"));
        assert!(!m("*.*.*", "a.b"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abcbc"));
        assert!(!m("a*b*c", "abcb"));
        assert!(m("?*", "x"));
        assert!(!m("?*", ""));
        assert!(m("é*", "été"));
        assert!(m("*é", "été"));
    }

    #[test]
    fn case_insensitive() {
        let g = Glob::new("API.Stripe.com", true).unwrap();
        assert!(g.is_match("api.stripe.com"));
        let g = Glob::new("*.AMAZONAWS.com", true).unwrap();
        assert!(g.is_match("s3.amazonaws.com"));
        let g = Glob::new("post", true).unwrap();
        assert!(g.is_match("POST"));
        let g = Glob::new("p?st", true).unwrap();
        assert!(g.is_match("POST"));
        let g = Glob::new("Post", false).unwrap();
        assert!(!g.is_match("POST"));
    }

    #[test]
    fn bad_globs() {
        assert_eq!(Glob::new("", false), Err(GlobError::Empty));
        assert!(Glob::new("a\nb", false).is_err());
    }

    #[test]
    fn coverage() {
        let g = |p: &str| Glob::new(p, false).unwrap();
        let ci = |p: &str| Glob::new(p, true).unwrap();
        assert!(g("*").covers(&g("stripe.*")));
        assert!(g("stripe.*").covers(&g("stripe.charges")));
        assert!(g("stripe.*").covers(&g("stripe.charges.*")));
        assert!(!g("stripe.*").covers(&g("stripe*")));
        assert!(!g("stripe.charges").covers(&g("stripe.*")));
        assert!(g("*Policy").covers(&g("Put*Policy")));
        assert!(!g("*Policy").covers(&g("Put*")));
        assert!(g("a*b").covers(&g("a*b")));
        assert!(!g("a*b").covers(&g("a*c*b")));
        assert!(ci("/admin/*").covers(&g("/ADMIN/x")));
        assert!(ci("/admin/*").covers(&g("/Admin/*")));
        assert!(!g("/admin/*").covers(&ci("/admin/x")));
        assert!(!g("x").covers(&GlobList::any().0[0]));
        let l = GlobList(vec![g("a*"), g("b")]);
        assert!(l.covers(&GlobList(vec![g("ab"), g("b")])));
        assert!(!l.covers(&GlobList(vec![g("ab"), g("c")])));
    }

    #[test]
    fn lists() {
        let l = GlobList(vec![
            Glob::new("a", false).unwrap(),
            Glob::new("b*", false).unwrap(),
        ]);
        assert!(l.is_match("a") && l.is_match("bc") && !l.is_match("c"));
        assert_eq!(l.literals(), None);
        assert_eq!(l.describe(), "[a, b*]");
        assert!(GlobList::any().is_any());
    }
}
