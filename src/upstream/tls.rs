//! Upstream TLS trust: system roots plus `upstream.ca_files` — always verified.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The system's trusted roots as PEM blocks (for `ca-bundle.pem`).
pub fn system_root_pems() -> Vec<String> {
    let result = rustls_native_certs::load_native_certs();
    result
        .certs
        .iter()
        .map(|c| der_to_pem(c.as_ref()))
        .collect()
}

fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Client config for upstream connections; ALPN is set by hyper-rustls.
pub fn client_config(ca_files: &[impl AsRef<Path>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for file in ca_files {
        let file = file.as_ref();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("upstream.ca_files: {}: {e}", file.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("upstream.ca_files: {}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "upstream.ca_files: {}: no certificate found",
                file.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("upstream.ca_files: {}: {e}", file.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(Arc::new(roots))
        .with_no_client_auth();
    Ok(config)
}
