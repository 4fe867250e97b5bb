//! `aws-chunked` request bodies (SPEC §7): what current AWS SDKs send for S3
//! uploads — `STREAMING-UNSIGNED-PAYLOAD-TRAILER` with a trailing checksum,
//! or signed chunks (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`). The
//! framing is taken off so the upload is judged by what S3 will store;
//! whatever cannot be read exactly as S3 reads it is refused.
//!
//! Chunk signatures are not verified: the agent signs with placeholder keys,
//! and SudoMode either forwards the bytes unchanged or re-signs the decoded
//! body itself.

use crate::IntentError;

/// Longest chunk-size line (`hex;chunk-signature=<64 hex>`) or trailer line.
const MAX_LINE: usize = 4096;
/// The trailer that signs the trailers: part of the framing, not a value.
const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

fn bad(msg: impl Into<String>) -> IntentError {
    IntentError::BadRequest(format!("aws-chunked body: {}", msg.into()))
}

/// A body taken out of its `aws-chunked` framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unframed {
    /// The payload S3 stores (still in any other `Content-Encoding`).
    pub body: Vec<u8>,
    /// Trailing headers, names in lower case (e.g. `x-amz-checksum-crc32`);
    /// the trailer signature is left out.
    pub trailers: Vec<(String, String)>,
}

impl Unframed {
    /// The `x-amz-checksum-*` trailers as (algorithm, value): `("crc32", "…")`.
    pub fn checksums(&self) -> impl Iterator<Item = (&str, &str)> {
        self.trailers.iter().filter_map(|(k, v)| {
            k.strip_prefix("x-amz-checksum-")
                .map(|alg| (alg, v.as_str()))
        })
    }
}

/// Whether the request's body is `aws-chunked` framed: a `Content-Encoding`
/// that lists it, or a streaming payload hash (S3 reads the framing from
/// either; event streams are another format and are not included).
pub fn is_aws_chunked(headers: &http::HeaderMap) -> bool {
    let encoded = crate::header_lists(headers, http::header::CONTENT_ENCODING, "aws-chunked");
    let streaming = headers
        .get_all("x-amz-content-sha256")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.trim().to_ascii_uppercase();
            v.starts_with("STREAMING-") && v.contains("-PAYLOAD")
        });
    encoded || streaming
}

/// Unframes the body when it is `aws-chunked` (`Ok(None)` when it is not).
/// The decoded payload must fit in `cap` and match
/// `x-amz-decoded-content-length` when the request states it.
pub fn unframe(
    headers: &http::HeaderMap,
    body: &[u8],
    cap: usize,
) -> Result<Option<Unframed>, IntentError> {
    if !is_aws_chunked(headers) {
        return Ok(None);
    }
    let unframed = decode(body, cap)?;
    let declared = headers
        .get("x-amz-decoded-content-length")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| bad("unreadable x-amz-decoded-content-length"))
        })
        .transpose()?;
    if let Some(n) = declared
        && n != unframed.body.len()
    {
        return Err(bad(format!(
            "x-amz-decoded-content-length says {n} bytes but the chunks hold {}",
            unframed.body.len()
        )));
    }
    Ok(Some(unframed))
}

/// `hex[;ext]\r\n data\r\n` … `0[;ext]\r\n` trailers `\r\n`.
fn decode(body: &[u8], cap: usize) -> Result<Unframed, IntentError> {
    let mut rest = body;
    let mut out = Vec::new();
    loop {
        let line = take_line(&mut rest)?;
        let size = chunk_size(line)?;
        if size == 0 {
            break;
        }
        if out.len().saturating_add(size) > cap {
            return Err(IntentError::TooLarge { limit: cap });
        }
        if rest.len() < size + 2 {
            return Err(bad("a chunk is shorter than its size"));
        }
        let (data, after) = rest.split_at(size);
        out.extend_from_slice(data);
        rest = after
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("a chunk does not end with CRLF"))?;
    }
    let mut trailers = Vec::new();
    loop {
        let line = take_line(&mut rest)?;
        if line.is_empty() {
            break;
        }
        let text = std::str::from_utf8(line).map_err(|_| bad("unreadable trailer"))?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| bad("a trailer without `name:value`"))?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || trailers.iter().any(|(k, _)| *k == name) {
            return Err(bad("an empty or repeated trailer name"));
        }
        if name != TRAILER_SIGNATURE {
            trailers.push((name, value.trim().to_string()));
        }
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the final chunk"));
    }
    Ok(Unframed {
        body: out,
        trailers,
    })
}

