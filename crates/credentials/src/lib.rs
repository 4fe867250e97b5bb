//! SudoMode credential injection (SPEC §7): swap the agent's placeholder credentials for the
//! real ones on an allowed or approved request — header substitution, or AWS SigV4 re-signing.
//!
//! Pure request rewriting: no I/O, no network. The proxy calls [`Injector::apply`] on the
//! request head it is about to send upstream, with the exact body bytes it will send.

mod error;
mod secret;
mod sigv4;
mod spec;

use std::collections::HashSet;
use std::fmt;
use std::time::SystemTime;

pub use error::CredentialError;
pub use secret::Secret;
pub use spec::{AwsSpec, CredentialSpec};
use sudomode_intent::glob::Glob;
use sudomode_intent::normalize_host;

use spec::Action;

/// Validated credentials, ready to apply. Cheap to share behind an `Arc`.
pub struct Injector {
    entries: Vec<Entry>,
    secrets: Vec<String>,
}

struct Entry {
    name: String,
    hosts: Vec<Glob>,
    action: Action,
    plaintext: bool,
}

/// Host globs that span other customers' tenants: a credential for one
/// project must not be sent to every project on the platform.
const SHARED_TENANT_SUFFIXES: &[&str] = &[
    ".supabase.co",
    ".neon.tech",
    ".turso.io",
    ".amazonaws.com",
    ".herokuapp.com",
    ".vercel.app",
    ".workers.dev",
];

impl Injector {
    /// Validates every spec (exactly one of `header`+`value` or `aws`, a valid header name,
    /// non-empty `hosts`, unique names).
    pub fn new(specs: Vec<CredentialSpec>) -> Result<Injector, CredentialError> {
        let mut entries = Vec::with_capacity(specs.len());
        let mut names = HashSet::new();
        let mut secrets = Vec::new();
        for spec in specs {
            let (hosts, action) = spec.compile()?;
            if !names.insert(spec.name.clone()) {
                return Err(CredentialError::Config(format!(
                    "credential name {:?} is used twice",
                    spec.name
                )));
            }
            for s in spec.secret_values() {
                if !secrets.contains(&s) {
                    secrets.push(s);
                }
            }
            entries.push(Entry {
                name: spec.name,
                hosts,
                action,
                plaintext: spec.plaintext,
            });
        }
        // Longest first, so a redactor replacing them in turn never leaves the tail of a
        // longer secret behind after replacing a shorter one inside it.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Injector { entries, secrets })
    }

