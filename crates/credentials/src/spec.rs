//! The `credentials:` entries of `sudomode.yaml` (SPEC §7) and their validation.

use http::{HeaderName, HeaderValue};
use serde::Deserialize;

use sudomode_intent::glob::Glob;

use crate::CredentialError;
use crate::secret::{Secret, empty_as_none};

/// One `credentials:` entry. Secret references (`${env:…}`, `${file:…}`) are resolved by the
/// config loader before this is deserialised, so every field here holds the real value.
/// `Debug` is derived but safe: every secret is a [`Secret`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    pub name: String,
    /// Host globs (`*`, `?`, case-insensitive) this credential may be sent to.
    pub hosts: Vec<String>,
    /// Header to replace (with `value`), e.g. `Authorization`.
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub value: Option<Secret>,
    /// Re-sign AWS SigV4 requests with these keys instead of injecting a header.
    #[serde(default)]
    pub aws: Option<AwsSpec>,
    /// Also inject over plain HTTP. Off by default: a credential is sent only
    /// over TLS, and a plain-HTTP request to its host is refused.
    #[serde(default)]
    pub plaintext: bool,
}

/// Real AWS keys for SigV4 re-signing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSpec {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Optional; an empty string (an unset `${env:AWS_SESSION_TOKEN}`) means none.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub session_token: Option<Secret>,
}

/// What a validated spec does to a matching request.
#[derive(Clone)]
pub(crate) enum Action {
    Header {
        name: HeaderName,
        value: HeaderValue,
    },
    Aws(AwsSpec),
}

/// Headers that must not be replaced by a credential: they frame or route the request, and
/// rewriting them would change what is sent rather than who is sending it.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
];

impl CredentialSpec {
    /// Checks the spec and turns it into the form `Injector` uses. Errors name the
    /// credential and the field, never the value.
    pub(crate) fn compile(&self) -> Result<(Vec<Glob>, Action), CredentialError> {
        let name = &self.name;
        let err = |msg: String| {
            Err(CredentialError::Config(format!(
                "credential {name:?}: {msg}"
            )))
        };
        if name.trim().is_empty() {
            return Err(CredentialError::Config(
                "a credential has an empty name".into(),
            ));
        }
        if self.hosts.is_empty() {
            return err("hosts must list at least one host glob".into());
        }
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for h in &self.hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let glob = (!h.contains(['/', ' ', ':']))
                .then(|| Glob::new(&h, true).ok())
                .flatten();
            let Some(glob) = glob else {
                return err(format!(
                    "hosts entry {h:?} is not a host glob (no scheme, port or path)"
                ));
            };
            hosts.push(glob);
        }
        let action = match (&self.header, &self.value, &self.aws) {
            (Some(header), Some(value), None) => {
                let Ok(hname) = HeaderName::from_bytes(header.trim().as_bytes()) else {
                    return err(format!("header {header:?} is not a valid header name"));
                };
                if FORBIDDEN_HEADERS.contains(&hname.as_str()) {
                    return err(format!("header {header:?} cannot carry a credential"));
                }
                if value.is_empty() {
                    return err("value is empty".into());
                }
                let Ok(mut hvalue) = HeaderValue::from_str(value.expose()) else {
                    // Deliberately not echoing the value.
                    return err(
                        "value is not a valid header value (control characters or non-ASCII)"
                            .into(),
                    );
                };
                // Keeps hyper/h2 from indexing it in HPACK tables and marks it for redaction.
                hvalue.set_sensitive(true);
                Action::Header {
                    name: hname,
                    value: hvalue,
                }
            }
            (None, None, Some(aws)) => {
                if aws.access_key_id.is_empty() || aws.secret_access_key.is_empty() {
                    return err(
                        "aws.access_key_id and aws.secret_access_key must not be empty".into(),
                    );
                }
                if !aws
                    .access_key_id
                    .expose()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric())
                {
                    return err("aws.access_key_id must be alphanumeric".into());
                }
                if let Some(token) = &aws.session_token
                    && HeaderValue::from_str(token.expose()).is_err()
                {
                    return err("aws.session_token is not a valid header value".into());
                }
                Action::Aws(aws.clone())
            }
            (Some(_), None, None) => return err("header is set but value is missing".into()),
            (None, Some(_), None) => return err("value is set but header is missing".into()),
            (None, None, None) => return err("set either header + value, or aws".into()),
            _ => return err("set either header + value, or aws, not both".into()),
        };
        Ok((hosts, action))
    }

    /// Every secret value of this spec, for redaction elsewhere. For a header value of the
    /// form `Scheme token` the bare token is listed too, so `sk_live_…` is redacted even when
    /// it shows up without its `Bearer ` prefix.
    pub(crate) fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = &self.value {
            let v = v.expose().trim();
            out.push(v.to_owned());
            if let Some((_, token)) = v.split_once(' ') {
                let token = token.trim();
                if token.len() >= 8 {
                    out.push(token.to_owned());
                }
            }
        }
        if let Some(aws) = &self.aws {
            out.push(aws.access_key_id.expose().to_owned());
            out.push(aws.secret_access_key.expose().to_owned());
            if let Some(t) = &aws.session_token {
                out.push(t.expose().to_owned());
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}
