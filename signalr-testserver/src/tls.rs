//! Serving `https`/`wss` (rustls, aws-lc-rs), optionally requiring client certificates, and a
//! throwaway PKI to test with.

use std::{
    fmt, io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// TLS settings: the server's certificate and key, and the CA that client certificates must
/// chain to when they are required.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerTls {
    /// The certificate chain, PEM, leaf first.
    pub cert_chain_pem: Vec<u8>,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: Vec<u8>,
    /// Require a client certificate signed by one of these CAs (PEM); none required when
    /// `None`.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// TLS with this certificate chain and key (PEM), no client certificates.
    pub fn new(cert_chain_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            cert_chain_pem: cert_chain_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        }
    }

    /// Requires client certificates signed by the CAs in `pem`.
    #[must_use]
    pub fn require_client_certificates(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }
}

fn invalid(what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what}: {e}"))
}

/// The rustls configuration for `tls`.
pub(crate) fn server_config(tls: &ServerTls) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_slice_iter(&tls.cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("TLS certificate", e))?;
    if chain.is_empty() {
        return Err(invalid("TLS certificate", "no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| invalid("TLS key", e))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS", e))?;
    let builder = match &tls.client_ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.map_err(|e| invalid("client CA", e))?)
                    .map_err(|e| invalid("client CA", e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid("client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid("TLS certificate and key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection to the server: plain, or TLS.
#[derive(Debug)]
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How long a TLS handshake may take before the connection is dropped (a slowloris guard).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections, with TLS when configured. Handshakes run on their own tasks, so a
/// client that never finishes one holds up nobody else.
pub(crate) struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Option<(Io, std::net::SocketAddr)>>,
}

impl Listener {
    pub(crate) fn new(tcp: TcpListener, tls: Option<Arc<ServerConfig>>) -> Self {
        Self {
            tcp,
            tls: tls.map(TlsAcceptor::from),
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Io;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    let (tcp, addr) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: wait a little, as axum does.
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // No Nagle: a small frame (a Completion, a Ping) must not wait for the ACK
                    // of the one before it, which the client may delay.
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                    let Some(acceptor) = &self.tls else {
                        return (Io::Plain(tcp), addr);
                    };
                    let acceptor = acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => Some((Io::Tls(Box::new(tls)), addr)),
                            Ok(Err(e)) => {
                                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%addr, "TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A throwaway PKI for tests: a CA, a server certificate it signs, and client identities.
///
/// ```
/// use signalr_testserver::{ServerConfig, ServerTls, pki::TestPki};
///
/// let pki = TestPki::generate(&["127.0.0.1", "localhost"]);
/// let mut config = ServerConfig::default();
/// config.tls = Some(
///     ServerTls::new(pki.server_cert_pem.clone(), pki.server_key_pem.clone())
///         .require_client_certificates(pki.ca_pem.clone()),
/// );
/// let client_identity_pem = pki.client_identity_pem("alice"); // certificate + key
/// # let _ = (config, client_identity_pem);
/// ```
pub mod pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };

    /// A CA and a server certificate signed by it, all PEM.
    #[non_exhaustive]
    pub struct TestPki {
        /// The CA certificate: trust it in clients, require it of client certificates.
        pub ca_pem: String,
        /// The CA certificate, DER.
        pub ca_der: Vec<u8>,
        /// The server's certificate chain (leaf, then the CA).
        pub server_cert_pem: String,
        /// The server's private key.
        pub server_key_pem: String,
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl std::fmt::Debug for TestPki {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TestPki").finish_non_exhaustive()
        }
    }

    impl TestPki {
        /// A new CA and a server certificate for `names` (DNS names or IP addresses).
        ///
        /// # Panics
        ///
        /// When key generation fails, which rcgen's aws-lc-rs backend does not do for its
        /// default key type.
        #[allow(clippy::missing_panics_doc, clippy::expect_used)]
        pub fn generate(names: &[&str]) -> Self {
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "signalr-testserver test CA");
            let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key"))
                .expect("CA");
            let key = KeyPair::generate().expect("key");
            let mut params =
                CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                    .expect("server params");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let leaf = params.signed_by(&key, &ca).expect("server certificate");
            Self {
                ca_pem: ca.pem(),
                ca_der: ca.der().to_vec(),
                server_cert_pem: format!("{}{}", leaf.pem(), ca.pem()),
                server_key_pem: key.serialize_pem(),
                issuer: ca,
            }
        }

        /// A client certificate for `name`, signed by the CA, and its key: one PEM text.
        #[allow(clippy::missing_panics_doc, clippy::expect_used)]
        pub fn client_identity_pem(&self, name: &str) -> String {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params
                .signed_by(&key, &self.issuer)
                .expect("client certificate");
            format!("{}{}", cert.pem(), key.serialize_pem())
        }
    }
}
