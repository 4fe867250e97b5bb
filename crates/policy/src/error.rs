//! Load and validation errors: each names `file:line:col`, the rule and the problem.

use std::fmt;

/// One problem found while loading a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyError {
    /// The file as given (or the source name for in-memory policies).
    pub file: String,
    /// 1-based; 0 when unknown (e.g. the file could not be read).
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// What is wrong, naming the rule when there is one.
    pub message: String,
}

impl PolicyError {
    /// `file:line:col: {tag}message`, or `file: {tag}message` without a line.
    fn write_tagged(&self, f: &mut fmt::Formatter<'_>, tag: &str) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {tag}{}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {tag}{}",
                self.file,
                self.line,
                self.column.max(1),
                self.message
            )
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_tagged(f, "")
    }
}

/// A problem that does not stop a policy from loading (a Python spelling read as
/// CEL, a rule that can never match, a name no mapping produces). `Display` prints
/// `file:line:col: warning: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct PolicyWarning(pub PolicyError);

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_tagged(f, "warning: ")
    }
}

/// Every problem found in a load (never empty). `Display` prints one
/// `file:line:col: message` per line, as `sudomode policy check` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
    /// Warnings met on the way (not part of `Display`), so `policy check` can show
    /// everything in one run.
    pub warnings: Vec<PolicyWarning>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl PolicyErrors {
    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Longest value from a policy file a message quotes: enough for a mistyped
/// keyword (`REQUIRE_APPROVALS`, `enforced`, `10 minutes`), too short for a key or
/// token, so a file dropped into `policies/` is never read back to viewers.
pub(crate) const SHOWN_MAX: usize = 24;

/// `"value"` when short, else only its length.
pub(crate) fn quote_value(s: &str) -> String {
    match s.chars().count() {
        n if n <= SHOWN_MAX => format!("{s:?}"),
        n => format!("(a value of {n} characters, not shown)"),
    }
}

/// `` `name` `` when short, else only its length.
pub(crate) fn quote_name(s: &str) -> String {
    match s.chars().count() {
        n if n <= SHOWN_MAX => format!("`{s}`"),
        n => format!("(a name of {n} characters, not shown)"),
    }
}

/// The project's one duration parser: an integer followed by `ms`, `s`, `m`,
/// `h` or `d` (`500ms`, `30s`, `10m`, `2h`, `7d`), in policy and
/// configuration files alike. Zero is a duration (`0s`); rule fields that
/// need a positive one use [`parse_positive_duration`]. Messages never quote
/// the text: the caller decides whether it may be shown (never when it came
/// from a secret reference).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(
            "bad duration: expected a number and a unit (500ms, 30s, 10m, 2h, 7d)".to_string(),
        );
    }
    let n: u64 = num
        .parse()
        .map_err(|_| "bad duration: number too large".to_string())?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(
                "bad duration: unit must be ms, s, m, h or d (500ms, 30s, 10m, 2h, 7d)".to_string(),
            );
        }
    };
    let ms = n
        .checked_mul(ms_per)
        .ok_or_else(|| "bad duration: too large".to_string())?;
    Ok(std::time::Duration::from_millis(ms))
}

/// A duration greater than zero (a rule's approval window).
pub fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("bad duration: must be greater than zero".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in [
            "",
            "10",
            "m",
            "1.5h",
            "10 minutes",
            "-1s",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn display() {
        let e = PolicyErrors {
            errors: vec![
                PolicyError {
                    file: "a.yaml".into(),
                    line: 3,
                    column: 5,
                    message: "x".into(),
                },
                PolicyError {
                    file: "b.yaml".into(),
                    line: 0,
                    column: 0,
                    message: "y".into(),
                },
            ],
            warnings: Vec::new(),
        };
        assert_eq!(e.to_string(), "a.yaml:3:5: x\nb.yaml: y");
        assert_eq!(
            PolicyWarning(e.errors[0].clone()).to_string(),
            "a.yaml:3:5: warning: x"
        );
    }
}
