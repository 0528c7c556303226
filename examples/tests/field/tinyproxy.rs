//! Every transport through a real forward proxy (tinyproxy), chosen by the builder or by the
//! environment exactly as reqwest reads it; the proxy's own log shows the WebSocket as a
//! `CONNECT` tunnel and the HTTP transports as forwarded requests. `NO_PROXY` bypasses it; a
//! proxy that wants credentials refuses without them (a typed error, no retries) and passes
//! with them; an `https` proxy (HAProxy terminating TLS in front of tinyproxy) carries `ws` and
//! `wss` (TLS inside TLS) as well.

use std::time::Duration;

use signalr_client::{
    HubError,
    protocol::TransportKind,
    reconnect::FixedDelays,
    transport::{Proxy, TlsOptions, TransportError},
};
use signalr_testserver::{ServerConfig, ServerTls, TestServer, pki::TestPki};

use crate::support::{
    HaproxyConfig, PAIRS, builder, contract, free_port, interop_client, program, tinyproxy,
};

/// How many lines of the proxy's log contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn every_pair_through_the_proxy_by_option() {
    let Some(tp) = program("tinyproxy", "tinyproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, port) = tinyproxy(&tp, dir.path(), &[]).await;
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let authority = server.local_addr().to_string();
    for (transport, messagepack) in PAIRS {
        let what = format!("{transport:?}/{messagepack}");
        let conn = builder(server.url(), transport, messagepack)
            .with_proxy(Proxy::url(format!("http://127.0.0.1:{port}")))
            .build()
            .unwrap();
        conn.start()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        contract(&conn, &what).await;
        conn.stop().await.unwrap();
    }
    let log = proxy.log_text();
    // Two WebSocket connections went through CONNECT tunnels, the rest as forwarded requests.
    assert_eq!(
        count(&log, &format!("CONNECT {authority} HTTP/1.1")),
        2,
        "{log}"
    );
    assert!(
        count(&log, &format!("POST http://{authority}/hub/negotiate")) >= 5,
        "{log}"
    );
    assert!(
        count(&log, &format!("GET http://{authority}/hub?id=")) >= 4,
        "{log}"
    );
    assert!(
        count(&log, &format!("POST http://{authority}/hub?id=")) >= 3,
        "{log}"
    );
}

