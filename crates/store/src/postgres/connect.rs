//! Connecting: the `store.postgres` URL (its `sslrootcert` parameter is read
//! here, the rest by tokio-postgres), TLS through rustls (ring) with the
//! server certificate always verified, the connection pool, and what a
//! failure means — the database is away (a store fault) or the statement
//! failed. No message built here contains the connection string.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// Connections each replica keeps to the database.
const POOL_SIZE: usize = 16;
/// How long connecting, or waiting for a pooled connection, may take before
/// the database counts as unreachable.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to connect to, and how.
pub(super) struct Target {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: MakeRustlsConnect,
}

/// Parses the URL. `sslrootcert=PATH` adds a CA file to the trusted roots
/// (the system's and Mozilla's); `sslmode=require` then verifies the
/// server's certificate against them.
pub(super) fn target(url: &str) -> Result<Target, StoreError> {
    let invalid = |why: String| {
        StoreError::Invalid(format!(
            "store.postgres is not a usable PostgreSQL URL: {why}"
        ))
    };
    let (url, root_file) = take_param(url, "sslrootcert");
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        invalid(std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()))
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("sudomode");
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = root_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("sslrootcert {path}: {e}")))?;
        if certs.is_empty() {
            return Err(invalid(format!("sslrootcert {path}: no certificate")));
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// The URL without `name=value` in its query string, and that value
/// (percent-decoded).
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(percent_decode(v));
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, value)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pool every statement but the change listener uses.
pub(super) fn pool(target: &Target) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        target.config.clone(),
        target.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Storage(format!("PostgreSQL pool: {e}")))
}

/// A failed database operation: the database away (`fault`), or one
/// statement refused.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) fault: bool,
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            // 08: connection exceptions; 57P01-3: shutting down / starting up;
            // 53: out of resources.
            let fault = code.starts_with("08") || code.starts_with("57P") || code.starts_with("53");
            return Failure {
                message: format!("PostgreSQL: {} ({code})", db.message()),
                fault,
            };
        }
        let message = match std::error::Error::source(&e) {
            Some(s) => format!("PostgreSQL: {e}: {s}"),
            None => format!("PostgreSQL: {e}"),
        };
        let lost = ["communicating", "closed", "connecting", "timeout", "TLS"];
        let text = e.to_string();
        Failure {
            fault: lost.iter().any(|w| text.contains(w)),
            message,
        }
    }
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => Failure::from(e),
            other => Failure {
                message: format!("PostgreSQL unreachable: {other}"),
                fault: true,
            },
        }
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        if f.fault {
            StoreError::Unavailable(f.message)
        } else {
            StoreError::Storage(f.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        let (url, v) = take_param(
            "postgres://u:p@h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem",
            "sslrootcert",
        );
        assert_eq!(url, "postgres://u:p@h/db?sslmode=require");
        assert_eq!(v.as_deref(), Some("/etc/ca.pem"));
        let (url, v) = take_param("postgres://h/db", "sslrootcert");
        assert_eq!((url.as_str(), v), ("postgres://h/db", None));
    }

    #[test]
    fn a_bad_url_is_refused_without_quoting_it() {
        let url = "postgres://user:s3cr3t-pw@localhost:5432/db?sslmode=sometimes";
        let err = target(url).err().expect("refused").to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("sslmode"), "{err}");
    }
}
