//! HTTPS served directly (`[http.tls]`): the certificate chain and key are read at start-up
//! and again on SIGHUP, so a renewed certificate (certbot, acme.sh, a Kubernetes secret) is
//! picked up without dropping a session. A reload that fails keeps the certificate in use.

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (e.g. certbot's `fullchain.pem`).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; e.g. certbot's `privkey.pem`).
    pub key_file: PathBuf,
}

impl TlsConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.cert_file.as_os_str().is_empty() {
            return Err(("http.tls.cert_file", "must name a PEM file".into()));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(("http.tls.key_file", "must name a PEM file".into()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("http.tls.cert_file {0}: {1}")]
    Cert(PathBuf, String),
    #[error("http.tls.key_file {0}: {1}")]
    Key(PathBuf, String),
    #[error("http.tls: the certificate does not go with the key: {0}")]
    Mismatch(String),
}

/// The certificate being served, swappable while connections use the old one.
pub struct TlsCertificates {
    config: TlsConfig,
    current: ArcSwap<rustls::ServerConfig>,
}

impl TlsCertificates {
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(TlsCertificates {
            current: ArcSwap::from_pointee(server_config(config)?),
            config: config.clone(),
        }))
    }

    /// Read the files again; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(server_config(&self.config)?));
        Ok(())
    }

    /// What accepts the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

fn server_config(config: &TlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_chain(&config.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| TlsError::Key(config.key_file.clone(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |m: String| TlsError::Cert(path.to_owned(), m);
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if chain.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(chain)
}

/// Reload the certificate on every SIGHUP until the returned task is aborted.
pub fn spawn_sighup_reload(
    certs: Arc<TlsCertificates>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!(
                    error = %e,
                    "TLS certificate reload failed; still serving the previous one"
                ),
            }
        }
    }))
}