/// The next CRLF-terminated line (without the CRLF).
fn take_line<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], IntentError> {
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    let end = window
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| bad("a line without CRLF (truncated or not aws-chunked)"))?;
    let line = &rest[..end];
    *rest = &rest[end + 2..];
    Ok(line)
}

/// `1a;chunk-signature=…` → 26. Only hex digits, then `;` extensions.
fn chunk_size(line: &[u8]) -> Result<usize, IntentError> {
    let text = std::str::from_utf8(line).map_err(|_| bad("unreadable chunk size"))?;
    let (hex, ext) = text.split_once(';').unwrap_or((text, ""));
    if hex.is_empty() || hex.len() > 15 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("a chunk size that is not hexadecimal"));
    }
    if !ext.is_empty() && !ext.starts_with("chunk-signature=") {
        return Err(bad("an unknown chunk extension"));
    }
    usize::from_str_radix(hex, 16).map_err(|_| bad("a chunk size out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const TRAILER: &[(&str, &str)] = &[
        ("content-encoding", "aws-chunked"),
        ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("x-amz-decoded-content-length", "11"),
    ];

    #[test]
    fn unsigned_payload_with_a_trailing_checksum() {
        let body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let u = unframe(&headers(TRAILER), body, 100).unwrap().unwrap();
        assert_eq!(u.body, b"hello world");
        assert_eq!(u.checksums().collect::<Vec<_>>(), [("crc32", "DUoRhQ==")]);
    }

    #[test]
    fn signed_chunks_and_a_signed_trailer() {
        let sig = "0".repeat(64);
        let body = format!(
            "5;chunk-signature={sig}\r\nhello\r\n6;chunk-signature={sig}\r\n world\r\n0;chunk-signature={sig}\r\nx-amz-checksum-sha256:abc=\r\nx-amz-trailer-signature:{sig}\r\n\r\n"
        );
        let h = headers(&[(
            "x-amz-content-sha256",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        )]);
        let u = unframe(&h, body.as_bytes(), 100).unwrap().unwrap();
        assert_eq!(u.body, b"hello world");
        assert_eq!(
            u.trailers,
            [("x-amz-checksum-sha256".into(), "abc=".into())]
        );
        let plain = format!("5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n");
        let h = headers(&[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")]);
        assert_eq!(
            unframe(&h, plain.as_bytes(), 100).unwrap().unwrap().body,
            b"hello"
        );
    }

    #[test]
    fn plain_bodies_and_event_streams_are_not_framed() {
        assert_eq!(unframe(&headers(&[]), b"5\r\nhello", 100).unwrap(), None);
        let events = headers(&[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-EVENTS")]);
        assert_eq!(unframe(&events, b"x", 100).unwrap(), None);
    }

    #[test]
    fn refused_when_not_read_exactly() {
        let h = headers(TRAILER);
        for body in [
            &b"b\r\nhello world\r\n"[..],                 // no final chunk
            b"c\r\nhello world\r\n0\r\n\r\n",             // short chunk
            b"zz\r\nhello world\r\n0\r\n\r\n",            // not hex
            b"b;x=1\r\nhello world\r\n0\r\n\r\n",         // unknown extension
            b"b\r\nhello world\r\n0\r\n\r\nEXTRA",        // bytes after the end
            b"b\r\nhello world\r\n0\r\nno-colon\r\n\r\n", // malformed trailer
            b"5\r\nhello\r\n0\r\n\r\n",                   // decoded length mismatch
        ] {
            assert!(
                matches!(unframe(&h, body, 100), Err(IntentError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let big = b"b\r\nhello world\r\n0\r\n\r\n";
        assert_eq!(
            unframe(&h, big, 10),
            Err(IntentError::TooLarge { limit: 10 })
        );
    }
}
