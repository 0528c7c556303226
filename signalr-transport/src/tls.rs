//! TLS for every transport: rustls with the aws-lc-rs provider.
//!
//! One `rustls::ClientConfig` serves negotiate, SSE, long polling (through reqwest), the
//! WebSocket upgrade and an `https` proxy, so a connection is never half verified: verification
//! is on by default for all of them, and [`TlsOptions::danger_accept_invalid_certs`] turns it off
//! for all of them. The same config presents the client identity, when one is set, to every
//! server that asks.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::error::{BoxError, Result, TransportError};

/// Which root certificates to trust, besides [`TlsOptions::extra_roots`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Roots {
    /// The operating system's trust store (through `rustls-platform-verifier`, as reqwest):
    /// the roots an administrator installed, such as a TLS-inspecting corporate proxy's, are
    /// trusted as in a browser or the .NET client. On Linux that is the distribution's store
    /// (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`); on macOS, Windows and Android the
    /// platform's own verifier decides. The default.
    #[default]
    Platform,
    /// Mozilla's roots, compiled in (webpki-roots): the same on every machine, and what the
    /// Node.js client trusts.
    Mozilla,
    /// Only [`TlsOptions::extra_roots`].
    None,
}

/// A client certificate chain and its private key, for mutual TLS.
#[derive(Clone)]
pub struct Identity {
    #[cfg(feature = "rustls")]
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    #[cfg(feature = "rustls")]
    key: std::sync::Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Identity");
        #[cfg(feature = "rustls")]
        d.field("certificates", &self.chain.len());
        d.finish_non_exhaustive()
    }
}

fn pem_error(reason: impl fmt::Display) -> TransportError {
    TransportError::InvalidIdentity {
        reason: reason.to_string(),
    }
}

impl Identity {
    /// Reads a PEM file's worth of text holding the certificate chain (leaf first) and the
    /// private key (PKCS#8, PKCS#1 or SEC1), in any order: what `cat cert.pem key.pem` gives.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        Self::from_pem_parts(pem, pem)
    }

    /// Reads the certificate chain (leaf first) and the private key from separate PEM texts.
    pub fn from_pem_parts(certificates: &[u8], key: &[u8]) -> Result<Self> {
        #[cfg(feature = "rustls")]
        {
            use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
            let chain = CertificateDer::pem_slice_iter(certificates)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(pem_error)?;
            if chain.is_empty() {
                return Err(pem_error("no CERTIFICATE block"));
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => pem_error("no PRIVATE KEY block"),
                other => pem_error(other),
            })?;
            Ok(Self {
                chain,
                key: std::sync::Arc::new(key),
            })
        }
        #[cfg(not(feature = "rustls"))]
        {
            let _ = (certificates, key);
            Err(pem_error("client certificates need the `rustls` feature"))
        }
    }
}

/// Which certificates to trust, and which to present.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// The root store ([`Roots::Platform`], the operating system's, by default).
    pub roots: Roots,
    /// Root certificates (DER) trusted as well: a private CA, or a test server's self-signed
    /// certificate.
    pub extra_roots: Vec<Vec<u8>>,
    /// A client certificate for servers that ask for one (mutual TLS); none by default.
    pub identity: Option<Identity>,
    /// Accept any certificate, on every transport. For tests against servers with throwaway
    /// certificates only: it makes TLS worthless against an active attacker.
    pub danger_accept_invalid_certs: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("roots", &self.roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("identity", &self.identity)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .finish()
    }
}

impl TlsOptions {
    /// Sets the root store.
    #[must_use]
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// Trusts `der` (a DER certificate) as a root as well.
    #[must_use]
    pub fn extra_root(mut self, der: Vec<u8>) -> Self {
        self.extra_roots.push(der);
        self
    }

    /// Trusts every certificate in `pem` (PEM text: a CA bundle, or one CA) as a root as well.
    pub fn extra_roots_pem(self, pem: &[u8]) -> Result<Self> {
        #[cfg(feature = "rustls")]
        {
            use rustls::pki_types::{CertificateDer, pem::PemObject as _};
            let mut this = self;
            let before = this.extra_roots.len();
            for cert in CertificateDer::pem_slice_iter(pem) {
                this.extra_roots.push(cert.map_err(pem_error)?.to_vec());
            }
            if this.extra_roots.len() == before {
                return Err(pem_error("no CERTIFICATE block"));
            }
            Ok(this)
        }
        #[cfg(not(feature = "rustls"))]
        {
            let _ = (self, pem);
            Err(pem_error("TLS needs the `rustls` feature"))
        }
    }

    /// Presents `identity` to servers that ask for a client certificate.
    #[must_use]
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Turns certificate verification off (tests only).
    #[must_use]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.danger_accept_invalid_certs = accept;
        self
    }
}

