//! AWS SigV4 re-signing: the agent signed with placeholder keys; strip that signature and
//! sign again with the real ones, keeping the agent's region, service and signed headers.
//!
//! Policy for requests we cannot re-sign faithfully: refuse (`Unsupported` /
//! `InvalidRequest`, i.e. `400 bad_request`) rather than guess. In particular a request to an
//! AWS host without a SigV4 signature is refused — the agent is expected to sign with dummy
//! keys, and the region/service in its credential scope are what we sign for. Guessing them
//! from the host name is wrong for too many endpoints (S3 virtual hosts, FIPS, dual-stack,
//! global services, VPC endpoints).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::CredentialError;
use crate::spec::AwsSpec;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// Headers written by the signer itself; whatever the agent sent under these names is dropped.
const SIGNER_HEADERS: &[&str] = &[
    "authorization",
    X_AMZ_DATE,
    X_AMZ_SECURITY_TOKEN,
    X_AMZ_CONTENT_SHA256,
];

/// Never signed even if the agent signed them: hop-by-hop headers a proxy may rewrite, and
/// headers an HTTP client sets or changes after signing (`content-length` is recomputed by the
/// client from the body; AWS does not require it signed). `host` is added explicitly.
const NEVER_SIGN: &[&str] = &[
    "host",
    "content-length",
    "user-agent",
    "expect",
    "x-amzn-trace-id",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Query parameters of a presigned URL's signature.
const PRESIGN_PARAMS: &[&str] = &[
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
];

/// AWS's URI encoding: everything but unreserved characters.
const AWS_URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn bad(msg: impl Into<String>) -> CredentialError {
    CredentialError::InvalidRequest(msg.into())
}

/// The parts of the agent's signature we keep.
struct AgentSignature {
    region: String,
    service: String,
    signed_headers: Vec<String>,
    /// Presigned URL only: the validity the agent asked for.
    expires: Option<Duration>,
}

/// Re-signs `req` in place with `keys`. See the module docs for what is refused.
pub(crate) fn resign(
    keys: &AwsSpec,
    req: &mut http::request::Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<(), CredentialError> {
    refuse_streaming(&req.headers)?;
    let host = signing_host(req)?;

    let raw_query = req.uri.query().unwrap_or("").to_owned();
    let presigned = query_pairs(&raw_query).any(|(k, _)| {
        k.eq_ignore_ascii_case("x-amz-signature") || k.eq_ignore_ascii_case("x-amz-credential")
    });
    let agent = if presigned {
        parse_presigned(&raw_query)?
    } else {
        parse_authorization(&req.headers)?
    };
    let is_s3 = matches!(
        agent.service.as_str(),
        "s3" | "s3-object-lambda" | "s3-outposts"
    );
    let agent_payload = header_str(&req.headers, X_AMZ_CONTENT_SHA256).map(str::to_owned);

    // Strip the agent's signature: headers always, query parameters for presigned URLs.
    for name in SIGNER_HEADERS {
        req.headers.remove(*name);
    }
    let kept_query: Vec<&str> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("");
            let key = percent_decode_str(key).decode_utf8_lossy();
            !(presigned && PRESIGN_PARAMS.contains(&key.to_ascii_lowercase().as_str()))
        })
        .collect();
    let kept_query = kept_query.join("&");

    // Host is signed; make the request carry exactly the value that was signed.
    let host_value =
        HeaderValue::from_str(&host).map_err(|_| bad("destination host is not a valid header"))?;
    req.headers.insert(HOST, host_value);
    // Same for the URI authority, which becomes HTTP/2's `:authority`: `host:443` must not
    // reach the wire when `host` was signed.
    if req.uri.authority().is_some_and(|a| a.as_str() != host) {
        set_authority(&mut req.uri, &host)?;
    }

    let mut settings = SigningSettings::default();
    if is_s3 {
        // S3 signs the path exactly as sent: no dot-segment normalisation, no double encoding.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let signable_body = if presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = agent.expires;
        // A presigned S3 URL never covers the payload; other services sign the (empty) body.
        if is_s3 {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(body)
        }
    } else {
        // S3 requires x-amz-content-sha256; other services get it only if the agent sent it.
        if is_s3 || agent_payload.is_some() {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        if agent_payload.as_deref() == Some(UNSIGNED_PAYLOAD) {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(body)
        }
    };

    let signed = headers_to_sign(&req.headers, &agent, presigned)?;
    let path = req.uri.path();
    let path = if path.is_empty() { "/" } else { path };
    let scheme = req.uri.scheme_str().unwrap_or("https");
    let signable_uri = if kept_query.is_empty() {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}{path}?{kept_query}")
    };

    let credentials = Credentials::new(
        keys.access_key_id.expose(),
        keys.secret_access_key.expose(),
        keys.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "sudomode",
    );
    let identity: Identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&agent.region)
        .name(&agent.service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| CredentialError::Signing(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        req.method.as_str(),
        signable_uri.as_str(),
        signed.iter().map(|(k, v)| (k.as_str(), *v)),
        signable_body,
    )
    .map_err(|e| CredentialError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| CredentialError::Signing(e.to_string()))?
        .into_parts();
    let (new_headers, new_params) = instructions.into_parts();

    for h in new_headers {
        let name = HeaderName::from_static(h.name());
        let mut value = HeaderValue::from_str(h.value())
            .map_err(|_| CredentialError::Signing(format!("signer produced an invalid {name}")))?;
        value.set_sensitive(h.sensitive() || name == AUTHORIZATION);
        req.headers.insert(name, value);
    }
    if presigned {
        let mut query = kept_query;
        for (k, v) in new_params {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(k);
            query.push('=');
            query.extend(utf8_percent_encode(&v, AWS_URI_ENCODE));
        }
        set_query(&mut req.uri, &query)?;
    }
    Ok(())
}

