//! The head of one HTTP/1.x request inside an intercepted tunnel: parsed by
//! `httparse`, turned into `http` types sharing one exact-size copy of the
//! head, and its body framing decided once (RFC 9112 §6).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use sudomode_intent::header_lists;

/// Header fields a request may carry (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed head: the request without its body, and what the connection
/// must do around it.
#[derive(Debug)]
pub struct Head {
    pub parts: http::request::Parts,
    pub framing: Framing,
    /// Another request may follow on this connection after the answer:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`, never after both framings were sent
    /// (RFC 9112 §6.1: chunked wins, then the connection closes).
    pub keep_alive: bool,
    pub expect_continue: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is over {0} bytes")]
    TooLarge(usize),
    #[error("the request has more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("transfer coding `{0}` is not supported; send the body plain or chunked")]
    Coding(String),
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) | Self::TooManyHeaders => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Coding(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

fn malformed(why: impl Into<String>) -> HeadError {
    HeadError::Malformed(why.into())
}

/// Parses the head at the start of `buf`: `None` while it is incomplete,
/// else the head and how many bytes of `buf` it took.
pub fn parse(buf: &[u8], max: usize) -> Result<Option<(Head, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max => n,
        Ok(httparse::Status::Partial) if buf.len() < max => return Ok(None),
        Ok(_) => return Err(HeadError::TooLarge(max)),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(malformed(e.to_string())),
    };
    // One copy of the head; the URI and every header value are slices of it.
    let copy = Bytes::copy_from_slice(&buf[..len]);
    let slice = |part: &[u8]| {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        copy.slice(start..start + part.len())
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| malformed("invalid method"))?;
    // A complete parse always has a target; `slice` must only see parts of `buf`.
    let Some(path) = req.path else {
        return Err(malformed("no request target"));
    };
    let uri = Uri::from_maybe_shared(slice(path.as_bytes()))
        .map_err(|e| malformed(format!("invalid request target: {e}")))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| malformed(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_maybe_shared(slice(h.value))
            .map_err(|_| malformed(format!("invalid value in header {}", h.name)))?;
        headers.append(name, value);
    }
    let head = build(method, uri, version, headers)?;
    Ok(Some((head, len)))
}

fn build(
    method: Method,
    uri: Uri,
    version: Version,
    mut headers: HeaderMap,
) -> Result<Head, HeadError> {
    if headers.get_all(header::HOST).iter().count() > 1 {
        return Err(malformed("more than one Host header"));
    }
    let (framing, both) = framing(&mut headers, version)?;
    let tokens = |name, token| header_lists(&headers, name, token);
    let keep_alive = !both
        && match version {
            Version::HTTP_10 => tokens(header::CONNECTION, "keep-alive"),
            _ => !tokens(header::CONNECTION, "close"),
        };
    let expect_continue = version == Version::HTTP_11 && tokens(header::EXPECT, "100-continue");
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Head {
        parts,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// RFC 9112 §6.3 for requests: `Transfer-Encoding` (only `chunked` is
/// understood) wins over `Content-Length`, which is then dropped so that
/// nothing downstream reads it; several lengths must agree. The flag says
/// both were sent.
fn framing(headers: &mut HeaderMap, version: Version) -> Result<(Framing, bool), HeadError> {
    if chunked(headers)? {
        if version == Version::HTTP_10 {
            return Err(malformed("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // `remove` takes every Content-Length line.
        let both = headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok((Framing::Chunked, both));
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let n = content_length(part).ok_or_else(|| malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(malformed("Content-Length values disagree"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => (Framing::Empty, false),
        Some(n) => (Framing::Length(n), false),
    })
}

/// Whether the body is chunked: `Transfer-Encoding` absent is `false`,
/// exactly `chunked` is `true`, any other coding (`gzip, chunked`) is
/// refused, since the body judged must be the body the upstream decodes.
/// The plain proxy port applies the same rule to hyper's requests.
pub fn chunked(headers: &HeaderMap) -> Result<bool, HeadError> {
    let mut list: Vec<&str> = Vec::new();
    for v in headers.get_all(header::TRANSFER_ENCODING) {
        let v = v
            .to_str()
            .map_err(|_| malformed("invalid Transfer-Encoding"))?;
        list.extend(v.split(',').map(str::trim).filter(|t| !t.is_empty()));
    }
    match list.as_slice() {
        [] if !headers.contains_key(header::TRANSFER_ENCODING) => Ok(false),
        [one] if one.eq_ignore_ascii_case("chunked") => Ok(true),
        _ => Err(HeadError::Coding(list.join(", "))),
    }
}

/// Digits only (no sign, no spaces inside), at most `u64`.
pub fn content_length(raw: &[u8]) -> Option<u64> {
    let digits = raw.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(Head, usize)>, HeadError> {
        parse(raw.as_bytes(), 64 * 1024)
    }

    fn done(raw: &str) -> Head {
        head(raw).unwrap().unwrap().0
    }

    #[test]
    fn a_complete_head_becomes_http_types() {
        let raw = "POST /v1/charges?x=1 HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 3\r\nX-A: 1\r\nX-A: 2\r\n\r\nabc";
        let (h, n) = head(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 3);
        assert_eq!(h.parts.method, Method::POST);
        assert_eq!(h.parts.uri, "/v1/charges?x=1");
        assert_eq!(h.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(h.framing, Framing::Length(3));
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
    }

    #[test]
    fn an_incomplete_head_waits_and_an_oversized_one_is_refused() {
        assert!(head("GET / HTTP/1.1\r\nHost: a").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70_000));
        assert_eq!(head(&big).unwrap_err().status(), 431);
        let partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(70_000));
        assert_eq!(head(&partial).unwrap_err().status(), 431);
        let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n"))
                .unwrap_err()
                .status(),
            431
        );
    }

    #[test]
    fn chunked_wins_over_content_length_and_closes_the_connection() {
        let h = done("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 8\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.parts.headers.get(header::CONTENT_LENGTH).is_none());
        assert!(!h.keep_alive);
        let h = done("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
    }

    #[test]
    fn framing_that_could_be_read_two_ways_is_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(head(raw).unwrap_err().status(), 501, "{raw}");
        }
        for raw in [
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 8\r\nContent-Length: 12\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 8, 12\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET /x\x00y HTTP/1.1\r\n\r\n",
            "GET / HTTP/9.9\r\n\r\n",
        ] {
            assert_eq!(head(raw).unwrap_err().status(), 400, "{raw:?}");
        }
        let h = done("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
    }

    #[test]
    fn keep_alive_and_expect_follow_the_version() {
        assert!(!done("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(done("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!done("GET / HTTP/1.1\r\nConnection: x, close\r\n\r\n").keep_alive);
        assert!(
            done("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(!done("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }
}
