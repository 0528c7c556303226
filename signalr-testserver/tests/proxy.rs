//! `FaultProxy` on raw TCP: what a client socket sees for each fault.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use signalr_testserver::proxy::{FaultProxy, Mode};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// An upstream that echoes everything.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn echo_once(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.unwrap();
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    got
}

#[tokio::test]
async fn pass_chunks_reset_half_close_blackhole_refuse() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(echo_once(&mut s, b"hello").await, b"hello");
    proxy.set_mode(Mode::OneByteChunks);
    assert_eq!(
        echo_once(&mut s, b"one byte at a time").await,
        b"one byte at a time"
    );
    proxy.set_mode(Mode::Delay(Duration::from_millis(20)));
    assert_eq!(echo_once(&mut s, b"late").await, b"late");

    // Blackhole: nothing comes back, and the socket stays open.
    proxy.set_mode(Mode::Blackhole);
    s.write_all(b"lost").await.unwrap();
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
            .await
            .is_err(),
        "silence, not EOF"
    );
    proxy.set_mode(Mode::Pass);

    // Reset: the client's next read fails with ECONNRESET, not a clean EOF.
    proxy.reset_all();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap();
    let err = read.expect_err("a reset is an error");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");

    // Half-close: the client reads EOF, and can still write.
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(echo_once(&mut s, b"x").await, b"x");
    proxy.half_close_all();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "EOF after a half-close");
    s.write_all(b"still writable").await.unwrap();

    // Refused: new connections are reset at once.
    proxy.refuse_for(Duration::from_millis(300));
    let mut refused = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut back = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(echo_once(&mut back, b"back").await, b"back");
}
