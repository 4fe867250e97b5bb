//! Host globs: `*` (any run of characters, dots included) and `?` (one character),
//! case-insensitive, anchored at both ends.
//!
//! A hand-written matcher rather than globset: host patterns have no path separators or
//! character classes, and anchoring is what keeps `*.amazonaws.com` from matching
//! `amazonaws.com.evil.com`.

/// Lower-cases a host and drops a trailing dot and a `:port`, so `API.Stripe.com.:443`
/// is compared as `api.stripe.com`.
pub(crate) fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep what is inside the brackets.
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            // Only one colon: a port suffix. Several: a bare IPv6 address, left alone.
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Matches `host` (already normalised) against `pattern` (already lower-cased).
/// Iterative with a single backtrack point: linear in practice, no recursion.
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    let p = pattern.as_bytes();
    let h = host.as_bytes();
    let (mut pi, mut hi) = (0usize, 0usize);
    // Position of the last `*` in the pattern and the host position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while hi < h.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == h[hi]) {
            pi += 1;
            hi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, hi));
            pi += 1;
        } else if let Some((sp, sh)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            hi = sh + 1;
            star = Some((sp, sh + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(host_matches(
            "*.amazonaws.com",
            "dynamodb.us-east-1.amazonaws.com"
        ));
        assert!(host_matches("*.amazonaws.com", "s3.amazonaws.com"));
        assert!(!host_matches("*.amazonaws.com", "amazonaws.com"));
        assert!(!host_matches("*.amazonaws.com", "amazonaws.com.evil.com"));
        assert!(!host_matches("*.amazonaws.com", "evilamazonaws.com"));
        assert!(!host_matches(
            "*.amazonaws.com",
            "s3.amazonaws.com.evil.com"
        ));
        assert!(host_matches("api.stripe.com", "api.stripe.com"));
        assert!(!host_matches("api.stripe.com", "api.stripe.com.evil.com"));
        assert!(!host_matches("api.stripe.com", "xapi.stripe.com"));
        assert!(host_matches("api?.example.com", "api1.example.com"));
        assert!(!host_matches("api?.example.com", "api.example.com"));
        assert!(!host_matches("api?.example.com", "api12.example.com"));
        assert!(host_matches("*", "anything.example"));
        assert!(host_matches(
            "s3.*.amazonaws.com",
            "s3.eu-west-1.amazonaws.com"
        ));
        assert!(host_matches("**.a.com", "x.a.com"));
        assert!(host_matches("*a*a*a*", "aaa"));
        assert!(!host_matches("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(!host_matches("", "a"));
        assert!(host_matches("", ""));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize_host("API.Stripe.COM."), "api.stripe.com");
        assert_eq!(normalize_host("api.stripe.com:443"), "api.stripe.com");
        assert_eq!(normalize_host("[::1]:8443"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
    }
}
