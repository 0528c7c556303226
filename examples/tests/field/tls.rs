//! Mutual TLS: HAProxy terminating TLS with `verify required` and a test CA, and the test
//! server's own `--client-ca`; every transport passes with the identity, and without it the
//! error is typed and not retried. The operating system's trust store is honoured (here:
//! `SSL_CERT_FILE`, which the platform verifier reads on Linux).

use std::time::Duration;

use signalr_client::{
    HubError,
    protocol::TransportKind,
    reconnect::FixedDelays,
    transport::{Identity, TlsOptions, TransportError},
};
use signalr_testserver::{ServerConfig, ServerTls, TestServer, pki::TestPki};

use crate::support::{HaproxyConfig, PAIRS, builder, contract, free_port, interop_client, program};

/// The certificate a server refused, wherever the transport layer put it.
fn rejected(err: &HubError) -> bool {
    match err {
        HubError::Transport(TransportError::CertificateRejected { .. }) => true,
        HubError::Transport(TransportError::AllTransportsFailed { failures }) => failures
            .iter()
            .all(|(_, e)| matches!(e, TransportError::CertificateRejected { .. })),
        _ => false,
    }
}

#[tokio::test]
async fn haproxy_requiring_client_certificates() {
    let Some(haproxy) = program("haproxy", "haproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&["127.0.0.1"]);
    let server_pem = dir.path().join("server.pem");
    std::fs::write(
        &server_pem,
        format!("{}{}", pki.server_cert_pem, pki.server_key_pem),
    )
    .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let hub = TestServer::start(ServerConfig::default()).await.unwrap();
    let port = free_port();
    let _lb = HaproxyConfig::new()
        .frontend(
            port,
            Some(&format!(
                "ssl crt {} ca-file {} verify required",
                server_pem.display(),
                ca.display()
            )),
            "hub",
        )
        .backend("hub", &[hub.local_addr()], false)
        .start(&haproxy, dir.path(), &[port])
        .await;
    let url = format!("https://127.0.0.1:{port}/hub");
    let trust = TlsOptions::default().extra_root(pki.ca_der.clone());
    let identity = Identity::from_pem(pki.client_identity_pem("alice").as_bytes()).unwrap();
    for (transport, messagepack) in PAIRS {
        let what = format!("{transport:?}/{messagepack}");
        let conn = builder(&url, transport, messagepack)
            .with_tls(trust.clone().identity(identity.clone()))
            .build()
            .unwrap();
        conn.start()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        contract(&conn, &what).await;
        conn.stop().await.unwrap();
    }
    for transport in TransportKind::ALL {
        let conn = builder(&url, transport, false)
            .with_tls(trust.clone())
            .with_initial_start_policy(FixedDelays::from_millis(&[0; 1000]))
            .build()
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), conn.start())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: a refused certificate was retried"))
            .unwrap_err();
        assert!(rejected(&err), "{transport:?}: {err:?}");
        assert!(!err.is_retryable());
    }
}

/// The test server serving TLS and requiring client certificates of its own CA, with the CA
/// and a client identity written to `dir` (as `signalr-testserver --tls-self-signed DIR
/// --client-ca DIR/ca.pem` does).
async fn tls_server(dir: &std::path::Path) -> (TestServer, String) {
    let pki = TestPki::generate(&["127.0.0.1"]);
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.join("client.pem"), pki.client_identity_pem("cli")).unwrap();
    let mut config = ServerConfig::default();
    config.tls = Some(
        ServerTls::new(pki.server_cert_pem.clone(), pki.server_key_pem.clone())
            .require_client_certificates(pki.ca_pem.clone()),
    );
    let server = TestServer::start(config).await.unwrap();
    let url = server.url().to_owned();
    (server, url)
}

#[tokio::test]
async fn the_test_server_requires_client_certificates_and_interop_client_presents_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = tls_server(dir.path()).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = dir.path().join("ca.pem").display().to_string();
    let identity = dir.path().join("client.pem").display().to_string();
    for transport in ["ws", "sse", "lp"] {
        let (code, out, err) = interop_client(
            &[
                &url,
                transport,
                "json",
                "--root-ca",
                &ca,
                "--identity",
                &identity,
            ],
            &[],
        )
        .await;
        assert_eq!(code, 0, "{transport}: {out}\n{err}");
    }
    let (code, out, _) = interop_client(&[&url, "ws", "json", "--root-ca", &ca], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejected the TLS client certificate"), "{out}");
}

#[tokio::test]
async fn the_operating_system_trust_store_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = tls_server(dir.path()).await;
    let ca = dir.path().join("ca.pem").display().to_string();
    let identity = dir.path().join("client.pem").display().to_string();
    // The default roots are the platform's: on Linux the distribution's store, or the file
    // SSL_CERT_FILE names (as a corporate root would be installed).
    let (code, out, err) = interop_client(
        &[&url, "ws", "json", "--identity", &identity],
        &[("SSL_CERT_FILE", &ca)],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, _) = interop_client(&[&url, "ws", "json", "--identity", &identity], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("certificate is not trusted"), "{out}");
}
