//! Verification of Slack request signatures (`X-Slack-Signature`, v0 HMAC-SHA256, 5-minute window).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::SlackVerifyError;

/// Header carrying the request timestamp.
pub const SLACK_TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
/// Header carrying `v0=<hex signature>`.
pub const SLACK_SIGNATURE_HEADER: &str = "X-Slack-Signature";

/// Largest accepted distance between the request timestamp and now, either way.
pub const SLACK_MAX_SKEW_SECS: i64 = 5 * 60;

/// Verify a Slack request: `signature_header` must be `v0=` + hex
/// HMAC-SHA256(signing_secret, `v0:{timestamp}:{body}`), compared in constant
/// time, and `timestamp_header` must be within 5 minutes of `now_unix`.
///
/// Pass the raw header values (`X-Slack-Request-Timestamp`, `X-Slack-Signature`)
/// and the raw body bytes exactly as received.
pub fn verify_slack_signature(
    signing_secret: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SlackVerifyError> {
    if signing_secret.is_empty() {
        return Err(SlackVerifyError::NoSecret);
    }
    let ts = timestamp_header;
    if ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlackVerifyError::MalformedTimestamp);
    }
    let ts_num: i64 = ts
        .parse()
        .map_err(|_| SlackVerifyError::MalformedTimestamp)?;
    let hex_sig = signature_header
        .strip_prefix("v0=")
        .ok_or(SlackVerifyError::MalformedSignature)?;
    if hex_sig.len() != 64 {
        return Err(SlackVerifyError::MalformedSignature);
    }
    let expected = hex::decode(hex_sig).map_err(|_| SlackVerifyError::MalformedSignature)?;
    if (now_unix.saturating_sub(ts_num)).abs() > SLACK_MAX_SKEW_SECS {
        return Err(SlackVerifyError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes())
        .map_err(|_| SlackVerifyError::NoSecret)?;
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SlackVerifyError::Mismatch)
}

/// Compute the `X-Slack-Signature` value for a body (useful for tests and stand-ins).
pub fn slack_signature(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack).
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_documented_vector() {
        let now = 1531420618 + 10;
        assert_eq!(
            verify_slack_signature(DOC_SECRET, DOC_TS, DOC_SIG, DOC_BODY.as_bytes(), now),
            Ok(())
        );
        assert_eq!(
            slack_signature(DOC_SECRET, DOC_TS, DOC_BODY.as_bytes()),
            DOC_SIG
        );
    }

    #[test]
    fn own_vector_valid_bad_stale_malformed() {
        let secret = "s3cr3t";
        let now = 1_800_000_000;
        let ts = now.to_string();
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let sig = slack_signature(secret, &ts, body);
        assert_eq!(verify_slack_signature(secret, &ts, &sig, body, now), Ok(()));
        // Uppercase hex is accepted (hex decodes either case).
        assert_eq!(
            verify_slack_signature(
                secret,
                &ts,
                &sig.to_uppercase().replace("V0=", "v0="),
                body,
                now
            ),
            Ok(())
        );
        // Wrong secret, tampered body, tampered signature.
        assert_eq!(
            verify_slack_signature("other", &ts, &sig, body, now),
            Err(SlackVerifyError::Mismatch)
        );
        assert_eq!(
            verify_slack_signature(secret, &ts, &sig, b"payload=x", now),
            Err(SlackVerifyError::Mismatch)
        );
        let mut bad = sig.clone();
        let last = if bad.ends_with('0') { "1" } else { "0" };
        bad.replace_range(bad.len() - 1.., last);
        assert_eq!(
            verify_slack_signature(secret, &ts, &bad, body, now),
            Err(SlackVerifyError::Mismatch)
        );
        // The timestamp is part of what is signed.
        let ts2 = (now - 1).to_string();
        assert_eq!(
            verify_slack_signature(secret, &ts2, &sig, body, now),
            Err(SlackVerifyError::Mismatch)
        );
        // Stale: 6 minutes either way; 4m59s is fine.
        let old = (now - 360).to_string();
        let old_sig = slack_signature(secret, &old, body);
        assert_eq!(
            verify_slack_signature(secret, &old, &old_sig, body, now),
            Err(SlackVerifyError::Stale)
        );
        let future = (now + 360).to_string();
        let future_sig = slack_signature(secret, &future, body);
        assert_eq!(
            verify_slack_signature(secret, &future, &future_sig, body, now),
            Err(SlackVerifyError::Stale)
        );
        let recent = (now - 299).to_string();
        let recent_sig = slack_signature(secret, &recent, body);
        assert_eq!(
            verify_slack_signature(secret, &recent, &recent_sig, body, now),
            Ok(())
        );
        // Malformed headers.
        for t in [
            "",
            "abc",
            "-5",
            "1.5",
            " 1800000000",
            "99999999999999999999",
        ] {
            assert_eq!(
                verify_slack_signature(secret, t, &sig, body, now),
                Err(SlackVerifyError::MalformedTimestamp),
                "{t:?}"
            );
        }
        let hexpart = &sig[3..];
        for s in [
            String::new(),
            hexpart.to_string(),
            format!("v1={hexpart}"),
            format!("v0={}", &hexpart[..62]),
            format!("v0={}zz", &hexpart[..62]),
            format!("{sig},{sig}"),
        ] {
            assert_eq!(
                verify_slack_signature(secret, &ts, &s, body, now),
                Err(SlackVerifyError::MalformedSignature),
                "{s:?}"
            );
        }
        assert_eq!(
            verify_slack_signature("", &ts, &sig, body, now),
            Err(SlackVerifyError::NoSecret)
        );
    }
}
