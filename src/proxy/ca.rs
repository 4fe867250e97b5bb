//! The local certificate authority: created once on disk (key 0600), and leaf
//! certificates minted per host (ECDSA P-256, short-lived) and cached.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// Leaf certificates live this long (SPEC §13.6: at most 30 days).
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
/// Cached leaves are re-minted well before they expire.
const LEAF_CACHE_TTL: Duration = Duration::from_secs(86_400);
const LEAF_CACHE_CAPACITY: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Tls(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// File locations of a CA directory.
#[derive(Debug, Clone)]
pub struct CaPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl CaPaths {
    pub fn new(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca-key.pem"),
            bundle: dir.join("ca-bundle.pem"),
        }
    }
}

/// The CA and its leaf cache.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    pub paths: CaPaths,
    cache: moka::future::Cache<String, Arc<ServerConfig>>,
    issued: Arc<AtomicU64>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Creates the CA files in `dir` if absent. Returns true when created.
pub fn init(dir: &Path) -> Result<bool, CaError> {
    let paths = CaPaths::new(dir);
    let created = if paths.cert.exists() && paths.key.exists() {
        false
    } else {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&paths.key, key.serialize_pem().as_bytes())?;
        std::fs::write(&paths.cert, cert.pem()).map_err(io_err(&paths.cert))?;
        true
    };
    if created || !paths.bundle.exists() {
        write_bundle(&paths)?;
    }
    Ok(created)
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "SudoMode Local CA");
    dn.push(DnType::OrganizationName, "SudoMode");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

/// Writes a file readable only by its owner; the mode is set at creation so
/// the key is never briefly world-readable.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), CaError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(path))?;
    }
    Ok(())
}

/// `ca-bundle.pem`: our CA followed by the system roots, so that clients
/// which take one bundle still verify tunnelled hosts.
fn write_bundle(paths: &CaPaths) -> Result<(), CaError> {
    let mut bundle = std::fs::read_to_string(&paths.cert).map_err(io_err(&paths.cert))?;
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    for root in crate::upstream::tls::system_root_pems() {
        bundle.push_str(&root);
    }
    std::fs::write(&paths.bundle, bundle).map_err(io_err(&paths.bundle))
}

impl Ca {
    /// Loads the CA from `dir`, creating it first if absent.
    pub fn load_or_create(dir: &Path) -> Result<Ca, CaError> {
        init(dir)?;
        let paths = CaPaths::new(dir);
        let key_pem = std::fs::read_to_string(&paths.key).map_err(io_err(&paths.key))?;
        let cert_pem = std::fs::read_to_string(&paths.cert).map_err(io_err(&paths.cert))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        let cert_der = pem_to_der(&cert_pem)?;
        Ok(Ca {
            issuer,
            cert_der,
            paths,
            cache: moka::future::Cache::builder()
                .max_capacity(LEAF_CACHE_CAPACITY)
                .time_to_live(LEAF_CACHE_TTL)
                .build(),
            issued: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Certificates minted since start (for `/metrics`).
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Counts issued leaves into `counter` (the metrics' `sudomode_certs_issued_total`).
    pub fn counting_into(mut self, counter: Arc<AtomicU64>) -> Self {
        self.issued = counter;
        self
    }

    /// TLS server config presenting a leaf for `host` (DNS name or IP),
    /// minted once per host; concurrent first requests share one minting.
    pub async fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        let host = host.to_ascii_lowercase();
        self.cache
            .try_get_with(host.clone(), async { self.mint(&host).map(Arc::new) })
            .await
            .map_err(|e| CaError::Tls(e.to_string()))
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![host.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after =
            now + time::Duration::try_from(LEAF_VALIDITY).unwrap_or(time::Duration::days(7));
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
            .map_err(|e| CaError::Tls(e.to_string()))?;
        let chain = vec![cert.der().clone(), self.cert_der.clone()];
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        let mut config = ServerConfig::builder_with_provider(crate::tls_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        // In our order of preference; `http/1.0` for clients that offer only
        // it (`curl --http1.0`), which would otherwise fail the handshake.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        self.issued.fetch_add(1, Ordering::Relaxed);
        Ok(config)
    }
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, CaError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::Tls(format!("ca.pem: {e}")))
}

/// Human summary for `sudomode ca show`.
pub fn describe(dir: &Path) -> Result<String, CaError> {
    let paths = CaPaths::new(dir);
    let pem = std::fs::read_to_string(&paths.cert).map_err(io_err(&paths.cert))?;
    let der = pem_to_der(&pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| CaError::Tls(format!("ca.pem: {e}")))?;
    let fp = hex::encode_upper(Sha256::digest(der.as_ref()));
    let fp: Vec<String> = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Ok(format!(
        "path:        {}\nsubject:     {}\nsha256:      {}\nnot before:  {}\nnot after:   {}\n",
        paths.cert.display(),
        cert.subject(),
        fp.join(":"),
        cert.validity().not_before,
        cert.validity().not_after,
    ))
}
