//! `wss://` through rustls, with the ring provider and the webpki root certificates.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::BuildError;

/// A rustls client config trusting the webpki roots plus `extra_roots` (DER certificates).
///
/// The provider is named explicitly, so the config builds even when another crate in the
/// program turns on a second rustls provider.
pub(crate) fn client_config(extra_roots: &[Vec<u8>]) -> Result<Arc<ClientConfig>, BuildError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra_roots {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|err| BuildError::InvalidCertificate(err.to_string()))?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| BuildError::InvalidCertificate(err.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens TLS to `host` over `tcp`.
pub(crate) async fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|err| format!("`{host}` is not a valid TLS server name: {err}"))?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|err| format!("TLS handshake failed: {err}"))
}
