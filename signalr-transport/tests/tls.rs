//! TLS on every transport: a test CA and a TLS-terminating proxy (tokio-rustls) in front of the
//! plain test server. Verification is on by default, extra roots are honoured, a wrong host or
//! an unknown CA fails, and the one opt-out applies to every transport.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use signalr_protocol::{TransferFormat, TransportKind};
use signalr_testserver::{ServerConfig, TestServer};
use signalr_transport::{HttpOptions, Identity, TlsOptions, TransportError, connect};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    ca_der: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
}

/// A CA, and a server certificate it signs for `names`.
fn pki(names: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .unwrap();
    Pki {
        ca_der: ca.der().to_vec(),
        server: Arc::new(server),
    }
}

/// Terminates TLS on a new port and forwards the bytes to `upstream`; returns the https URL.
async fn tls_proxy(pki: &Pki, upstream: std::net::SocketAddr, path: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&pki.server));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://127.0.0.1:{port}{path}")
}

async fn setup(names: &[&str]) -> (TestServer, Pki, String) {
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let pki = pki(names);
    let url = tls_proxy(&pki, server.local_addr(), "/hub").await;
    (server, pki, url)
}

fn handshake() -> bytes::Bytes {
    let mut out = bytes::BytesMut::new();
    signalr_protocol::HandshakeRequest::new("json", 1).encode(&mut out);
    out.freeze()
}

#[tokio::test]
async fn every_transport_over_tls_with_an_extra_root() {
    let (_server, pki, url) = setup(&["127.0.0.1"]).await;
    let trusted = HttpOptions::default().tls(TlsOptions::default().extra_root(pki.ca_der.clone()));
    for kind in TransportKind::ALL {
        let mut conn = connect(
            &url,
            TransferFormat::Text,
            &trusted.clone().transports([kind]),
        )
        .await
        .unwrap();
        conn.transport.send(handshake()).await.unwrap();
        let first = conn.transport.recv().await.unwrap().unwrap();
        assert!(first.starts_with(b"{}\x1e"), "{kind:?}: {first:?}");
        conn.transport.close().await.unwrap();
    }
    // wss:// given directly, without negotiate.
    let ws = trusted.clone().skip_negotiation(true);
    let mut conn = connect(
        &url.replace("https://", "wss://"),
        TransferFormat::Text,
        &ws,
    )
    .await
    .unwrap();
    conn.transport.send(handshake()).await.unwrap();
    assert!(
        conn.transport
            .recv()
            .await
            .unwrap()
            .unwrap()
            .starts_with(b"{}\x1e")
    );
}

