//! The `signalr-testserver` binary: its first stdout line, its flags, and that it stops when
//! killed. Each test starts its own process on port 0 and kills it when done.
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
};

use signalr_protocol::{NegotiateResponse, TransportKind};

/// A running binary, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // From here on the guard kills the process, even if the checks below fail.
    let mut server = Server {
        child,
        url: String::new(),
    };
    let mut first = String::new();
    BufReader::new(server.child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first:?}"))
        .clone_into(&mut server.url);
    assert!(
        server.url.starts_with("http://127.0.0.1:") || server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    server
}

async fn negotiate(url: &str, query: &str) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{url}/negotiate?{query}"))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn prints_its_url_and_serves_the_hub() {
    let server = start(&[]);
    assert!(
        server.url.ends_with("/hub"),
        "the default hub path: {}",
        server.url
    );
    let (status, body) = negotiate(&server.url, "negotiateVersion=1").await;
    assert_eq!(status, 200);
    let NegotiateResponse::Connection(c) = NegotiateResponse::parse(&body).unwrap() else {
        panic!()
    };
    assert_eq!(c.available_transports.len(), 3);
}

#[tokio::test]
async fn flags_reach_the_server() {
    let server = start(&[
        "--hub-path",
        "chat",
        "--transports",
        "lp,ws",
        "--negotiate-version",
        "0",
        "--stateful-reconnect",
        "--require-token",
        "t0k",
    ]);
    assert!(server.url.ends_with("/chat"), "{}", server.url);
    assert_eq!(negotiate(&server.url, "negotiateVersion=1").await.0, 401);
    let (status, body) = negotiate(
        &server.url,
        "negotiateVersion=1&useStatefulReconnect=true&access_token=t0k",
    )
    .await;
    assert_eq!(status, 200);
    let NegotiateResponse::Connection(c) = NegotiateResponse::parse(&body).unwrap() else {
        panic!()
    };
    assert_eq!(c.negotiate_version, 0);
    assert!(c.use_stateful_reconnect);
    let kinds: Vec<TransportKind> = c.available_transports.iter().map(|t| t.transport).collect();
    assert_eq!(
        kinds,
        [TransportKind::LongPolling, TransportKind::WebSockets]
    );

    let redirecting = start(&[
        "--redirect-url",
        "http://127.0.0.1:9/hub",
        "--redirect-token",
        "next",
    ]);
    let (_, body) = negotiate(&redirecting.url, "negotiateVersion=1").await;
    assert_eq!(
        NegotiateResponse::parse(&body).unwrap(),
        NegotiateResponse::Redirect {
            url: "http://127.0.0.1:9/hub".into(),
            access_token: Some("next".into())
        }
    );
}

#[test]
fn bad_flags_fail_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args(["--transports", "carrier-pigeon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown transport"));
}

#[tokio::test]
async fn users_flags_reach_the_server() {
    let server = start(&["--user", "a-token=alice", "--user", "b-token=bob"]);
    assert_eq!(negotiate(&server.url, "negotiateVersion=1").await.0, 401);
    assert_eq!(
        negotiate(&server.url, "negotiateVersion=1&access_token=nobody")
            .await
            .0,
        401
    );
    for token in ["a-token", "b-token"] {
        let query = format!("negotiateVersion=1&access_token={token}");
        assert_eq!(negotiate(&server.url, &query).await.0, 200);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args(["--user", "no-equals-sign"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKEN=NAME"));
}

/// `POST negotiate` over TLS to `url` (https), trusting `ca_pem`, presenting `identity_pem`
/// when given; the status line, or the error.
async fn tls_negotiate(
    url: &str,
    ca_pem: &[u8],
    identity_pem: Option<&[u8]>,
) -> Result<String, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity_pem {
        Some(pem) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(pem)
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(pem).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "POST /hub/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test]
async fn serves_tls_with_a_throwaway_ca_and_requires_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let dir_text = dir.display().to_string();
    let ca = dir.join("ca.pem").display().to_string();
    let server = start(&["--tls-self-signed", &dir_text, "--client-ca", &ca]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();
    let identity = std::fs::read(dir.join("client.pem")).unwrap();
    for file in ["server.pem", "server-key.pem"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert_eq!(
        tls_negotiate(&server.url, &ca_pem, Some(&identity))
            .await
            .unwrap(),
        "HTTP/1.1 200 OK"
    );
    // Without a client certificate the server's alert ends the connection.
    let refused = tls_negotiate(&server.url, &ca_pem, None).await.unwrap_err();
    assert!(refused.contains("CertificateRequired"), "{refused}");
    drop(server);
    // Its own certificate and key, given back as files: plain TLS, no client certificate.
    let cert = dir.join("server.pem").display().to_string();
    let key = dir.join("server-key.pem").display().to_string();
    let server = start(&["--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(
        tls_negotiate(&server.url, &ca_pem, None).await.unwrap(),
        "HTTP/1.1 200 OK"
    );
    drop(server);
}

#[test]
fn refuses_client_certificates_without_tls() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args(["--port", "0", "--client-ca", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--client-ca needs TLS"), "{err}");
}

#[test]
fn help_documents_the_whole_contract() {
    let out = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for method in signalr_testserver::contract::contract_hub().method_names() {
        assert!(
            help.contains(&format!("  {method}(")),
            "--help lacks {method}:\n{help}"
        );
    }
    for call in ["welcome(connectionId)", "seq(i)", "/admin/abort"] {
        assert!(help.contains(call), "--help lacks {call}");
    }
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signalr-testserver"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("test server listening"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}
