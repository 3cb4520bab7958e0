//! TLS for `ledger serve`: rustls (ring), the certificate chain and key from PEM files.
//! Handshakes run in each connection's own task (`conn`), within the header-read
//! timeout, so a slow or failing client never holds up the others.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::ServeError;
use crate::config::TlsConfig;

/// The acceptor for the configured certificate and key; errors name the file.
pub(crate) fn acceptor(c: &TlsConfig) -> Result<TlsAcceptor, ServeError> {
    let bad = |path: &std::path::Path, reason: String| ServeError::File {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| bad(&c.cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&c.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&c.cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .map_err(|e| bad(&c.key, format!("not a PEM private key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(&c.cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad(&c.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
