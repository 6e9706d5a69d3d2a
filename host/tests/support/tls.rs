//! A certificate authority made in the test and an HTTPS server whose certificate it signs,
//! for the HTTPS-upstream tests. Keys are fresh per run (ECDSA P-256, rcgen); the server is
//! rustls with ring, like the host's client.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A throw-away CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Write the CA certificate to `dir/<file>` (an upstream's `ca_file`).
    pub fn write_pem(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).expect("write CA PEM");
        path
    }

    /// A fresh certificate for `127.0.0.1` and `localhost` signed by this CA, and its key.
    fn leaf(&self) -> (rcgen::Certificate, KeyPair) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "switchboard test server");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        (cert, key)
    }

    /// Write a fresh server certificate and its key as PEM to `dir/cert.pem` and
    /// `dir/key.pem` (overwriting: a renewal), returning both paths and the certificate (DER).
    pub fn write_server_pem(&self, dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
        let (cert, key) = self.leaf();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path, cert.der().to_vec())
    }

    /// An HTTP client that trusts this CA only.
    pub fn client(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.pem().as_bytes()).expect("CA for reqwest");
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
    }

    /// A rustls server config presenting a certificate for `127.0.0.1` and `localhost` signed
    /// by this CA.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.leaf();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        Arc::new(config)
    }
}

/// TCP accept + TLS handshake, for `axum::serve`. Failed handshakes (a client refusing our
/// certificate) are skipped, so the server keeps serving.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serve `router` over HTTPS on a free port with `config`; returns `https://127.0.0.1:<port>`.
pub async fn serve_https(router: axum::Router, config: Arc<rustls::ServerConfig>) -> String {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind https");
    let addr = tcp.local_addr().expect("https addr");
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(config),
    };
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("https serves");
    });
    format!("https://{addr}")
}