/// The bytes under a WebSocket: TCP, TLS over TCP, or TLS inside a TLS tunnel (`wss` through
/// an `https` proxy).
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    #[cfg(feature = "rustls")]
    TlsInTls(Box<tokio_rustls::client::TlsStream<tokio_rustls::client::TlsStream<TcpStream>>>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            #[cfg(feature = "rustls")]
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            #[cfg(feature = "rustls")]
            Stream::TlsInTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// The TLS configuration of one connection (nothing without the `rustls` feature).
#[derive(Clone, Debug)]
pub(crate) struct Config {
    #[cfg(feature = "rustls")]
    pub(crate) rustls: std::sync::Arc<rustls::ClientConfig>,
}

#[cfg(feature = "rustls")]
mod imp {
    use std::sync::Arc;

    use rustls::{
        ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
        client::{
            WebPkiServerVerifier,
            danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        },
        crypto::CryptoProvider,
        pki_types::{CertificateDer, ServerName, UnixTime},
    };
    use tokio::io::{AsyncRead, AsyncWrite};

    use super::{Roots, TlsOptions};
    use crate::error::{Result, TransportError};

    /// Accepts any certificate but still checks handshake signatures.
    #[derive(Debug)]
    struct AcceptAny(Arc<CryptoProvider>);

    /// Refuses every certificate, saying why no verifier could be built (an operating system
    /// without a trust store): plain `http` still works, `https` fails with this reason.
    #[derive(Debug)]
    struct Unusable {
        provider: Arc<CryptoProvider>,
        reason: String,
    }

    /// The signature checks of a verifier that has a `provider()`.
    macro_rules! signatures {
        () => {
            fn verify_tls12_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls12_signature(
                    message,
                    cert,
                    dss,
                    &self.provider().signature_verification_algorithms,
                )
            }

            fn verify_tls13_signature(
                &self,
                message: &[u8],
                cert: &CertificateDer<'_>,
                dss: &DigitallySignedStruct,
            ) -> Result<HandshakeSignatureValid, rustls::Error> {
                rustls::crypto::verify_tls13_signature(
                    message,
                    cert,
                    dss,
                    &self.provider().signature_verification_algorithms,
                )
            }

            fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
                self.provider()
                    .signature_verification_algorithms
                    .supported_schemes()
            }
        };
    }

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        signatures!();
    }

    impl AcceptAny {
        fn provider(&self) -> &CryptoProvider {
            &self.0
        }
    }

    impl Unusable {
        fn provider(&self) -> &CryptoProvider {
            &self.provider
        }
    }

    impl ServerCertVerifier for Unusable {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Err(rustls::Error::General(self.reason.clone()))
        }

        signatures!();
    }

    fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError::Http {
            what: "TLS setup",
            source: Box::new(e),
        }
    }

    fn verifier(
        options: &TlsOptions,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ServerCertVerifier>> {
        if options.danger_accept_invalid_certs {
            return Ok(Arc::new(AcceptAny(Arc::clone(provider))));
        }
        let extra = options
            .extra_roots
            .iter()
            .map(|der| CertificateDer::from(der.clone()));
        let mut roots = RootCertStore::empty();
        match options.roots {
            Roots::Platform => {
                return Ok(
                    match rustls_platform_verifier::Verifier::new_with_extra_roots(
                        extra,
                        Arc::clone(provider),
                    ) {
                        Ok(v) => Arc::new(v),
                        // A bad extra root is the caller's mistake; an empty system store is
                        // the machine's, and must not break plain-http connections.
                        Err(rustls::Error::General(reason)) => Arc::new(Unusable {
                            provider: Arc::clone(provider),
                            reason: format!(
                                "no trusted roots: {reason} (install the operating system's CA certificates, or use Roots::Mozilla)"
                            ),
                        }),
                        Err(e) => return Err(tls_error(e)),
                    },
                );
            }
            Roots::Mozilla => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            _ => {}
        }
        for der in extra {
            roots.add(der).map_err(tls_error)?;
        }
        if roots.is_empty() {
            return Ok(Arc::new(Unusable {
                provider: Arc::clone(provider),
                reason: "no trusted roots: Roots::None and no extra roots".into(),
            }));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map(|v| v as Arc<dyn ServerCertVerifier>)
            .map_err(tls_error)
    }

    /// What a configuration was built from: equal keys build equal configurations.
    #[derive(PartialEq)]
    struct Key {
        roots: Roots,
        extra_roots: Vec<Vec<u8>>,
        danger: bool,
        /// The identity's chain, and its key by address (clones of an [`Identity`] share it).
        identity: Option<(Vec<CertificateDer<'static>>, usize)>,
    }

    impl Key {
        fn of(options: &TlsOptions) -> Self {
            Self {
                roots: options.roots,
                extra_roots: options.extra_roots.clone(),
                danger: options.danger_accept_invalid_certs,
                identity: options
                    .identity
                    .as_ref()
                    .map(|i| (i.chain.clone(), Arc::as_ptr(&i.key) as usize)),
            }
        }
    }

    /// Configurations in use, shared by every connection built with the same options: a
    /// platform verifier holds the whole system store (about 100 KiB), which 10,000
    /// connections must not each copy. Entries go when their last user does.
    static CACHE: std::sync::Mutex<Vec<(Key, std::sync::Weak<ClientConfig>)>> =
        std::sync::Mutex::new(Vec::new());

    pub(crate) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
        let key = Key::of(options);
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(config) = cache
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(config);
        }
        let config = build(options)?;
        cache.push((key, Arc::downgrade(&config)));
        Ok(config)
    }

    fn build(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier(options, &provider)?);
        let mut config = match &options.identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|e| TransportError::InvalidIdentity {
                    reason: e.to_string(),
                })?,
            None => builder.with_no_client_auth(),
        };
        // HTTP/1.1 everywhere: WebSocket upgrades need it, and reqwest is built without HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// TLS over `io` to `host`.
    pub(crate) async fn wrap<IO>(
        io: IO,
        host: &str,
        config: &Arc<ClientConfig>,
    ) -> Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        // IPv6 literals come bracketed in URLs; the TLS server name is the bare address.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned()).map_err(tls_error)?;
        tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, io)
            .await
            .map_err(|e| super::classify("TLS handshake", e.into()))
    }
}