    /// An injector that never injects anything.
    pub fn empty() -> Injector {
        Injector {
            entries: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every secret value (header values and their bare tokens, AWS key id, secret key and
    /// session token), longest first, for redaction in logs, audit and responses.
    pub fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }

    /// Startup warnings: host globs such as `*.supabase.co` match every
    /// customer's tenant on that platform, not just yours. (`*.amazonaws.com`
    /// is the documented form for an `aws` credential, which re-signs rather
    /// than hands out a static token, so it is not warned about.)
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in &self.entries {
            for h in e.hosts.iter().map(Glob::as_str) {
                let Some(rest) = h.strip_prefix('*') else {
                    continue;
                };
                let aws = matches!(e.action, Action::Aws(_)) && rest == ".amazonaws.com";
                if !aws && SHARED_TENANT_SUFFIXES.contains(&rest) {
                    out.push(format!(
                        "credential {:?}: host glob {h:?} matches every tenant on {}; name your own host (e.g. myproject{rest})",
                        e.name,
                        rest.trim_start_matches('.')
                    ));
                }
            }
        }
        out
    }

    /// The credential that would be injected for `host` over plain HTTP
    /// without `plaintext: true` — such a request must be refused (SPEC §7).
    pub fn refuses_plaintext(&self, host: &str) -> Option<&str> {
        self.entry_for(host)
            .filter(|e| !e.plaintext)
            .map(|e| e.name.as_str())
    }

    /// Whether requests to `host` are re-signed with an `aws` credential (so
    /// their body may change before they are sent, and an `aws-chunked`
    /// upload must be unframed first, see [`Injector::apply_unframed`]).
    pub fn resigns(&self, host: &str) -> bool {
        self.entry_for(host)
            .is_some_and(|e| matches!(e.action, Action::Aws(_)))
    }

    /// Name of the first credential whose host globs match `host`, if any.
    pub fn credential_for(&self, host: &str) -> Option<&str> {
        self.entry_for(host).map(|e| e.name.as_str())
    }

    fn entry_for(&self, host: &str) -> Option<&Entry> {
        let host = normalize_host(host);
        self.entries
            .iter()
            .find(|e| e.hosts.iter().any(|p| p.is_match(&host)))
    }

    /// Injects the credential for `host` (the normalised destination host) into `req`, whose
    /// URI should be the absolute upstream URL; `body` is exactly what will be sent.
    ///
    /// Returns the name of the credential applied, or `None` when no credential matches (the
    /// request is left untouched). The first spec whose hosts match wins.
    ///
    /// On `Err` the request must not be forwarded: it may already have lost the agent's
    /// placeholder signature, but it never carries a real credential.
    pub fn apply(
        &self,
        host: &str,
        req: &mut http::request::Parts,
        body: &[u8],
    ) -> Result<Option<String>, CredentialError> {
        self.apply_at(host, req, body, SystemTime::now())
    }

    /// [`Injector::apply`] with an explicit signing time (AWS signatures embed it).
    pub fn apply_at(
        &self,
        host: &str,
        req: &mut http::request::Parts,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Option<String>, CredentialError> {
        let Some(entry) = self.entry_for(host) else {
            return Ok(None);
        };
        check_destination(host, &req.uri)?;
        match &entry.action {
            Action::Header { name, value } => {
                // `insert` replaces every value the agent sent under that name.
                req.headers.insert(name.clone(), value.clone());
            }
            Action::Aws(keys) => sigv4::resign(keys, req, body, now)?,
        }
        Ok(Some(entry.name.clone()))
    }
}

impl Injector {
    /// [`Injector::apply`] for an `aws-chunked` upload whose framing the
    /// caller took off (`body`, `trailers`): with an `aws` credential the
    /// request becomes an ordinary signed upload of `body` — framing headers
    /// removed, trailing `x-amz-checksum-*` values moved into headers,
    /// `Content-Length` the decoded size — so S3 still verifies the checksum
    /// (SPEC §7). Any other credential is applied as by `apply` (the caller
    /// then forwards the framed bytes unchanged).
    pub fn apply_unframed(
        &self,
        host: &str,
        req: &mut http::request::Parts,
        body: &[u8],
        trailers: &[(String, String)],
    ) -> Result<Option<String>, CredentialError> {
        let Some(entry) = self.entry_for(host) else {
            return Ok(None);
        };
        check_destination(host, &req.uri)?;
        let Action::Aws(keys) = &entry.action else {
            return Err(CredentialError::InvalidRequest(
                "an unframed aws-chunked body can only be re-signed by an aws credential".into(),
            ));
        };
        sigv4::unchunk(&mut req.headers, trailers, body.len())?;
        sigv4::resign(keys, req, body, SystemTime::now())?;
        Ok(Some(entry.name.clone()))
    }
}

/// Refuses when the URI names another host than the one the credential was matched on:
/// the request would carry a real credential to a host it was not configured for.
fn check_destination(host: &str, uri: &http::Uri) -> Result<(), CredentialError> {
    if let Some(uri_host) = uri.host()
        && normalize_host(uri_host) != normalize_host(host)
    {
        return Err(CredentialError::InvalidRequest(format!(
            "request URI host {uri_host:?} differs from the destination host {host:?}; \
             credentials not injected"
        )));
    }
    Ok(())
}

impl fmt::Debug for Injector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written: aws Credentials' own Debug prints the access key id.
        let mut list = f.debug_list();
        for e in &self.entries {
            let kind = match &e.action {
                Action::Header { name, .. } => format!("header {name}"),
                Action::Aws(_) => "aws sigv4".to_owned(),
            };
            list.entry(&format_args!(
                "{} {:?} ({kind}, [redacted])",
                e.name, e.hosts
            ));
        }
        list.finish()
    }
}