#[tokio::test]
async fn the_environment_is_read_as_reqwest_reads_it() {
    let Some(tp) = program("tinyproxy", "tinyproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, port) = tinyproxy(&tp, dir.path(), &[]).await;
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    let authority = server.local_addr().to_string();
    let proxy_url = format!("http://127.0.0.1:{port}");
    let tunnels = |log: &str| count(log, &format!("CONNECT {authority}"));
    let forwarded = |log: &str| count(log, &format!("http://{authority}/hub"));
    // Upper case, lower case, and ALL_PROXY: the WebSocket follows them like negotiate does.
    let mut expected_tunnels = 0;
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        let (code, out, err) =
            interop_client(&[server.url(), "ws", "json"], &[(var, &proxy_url)]).await;
        assert_eq!(code, 0, "{var}: {out}\n{err}");
        expected_tunnels += 1;
        let log = proxy.log_text();
        assert_eq!(tunnels(&log), expected_tunnels, "{var}: {log}");
    }
    let (code, out, err) =
        interop_client(&[server.url(), "lp", "json"], &[("HTTP_PROXY", &proxy_url)]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let before = forwarded(&proxy.log_text());
    assert!(before > 0);
    // NO_PROXY (either case) bypasses it for every transport; so does --no-proxy.
    for env in [
        [
            ("HTTP_PROXY", proxy_url.as_str()),
            ("NO_PROXY", "127.0.0.1"),
        ],
        [
            ("http_proxy", proxy_url.as_str()),
            ("no_proxy", "127.0.0.1"),
        ],
    ] {
        for transport in ["ws", "sse", "lp"] {
            let (code, out, err) = interop_client(&[server.url(), transport, "json"], &env).await;
            assert_eq!(code, 0, "{transport}: {out}\n{err}");
        }
    }
    let (code, out, _) = interop_client(
        &[server.url(), "ws", "json", "--no-proxy"],
        &[("HTTP_PROXY", &proxy_url)],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let log = proxy.log_text();
    assert_eq!(tunnels(&log), expected_tunnels, "{log}");
    assert_eq!(forwarded(&log), before, "{log}");
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_refuses_without_them_and_passes_with_them() {
    let Some(tp) = program("tinyproxy", "tinyproxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, port) = tinyproxy(&tp, dir.path(), &["BasicAuth signalr s3cret-pass"]).await;
    let server = TestServer::start(ServerConfig::default()).await.unwrap();
    for transport in TransportKind::ALL {
        let conn = builder(server.url(), transport, false)
            .with_proxy(Proxy::url(format!("http://127.0.0.1:{port}")))
            // A policy that would retry forever: a refusal must not be retried.
            .with_initial_start_policy(FixedDelays::from_millis(&[0; 1000]))
            .build()
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), conn.start())
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: start retried a refusal"))
            .unwrap_err();
        let refused = match &err {
            HubError::Transport(TransportError::ProxyRefused { proxy, status }) => (proxy, *status),
            HubError::Transport(TransportError::AllTransportsFailed { failures }) => {
                match &failures[..] {
                    [(_, TransportError::ProxyRefused { proxy, status })] => (proxy, *status),
                    other => panic!("{transport:?}: {other:?}"),
                }
            }
            other => panic!("{transport:?}: {other:?}"),
        };
        assert_eq!(
            refused,
            (&format!("http://127.0.0.1:{port}"), 407),
            "{transport:?}"
        );
        assert!(!format!("{err:?}").contains("s3cret"));

        let conn = builder(server.url(), transport, false)
            .with_proxy(Proxy::url(format!(
                "http://signalr:s3cret-pass@127.0.0.1:{port}"
            )))
            .build()
            .unwrap();
        conn.start()
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e:?}"));
        contract(&conn, &format!("{transport:?} with credentials")).await;
        conn.stop().await.unwrap();
    }
}

#[tokio::test]
async fn an_https_proxy_carries_ws_wss_and_http() {
    let (Some(tp), Some(haproxy)) = (
        program("tinyproxy", "tinyproxy"),
        program("haproxy", "haproxy"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (proxy, tp_port) = tinyproxy(&tp, dir.path(), &[]).await;
    // HAProxy terminates TLS for the proxy and hands the bytes to tinyproxy: an https proxy.
    let pki = TestPki::generate(&["127.0.0.1"]);
    let combined = dir.path().join("proxy.pem");
    std::fs::write(
        &combined,
        format!("{}{}", pki.server_cert_pem, pki.server_key_pem),
    )
    .unwrap();
    let tls_port = free_port();
    let _tls = HaproxyConfig::new()
        .line("mode tcp")
        .frontend(
            tls_port,
            Some(&format!("ssl crt {}", combined.display())),
            "tinyproxy",
        )
        .line("mode tcp")
        .backend(
            "tinyproxy",
            &[format!("127.0.0.1:{tp_port}").parse().unwrap()],
            false,
        )
        .line("mode tcp")
        .start(&haproxy, dir.path(), &[tls_port])
        .await;
    let trust = TlsOptions::default().extra_root(pki.ca_der.clone());
    let https_proxy = Proxy::url(format!("https://127.0.0.1:{tls_port}"));
    let plain = TestServer::start(ServerConfig::default()).await.unwrap();
    let mut config = ServerConfig::default();
    config.tls = Some(ServerTls::new(
        pki.server_cert_pem.clone(),
        pki.server_key_pem.clone(),
    ));
    let secure = TestServer::start(config).await.unwrap();
    for (url, transport) in [
        (plain.url(), TransportKind::WebSockets),
        (plain.url(), TransportKind::LongPolling),
        (secure.url(), TransportKind::WebSockets),
        (secure.url(), TransportKind::ServerSentEvents),
    ] {
        let conn = builder(url, transport, false)
            .with_proxy(https_proxy.clone())
            .with_tls(trust.clone())
            .build()
            .unwrap();
        conn.start()
            .await
            .unwrap_or_else(|e| panic!("{url} {transport:?}: {e:?}"));
        let sum: i64 = conn.invoke("Add", (40, 2)).await.unwrap();
        assert_eq!(sum, 42);
        conn.stop().await.unwrap();
    }
    let log = proxy.log_text();
    assert_eq!(
        count(&log, &format!("CONNECT {}", plain.local_addr())),
        1,
        "{log}"
    );
    // wss and https: tunnels too, with TLS to the hub inside TLS to the proxy.
    assert!(
        count(&log, &format!("CONNECT {}", secure.local_addr())) >= 2,
        "{log}"
    );
}
