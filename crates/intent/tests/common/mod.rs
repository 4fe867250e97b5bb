//! Shared by the intent crate's integration tests: map one request.
#![allow(dead_code)]

use sudomode_intent::{IntentError, Mapped, Mapper, RawRequest};

/// Maps an HTTPS request on port 443 with the given headers and body.
pub fn run(
    mapper: &Mapper,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Mapped, IntentError> {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    mapper.map(&RawRequest {
        method,
        scheme: "https",
        host,
        port: 443,
        path_and_query: target,
        headers: &h,
        body,
    })
}