#[cfg(feature = "rustls")]
pub(crate) use imp::{client_config, wrap};

/// The TLS configuration for `options`.
#[cfg_attr(not(feature = "rustls"), allow(clippy::unnecessary_wraps))]
pub(crate) fn config(options: &TlsOptions) -> Result<Config> {
    #[cfg(not(feature = "rustls"))]
    let _ = options;
    Ok(Config {
        #[cfg(feature = "rustls")]
        rustls: client_config(options)?,
    })
}

/// Wraps `tcp` in TLS for `host`, or TLS inside a TLS tunnel.
pub(crate) async fn connect_tls(stream: Stream, host: &str, config: &Config) -> Result<Stream> {
    #[cfg(feature = "rustls")]
    {
        Ok(match stream {
            Stream::Plain(tcp) => Stream::Tls(Box::new(wrap(tcp, host, &config.rustls).await?)),
            Stream::Tls(tunnel) => {
                Stream::TlsInTls(Box::new(wrap(*tunnel, host, &config.rustls).await?))
            }
            Stream::TlsInTls(_) => {
                return Err(TransportError::WebSocket(
                    "TLS nested more than twice".into(),
                ));
            }
        })
    }
    #[cfg(not(feature = "rustls"))]
    {
        let _ = (stream, config);
        Err(TransportError::InvalidUrl {
            url: host.to_owned(),
            reason: "TLS needs the `rustls` feature".into(),
        })
    }
}

/// What a TLS failure somewhere in an error's causes means to the caller.
#[cfg(feature = "rustls")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// We did not accept the server's certificate.
    Untrusted,
    /// The server did not accept ours, or wanted one and got none.
    Rejected,
}

/// The TLS failure among `e`'s causes, if any. `io::Error` hides its payload from `source()`
/// (it returns the payload's own source), so each one's payload is walked too.
#[cfg(feature = "rustls")]
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<(Failure, String)> {
    use rustls::{AlertDescription as A, Error as E};
    // Errors still to look at; bounded, since a cause chain could in principle be long.
    let mut todo = vec![e];
    let mut seen = 0;
    while let Some(e) = todo.pop() {
        seen += 1;
        if seen > 64 {
            break;
        }
        match e.downcast_ref::<E>() {
            Some(E::InvalidCertificate(c)) => return Some((Failure::Untrusted, format!("{c:?}"))),
            Some(E::General(reason)) if reason.starts_with("no trusted roots") => {
                return Some((Failure::Untrusted, reason.clone()));
            }
            Some(E::AlertReceived(
                alert @ (A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::UnsupportedCertificate
                | A::AccessDenied
                // What rustls answers a certificate whose issuer's signature does not verify.
                | A::DecryptError),
            )) => return Some((Failure::Rejected, format!("{alert:?}"))),
            _ => {}
        }
        if let Some(payload) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            todo.push(payload);
        }
        if let Some(next) = e.source() {
            todo.push(next);
        }
    }
    None
}

/// `e` as a TLS error when a certificate was refused on either side, or as a failure of
/// `what` otherwise.
pub(crate) fn classify(what: &'static str, e: BoxError) -> TransportError {
    #[cfg(feature = "rustls")]
    if let Some((failure, detail)) = tls_failure(e.as_ref()) {
        return match failure {
            Failure::Untrusted => TransportError::UntrustedCertificate { detail, source: e },
            Failure::Rejected => TransportError::CertificateRejected {
                alert: detail,
                source: e,
            },
        };
    }
    if what == "TLS handshake" {
        return TransportError::WebSocket(e);
    }
    TransportError::Http { what, source: e }
}
