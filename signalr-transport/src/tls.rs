//! TLS for every transport: rustls with the aws-lc-rs provider.
//!
//! One `rustls::ClientConfig` serves negotiate, SSE, long polling (through reqwest) and the
//! WebSocket upgrade, so a connection is never half verified: verification is on by default
//! for all of them, and [`TlsOptions::danger_accept_invalid_certs`] turns it off for all of them.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::error::Result;
#[cfg(not(feature = "rustls"))]
use crate::error::TransportError;

/// Which certificates to trust.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Root certificates (DER) trusted in addition to Mozilla's (webpki-roots): a private CA,
    /// or a test server's self-signed certificate.
    pub extra_roots: Vec<Vec<u8>>,
    /// Accept any certificate, on every transport. For tests against servers with throwaway
    /// certificates only: it makes TLS worthless against an active attacker.
    pub danger_accept_invalid_certs: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("extra_roots", &self.extra_roots.len())
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .finish()
    }
}

impl TlsOptions {
    /// Trusts `der` (a DER certificate) as a root as well.
    #[must_use]
    pub fn extra_root(mut self, der: Vec<u8>) -> Self {
        self.extra_roots.push(der);
        self
    }

    /// Turns certificate verification off (tests only).
    #[must_use]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.danger_accept_invalid_certs = accept;
        self
    }
}

/// The bytes under a WebSocket: plain TCP or TLS over TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "rustls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(feature = "rustls")]
mod imp {
    use std::sync::Arc;

    use rustls::{
        ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::CryptoProvider,
        pki_types::{CertificateDer, ServerName, UnixTime},
    };

    use super::TlsOptions;
    use crate::error::{Result, TransportError};

    /// Accepts any certificate but still checks handshake signatures.
    #[derive(Debug)]
    struct AcceptAny(Arc<CryptoProvider>);

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
                &self.0.signature_verification_algorithms,
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
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError::Http {
            what: "TLS setup",
            source: Box::new(e),
        }
    }

    pub(crate) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let mut config = if options.danger_accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            for der in &options.extra_roots {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(tls_error)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        // HTTP/1.1 everywhere: WebSocket upgrades need it, and reqwest is built without HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    pub(crate) async fn wrap(
        tcp: tokio::net::TcpStream,
        host: &str,
        options: &TlsOptions,
    ) -> Result<super::Stream> {
        let name = ServerName::try_from(host.to_owned()).map_err(tls_error)?;
        let connector = tokio_rustls::TlsConnector::from(client_config(options)?);
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError::WebSocket(e.into()))?;
        Ok(super::Stream::Tls(Box::new(stream)))
    }
}

#[cfg(feature = "rustls")]
pub(crate) use imp::client_config;

/// Wraps `tcp` in TLS for `host`.
pub(crate) async fn connect_tls(
    tcp: TcpStream,
    host: &str,
    options: &TlsOptions,
) -> Result<Stream> {
    #[cfg(feature = "rustls")]
    {
        imp::wrap(tcp, host, options).await
    }
    #[cfg(not(feature = "rustls"))]
    {
        let _ = (tcp, options);
        Err(TransportError::InvalidUrl {
            url: host.to_owned(),
            reason: "TLS needs the `rustls` feature".into(),
        })
    }
}