/// aws-chunked bodies carry a signature per chunk chained from the header signature; we
/// would have to rewrite the body too. Refused until supported (SPEC §7).
fn refuse_streaming(headers: &HeaderMap) -> Result<(), CredentialError> {
    let streaming_sha = header_str(headers, X_AMZ_CONTENT_SHA256)
        .is_some_and(|v| v.to_ascii_uppercase().starts_with("STREAMING-"));
    let chunked_encoding = sudomode_intent::header_lists(headers, CONTENT_ENCODING, "aws-chunked");
    if streaming_sha || chunked_encoding || headers.contains_key("x-amz-decoded-content-length") {
        return Err(CredentialError::Unsupported(
            "aws-chunked streaming uploads are not supported yet; disable chunked encoding in \
             your SDK: set AWS_REQUEST_CHECKSUM_CALCULATION=when_required (boto3, AWS CLI and \
             the other AWS SDKs) or the SDK's equivalent option, so uploads are sent with a \
             plain body"
                .into(),
        ));
    }
    Ok(())
}

/// An `aws-chunked` request's head made ordinary for its decoded body of
/// `len` bytes: `aws-chunked` out of `Content-Encoding`, the framing headers
/// dropped, each `x-amz-checksum-*` trailer in its header. The payload hash
/// is written by the signer.
pub(crate) fn unchunk(
    headers: &mut HeaderMap,
    trailers: &[(String, String)],
    len: usize,
) -> Result<(), CredentialError> {
    let codings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .map(str::to_owned)
        .collect();
    headers.remove(CONTENT_ENCODING);
    if !codings.is_empty() {
        let v = HeaderValue::from_str(&codings.join(", "))
            .map_err(|_| bad("unreadable Content-Encoding"))?;
        headers.insert(CONTENT_ENCODING, v);
    }
    for name in [
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        X_AMZ_CONTENT_SHA256,
        "transfer-encoding",
    ] {
        headers.remove(name);
    }
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    for (name, value) in trailers {
        if !name.starts_with("x-amz-checksum-") {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad(format!("trailer {name:?} is not a valid header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| bad(format!("trailer {name} has an unreadable value")))?;
        headers.insert(name, value);
    }
    Ok(())
}

/// The `Host` value the request will be sent with: URI authority, default port omitted;
/// falls back to the `Host` header when the URI is origin-form.
fn signing_host(req: &http::request::Parts) -> Result<String, CredentialError> {
    if let Some(authority) = req.uri.authority() {
        let host = authority.host().to_ascii_lowercase();
        let default_port = match req.uri.scheme() {
            Some(s) if *s == Scheme::HTTP => 80,
            _ => 443,
        };
        return Ok(match authority.port_u16() {
            Some(p) if p != default_port => format!("{host}:{p}"),
            _ => host,
        });
    }
    header_str(&req.headers, "host")
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("cannot re-sign: the request has neither an absolute URI nor a Host"))
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=…`.
fn parse_authorization(headers: &HeaderMap) -> Result<AgentSignature, CredentialError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(bad(
            "request to an AWS host has no (or several) SigV4 Authorization headers; \
             configure the AWS SDK with placeholder keys so it signs, and SudoMode re-signs \
             with the real ones",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| bad("Authorization header is not ASCII"))?;
    let Some((algorithm, rest)) = value.trim().split_once(' ') else {
        return Err(bad("Authorization header is not a SigV4 signature"));
    };
    if algorithm != ALGORITHM {
        return Err(if algorithm.starts_with("AWS4-") {
            CredentialError::Unsupported(format!(
                "SigV4 algorithm {algorithm} (e.g. SigV4a) is not supported; use regional endpoints signed with {ALGORITHM}"
            ))
        } else {
            bad(
                "request to an AWS host is not SigV4-signed (AWS4-HMAC-SHA256); configure the \
                 AWS SDK with placeholder keys so it signs, and SudoMode re-signs with the real ones",
            )
        });
    }
    let (mut credential, mut signed) = (None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| bad("SigV4 Authorization has no Credential"))?;
    let signed = signed.ok_or_else(|| bad("SigV4 Authorization has no SignedHeaders"))?;
    let (region, service) = parse_scope(credential)?;
    Ok(AgentSignature {
        region,
        service,
        signed_headers: split_signed(signed),
        expires: None,
    })
}

/// Parses the `X-Amz-*` parameters of a presigned URL.
fn parse_presigned(query: &str) -> Result<AgentSignature, CredentialError> {
    let (mut algorithm, mut credential, mut signed, mut expires) = (None, None, None, None);
    for (k, v) in query_pairs(query) {
        let v = percent_decode_str(v).decode_utf8_lossy().into_owned();
        match k.to_ascii_lowercase().as_str() {
            "x-amz-algorithm" => algorithm = Some(v),
            "x-amz-credential" => credential = Some(v),
            "x-amz-signedheaders" => signed = Some(v),
            "x-amz-expires" => expires = Some(v),
            _ => {}
        }
    }
    if algorithm.as_deref() != Some(ALGORITHM) {
        return Err(CredentialError::Unsupported(format!(
            "presigned URL is not signed with {ALGORITHM}"
        )));
    }
    let credential = credential.ok_or_else(|| bad("presigned URL has no X-Amz-Credential"))?;
    let (region, service) = parse_scope(&credential)?;
    let expires = expires
        .and_then(|e| e.parse::<u64>().ok())
        .filter(|e| (1..=604_800).contains(e))
        .ok_or_else(|| bad("presigned URL has no valid X-Amz-Expires (1..=604800)"))?;
    Ok(AgentSignature {
        region,
        service,
        signed_headers: split_signed(signed.as_deref().unwrap_or("host")),
        expires: Some(Duration::from_secs(expires)),
    })
}

/// `AKID/20240101/us-east-1/dynamodb/aws4_request` → (region, service). The agent's dummy key
/// id and date are discarded.
fn parse_scope(credential: &str) -> Result<(String, String), CredentialError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match parts.as_slice() {
        [_akid, _date, region, service, "aws4_request"] if valid(region) && valid(service) => {
            Ok(((*region).to_owned(), (*service).to_owned()))
        }
        _ => Err(bad(
            "SigV4 credential scope is malformed (expected KEY/DATE/REGION/SERVICE/aws4_request)",
        )),
    }
}

fn split_signed(list: &str) -> Vec<String> {
    list.split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// The headers to sign and their values: what the agent signed, plus `host`, and — for
/// header auth — `content-type`, `content-md5` and every `x-amz-*` header present (AWS
/// requires x-amz-* headers to be signed), minus [`NEVER_SIGN`] and the signer's own headers.
fn headers_to_sign<'a>(
    headers: &'a HeaderMap,
    agent: &AgentSignature,
    presigned: bool,
) -> Result<Vec<(String, &'a str)>, CredentialError> {
    let mut names: Vec<String> = agent.signed_headers.clone();
    if !presigned {
        for name in headers.keys() {
            let n = name.as_str();
            if n.starts_with("x-amz-") || n == "content-type" || n == "content-md5" {
                names.push(n.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    if let Some(host) = header_str(headers, "host") {
        out.push(("host".to_owned(), host));
    }
    for name in names {
        if NEVER_SIGN.contains(&name.as_str()) || SIGNER_HEADERS.contains(&name.as_str()) {
            continue;
        }
        for value in headers.get_all(name.as_str()) {
            let value = value.to_str().map_err(|_| {
                bad(format!(
                    "signed header {name} is not ASCII; cannot re-sign the request"
                ))
            })?;
            out.push((name.clone(), value));
        }
    }
    Ok(out)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Raw `key=value` pairs of a query string (still percent-encoded).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn set_query(uri: &mut Uri, query: &str) -> Result<(), CredentialError> {
    let path = uri.path();
    let path = if path.is_empty() { "/" } else { path };
    let pq: Cow<'_, str> = if query.is_empty() {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("{path}?{query}"))
    };
    let pq = PathAndQuery::try_from(pq.as_ref())
        .map_err(|_| CredentialError::Signing("re-signed URL is invalid".into()))?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    *uri = Uri::from_parts(parts)
        .map_err(|_| CredentialError::Signing("re-signed URL is invalid".into()))?;
    Ok(())
}

fn set_authority(uri: &mut Uri, authority: &str) -> Result<(), CredentialError> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(
        authority
            .parse()
            .map_err(|_| bad("destination host is not a valid URI authority"))?,
    );
    *uri = Uri::from_parts(parts).map_err(|_| bad("cannot rebuild the request URI"))?;
    Ok(())
}