#[tokio::test]
async fn verification_is_on_by_default() {
    let (_server, _pki, url) = setup(&["127.0.0.1"]).await;
    // Unknown CA: negotiate fails, typed and not retryable.
    let err = connect(&url, TransferFormat::Text, &HttpOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::UntrustedCertificate { .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
    // The WebSocket path verifies too.
    let ws = HttpOptions::default().skip_negotiation(true);
    let err = connect(
        &url.replace("https://", "wss://"),
        TransferFormat::Text,
        &ws,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::UntrustedCertificate { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let (_server, pki, url) = setup(&["example.com"]).await;
    let trusted = HttpOptions::default().tls(TlsOptions::default().extra_root(pki.ca_der.clone()));
    let err = connect(&url, TransferFormat::Text, &trusted)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::UntrustedCertificate { detail, .. } if detail.contains("NotValidForName")),
        "{err:?}"
    );
    let ws = trusted.skip_negotiation(true);
    let err = connect(
        &url.replace("https://", "wss://"),
        TransferFormat::Text,
        &ws,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TransportError::UntrustedCertificate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_one_opt_out_covers_every_transport() {
    let (_server, _pki, url) = setup(&["example.com"]).await;
    let anything =
        HttpOptions::default().tls(TlsOptions::default().danger_accept_invalid_certs(true));
    for kind in TransportKind::ALL {
        let mut conn = connect(
            &url,
            TransferFormat::Text,
            &anything.clone().transports([kind]),
        )
        .await
        .unwrap();
        conn.transport.send(handshake()).await.unwrap();
        assert!(
            conn.transport
                .recv()
                .await
                .unwrap()
                .unwrap()
                .starts_with(b"{}\x1e"),
            "{kind:?}"
        );
    }
}

/// The test server serving TLS itself, requiring client certificates from its own CA.
async fn mutual_tls_server() -> (TestServer, signalr_testserver::pki::TestPki) {
    let pki = signalr_testserver::pki::TestPki::generate(&["127.0.0.1"]);
    let mut config = ServerConfig::default();
    config.tls = Some(
        signalr_testserver::ServerTls::new(pki.server_cert_pem.clone(), pki.server_key_pem.clone())
            .require_client_certificates(pki.ca_pem.clone()),
    );
    (TestServer::start(config).await.unwrap(), pki)
}

#[tokio::test]
async fn mutual_tls_on_every_transport() {
    let (server, pki) = mutual_tls_server().await;
    assert!(server.url().starts_with("https://"));
    let identity = Identity::from_pem(pki.client_identity_pem("alice").as_bytes()).unwrap();
    let options = HttpOptions::default().tls(
        TlsOptions::default()
            .extra_root(pki.ca_der.clone())
            .identity(identity),
    );
    for kind in TransportKind::ALL {
        let mut conn = connect(
            server.url(),
            TransferFormat::Text,
            &options.clone().transports([kind]),
        )
        .await
        .unwrap();
        conn.transport.send(handshake()).await.unwrap();
        let first = conn.transport.recv().await.unwrap().unwrap();
        assert!(first.starts_with(b"{}\x1e"), "{kind:?}: {first:?}");
        conn.transport.close().await.unwrap();
    }
}

#[tokio::test]
async fn without_a_client_certificate_the_refusal_is_typed_and_final() {
    let (server, pki) = mutual_tls_server().await;
    let trusting = TlsOptions::default().extra_root(pki.ca_der.clone());
    let check = |err: TransportError| {
        assert!(
            matches!(&err, TransportError::CertificateRejected { alert, .. } if alert == "CertificateRequired"),
            "{err:?}"
        );
        assert!(!err.is_retryable(), "{err}");
    };
    check(
        connect(
            server.url(),
            TransferFormat::Text,
            &HttpOptions::default().tls(trusting.clone()),
        )
        .await
        .unwrap_err(),
    );
    let ws = HttpOptions::default()
        .tls(trusting.clone())
        .skip_negotiation(true)
        .transports([TransportKind::WebSockets]);
    check(
        connect(
            &server.url().replace("https://", "wss://"),
            TransferFormat::Text,
            &ws,
        )
        .await
        .unwrap_err(),
    );
    // An identity from another CA: refused too, with the server's alert.
    let stranger = signalr_testserver::pki::TestPki::generate(&["127.0.0.1"]);
    let identity = Identity::from_pem(stranger.client_identity_pem("mallory").as_bytes()).unwrap();
    let err = connect(
        server.url(),
        TransferFormat::Text,
        &HttpOptions::default().tls(trusting.identity(identity)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, TransportError::CertificateRejected { .. }) && !err.is_retryable(),
        "{err:?}"
    );
}

#[test]
fn identities_are_checked_when_read() {
    let pki = signalr_testserver::pki::TestPki::generate(&["127.0.0.1"]);
    let pem = pki.client_identity_pem("alice");
    assert!(Identity::from_pem(pem.as_bytes()).is_ok());
    let (cert, key) = pem.split_at(pem.find("-----BEGIN PRIVATE KEY").unwrap());
    assert!(Identity::from_pem_parts(cert.as_bytes(), key.as_bytes()).is_ok());
    for (bad, want) in [
        (cert, "no PRIVATE KEY block"),
        (key, "no CERTIFICATE block"),
        ("", "no CERTIFICATE block"),
    ] {
        let err = Identity::from_pem(bad.as_bytes()).unwrap_err();
        assert!(
            matches!(err, TransportError::InvalidIdentity { .. }) && err.to_string().contains(want),
            "{err}"
        );
    }
    // Debug never shows the key.
    let shown = format!("{:?}", Identity::from_pem(pem.as_bytes()).unwrap());
    assert!(!shown.contains("PRIVATE"), "{shown}");
}
