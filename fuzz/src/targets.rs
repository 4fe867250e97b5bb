//! Fuzz target bodies. Each takes arbitrary bytes, must never panic, and
//! checks properties whose violation would be an evasion (a request judged
//! differently from an equivalent spelling of it).
//!
//! Included by path from `crates/policy/tests/fuzz_stable.rs`, so it may
//! only use `sudomode_intent`, `sudomode_policy`, `http`, `serde_json`, `time`.

use std::io::Write as _;
use std::sync::OnceLock;

use sudomode_intent::{BodyKind, Mapped, Mapper, RawRequest, SqlFlavor};

/// Hosts that select each built-in mapper.
pub const HOSTS: &[&str] = &[
    "api.stripe.com",
    "dynamodb.us-east-1.amazonaws.com",
    "sts.amazonaws.com",
    "my-bucket.s3.us-east-1.amazonaws.com",
    "s3.amazonaws.com",
    "lambda.us-east-1.amazonaws.com",
    "ep-cool-1.us-east-2.aws.neon.tech",
    "db-org.turso.io",
    "api.cloudflare.com",
    "proj.supabase.co",
    "api.openai.com",
    "api.anthropic.com",
    "example.com",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get", "PURGE",
];

/// An owned request decoded from fuzz bytes:
/// `[host byte][method byte]target\nName: value\n…\n\nbody`.
pub struct Req {
    pub host: String,
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    pub fn from_bytes(data: &[u8]) -> Option<Req> {
        let (&h, rest) = data.split_first()?;
        let (&m, rest) = rest.split_first()?;
        let host = HOSTS[h as usize % HOSTS.len()].to_string();
        let method = METHODS[m as usize % METHODS.len()].to_string();
        let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&rest[..i], rest[i + 2..].to_vec()),
            None => (rest, Vec::new()),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n');
        let target = lines.next().unwrap_or("/").to_string();
        let mut headers = http::HeaderMap::new();
        for l in lines {
            if let Some((n, v)) = l.split_once(':')
                && let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(n.trim().as_bytes()),
                    http::HeaderValue::from_str(v.trim()),
                )
            {
                headers.append(n, v);
            }
        }
        Some(Req {
            host,
            method,
            target,
            headers,
            body,
        })
    }

    pub fn map(&self, mapper: &Mapper) -> Result<Mapped, sudomode_intent::IntentError> {
        self.map_as(mapper, &self.host, &self.target)
    }

    pub fn map_as(
        &self,
        mapper: &Mapper,
        host: &str,
        target: &str,
    ) -> Result<Mapped, sudomode_intent::IntentError> {
        mapper.map(&RawRequest {
            method: &self.method,
            scheme: "https",
            host,
            port: 443,
            path_and_query: target,
            headers: &self.headers,
            body: &self.body,
        })
    }
}

fn the_mapper() -> &'static Mapper {
    static M: OnceLock<Mapper> = OnceLock::new();
    M.get_or_init(|| match Mapper::new(Vec::new(), 64 << 10) {
        Ok(m) => m,
        Err(e) => panic!("mapper: {e}"),
    })
}

fn summary(m: &Mapped) -> Vec<(String, String)> {
    m.intents
        .iter()
        .map(|i| (i.resource.clone(), i.action.clone()))
        .collect()
}

/// §4.1 decoding: form / JSON / sniffed bodies always give an object.
pub fn form_json_args(data: &[u8]) {
    for kind in [BodyKind::Json, BodyKind::Form, BodyKind::Other] {
        if let Ok(v) = sudomode_intent::parse_args(kind, data) {
            assert!(v.is_object(), "{kind:?} args not an object: {v}");
        }
    }
    if let Ok(v) = sudomode_intent::parse_form(data) {
        assert!(v.is_object());
    }
    let _ = sudomode_intent::scalar(&String::from_utf8_lossy(data));
}

/// Content-Encoding: arbitrary bytes under each coding must not panic or
/// blow the cap; and a body gzip-compressed must judge exactly like itself.
pub fn decompress(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let codings = [
        "gzip",
        "deflate",
        "br",
        "gzip, br",
        "x-gzip",
        "identity",
        "gzip, gzip, gzip, gzip, gzip",
    ];
    let coding = codings[sel as usize % codings.len()];
    let host = HOSTS[(sel as usize / codings.len()) % HOSTS.len()];
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_ENCODING,
        http::HeaderValue::from_static(coding),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let raw = |h: &http::HeaderMap, b: &[u8]| {
        the_mapper().map(&RawRequest {
            method: "POST",
            scheme: "https",
            host,
            port: 443,
            path_and_query: "/v1/things",
            headers: h,
            body: b,
        })
    };
    let _ = raw(&headers, body);
    // Metamorphic: plain vs gzip of the same bytes.
    let mut enc = flate2_free_gzip(body);
    let mut gz_headers = headers.clone();
    gz_headers.insert(
        http::header::CONTENT_ENCODING,
        http::HeaderValue::from_static("gzip"),
    );
    let mut plain_headers = headers;
    plain_headers.remove(http::header::CONTENT_ENCODING);
    let plain = raw(&plain_headers, body);
    let gz = raw(&gz_headers, &enc);
    match (&plain, &gz) {
        (Ok(a), Ok(b)) => assert_eq!(a.intents, b.intents, "gzip changed the judgement"),
        (Err(_), Err(_)) => {}
        _ => panic!("gzip changed the outcome: plain {plain:?} gzip {gz:?}"),
    }
    enc.clear();
}

/// A gzip stream with stored (uncompressed) deflate blocks, so the fuzz
/// crate needs no compression library: header, blocks, CRC32, length.
pub fn flate2_free_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.write_all(&crc32(data).to_le_bytes()).ok();
    out.write_all(&(data.len() as u32).to_le_bytes()).ok();
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Path normalisation: canonical output, idempotent, and host spelling /
/// dot segments / duplicate slashes never change what a request maps to.
pub fn normalize(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let out = sudomode_intent::normalize_path(&raw);
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
    assert!(!out.contains("//"), "{raw:?} -> {out:?}");
    assert!(
        out.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} -> {out:?}"
    );
    assert_eq!(
        sudomode_intent::normalize_path(&out),
        out,
        "not idempotent for {raw:?}"
    );
}

/// Every mapper on arbitrary requests; spellings the upstream treats as the
/// same request must map to the same intents (or be refused).
pub fn mapper_target(data: &[u8]) {
    let Some(req) = Req::from_bytes(data) else {
        return;
    };
    let Ok(base) = req.map(the_mapper()) else {
        return;
    };
    assert!(!base.intents.is_empty());
    for i in &base.intents {
        assert!(!i.resource.is_empty() && !i.action.is_empty(), "{i:?}");
        assert!(i.args.is_object(), "{i:?}");
    }
    // Host spelling.
    let loud = format!("{}.", req.host.to_ascii_uppercase());
    if let Ok(v) = req.map_as(the_mapper(), &loud, &req.target) {
        assert_eq!(
            summary(&v),
            summary(&base),
            "host spelling {loud:?} changed the judgement"
        );
    }
    // Path spelling (not S3, whose keys are literal bytes upstream too).
    let literal_keys = req.host.contains(".s3.") || req.host.starts_with("s3.");
    if !literal_keys && req.target.starts_with('/') && !req.target.starts_with("//") {
        let (path, query) = req
            .target
            .split_once('?')
            .map_or((req.target.as_str(), None), |(p, q)| (p, Some(q)));
        let mut variants = vec![
            format!("/.{path}"),
            format!("/x/..{path}"),
            format!("/{path}"),
        ];
        if let Some(i) = path[1..].find('/') {
            variants.push(format!("{}/.{}", &path[..=i], &path[i + 1..]));
            variants.push(format!("{}//{}", &path[..=i], &path[i + 2..]));
        }
        for v in variants {
            let t = match query {
                Some(q) => format!("{v}?{q}"),
                None => v.clone(),
            };
            if let Ok(m) = req.map_as(the_mapper(), &req.host, &t) {
                assert_eq!(
                    summary(&m),
                    summary(&base),
                    "path spelling {t:?} vs {:?} changed the judgement",
                    req.target
                );
            }
        }
    }
}

/// The statement splitter and analyser on arbitrary SQL.
pub fn sql(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for flavor in [SqlFlavor::Postgres, SqlFlavor::Sqlite, SqlFlavor::Any] {
        let Ok(base) = sudomode_intent::sql_intents(&text, "db", flavor) else {
            continue;
        };
        assert!(!base.is_empty());
        // A leading comment never changes what runs.
        if let Ok(c) = sudomode_intent::sql_intents(&format!("/* c */ {text}"), "db", flavor) {
            let a: Vec<&str> = base.iter().map(|i| i.action.as_str()).collect();
            let b: Vec<&str> = c.iter().map(|i| i.action.as_str()).collect();
            if !a.contains(&"unparsed") && !b.contains(&"unparsed") {
                assert_eq!(a, b, "leading comment changed {text:?} ({flavor:?})");
            }
        }
    }
}

/// Policy files from arbitrary text.
pub fn policy_load(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = sudomode_policy::Policy::from_sources(&[("fuzz.yaml", text.as_ref())]);
}

const DECIDE_POLICY: &str = r#"rules:
  - name: big
    resource: "*"
    condition: args.amount > 100 || size(args) > 3 || args.metadata.a == "x" || request.path.startsWith("/v1/x")
    decision: DENY
  - name: reads
    resource: "*"
    action: [retrieve, list, select, "Get*", "List*"]
    condition: '!has(args.force) && request.method in ["GET", "HEAD", "POST"]'
    decision: ALLOW
  - name: approve
    resource: "stripe.*"
    condition: now.getHours("UTC") >= 0 && agent.matches("^[a-z]+$")
    decision: REQUIRE_APPROVAL
  - name: rest
    resource: "*"
    decision: DENY
"#;

/// Mapping then deciding (CEL over arbitrary args) never panics; a request
/// whose intents include a DENY-worthy one is never allowed.
pub fn policy_decide(data: &[u8]) {
    static P: OnceLock<sudomode_policy::Policy> = OnceLock::new();
    let p = P.get_or_init(|| {
        match sudomode_policy::Policy::from_sources(&[("d.yaml", DECIDE_POLICY)]) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    });
    let Some(req) = Req::from_bytes(data) else {
        return;
    };
    let Ok(mapped) = req.map(the_mapper()) else {
        return;
    };
    let d = p.decide("bot", &mapped, time::OffsetDateTime::UNIX_EPOCH);
    let _ = p.explain("bot", &mapped, time::OffsetDateTime::UNIX_EPOCH);
    assert!(!d.reason.is_empty() || d.rule.is_some());
}

/// Alias used by the libFuzzer target named `mapper`.
pub fn mapper(data: &[u8]) {
    mapper_target(data)
}
