//! `signalr-testserver`: the contract hub on a port, for any SignalR client to test against.
//!
//! The first line on stdout is `listening on http://HOST:PORT/hub`; logs go to stderr
//! (`RUST_LOG=debug` for more).

use std::{io::Write as _, net::SocketAddr, time::Duration};

use clap::Parser;
use signalr_protocol::TransportKind;
use signalr_testserver::{
    Redirect, ServerConfig, ServerTls, TestServer, contract::contract_hub, pki::TestPki,
};

/// A SignalR test server with fault injection.
#[derive(Debug, Parser)]
#[command(version, about, after_long_help = include_str!("contract.txt"))]
#[allow(
    clippy::struct_excessive_bools,
    reason = "one field per command-line switch"
)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port to bind; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The hub's path.
    #[arg(long, default_value = "/hub")]
    hub_path: String,
    /// Ping a quiet client after this many milliseconds.
    #[arg(long, default_value_t = 15_000)]
    keep_alive_ms: u64,
    /// Drop a client that sent nothing for this many milliseconds.
    #[arg(long, default_value_t = 30_000)]
    client_timeout_ms: u64,
    /// Drop a connection whose handshake took longer than this.
    #[arg(long, default_value_t = 15_000)]
    handshake_timeout_ms: u64,
    /// The largest message accepted from a client, in bytes.
    #[arg(long, default_value_t = 32 * 1024)]
    max_message_size: usize,
    /// Allow stateful reconnect.
    #[arg(long)]
    stateful_reconnect: bool,
    /// Unacknowledged bytes kept for replay.
    #[arg(long, default_value_t = 100_000)]
    stateful_buffer_bytes: usize,
    /// Transports offered, comma-separated: ws, sse, lp.
    #[arg(long, default_value = "ws,sse,lp", value_delimiter = ',')]
    transports: Vec<String>,
    /// The highest negotiate version spoken: 0 or 1.
    #[arg(long, default_value_t = 1)]
    negotiate_version: u32,
    /// Answer negotiate with a redirect to this hub URL.
    #[arg(long)]
    redirect_url: Option<String>,
    /// The access token the redirect hands out.
    #[arg(long, requires = "redirect_url")]
    redirect_token: Option<String>,
    /// Require this bearer token (Authorization header or `access_token` query parameter).
    #[arg(long)]
    require_token: Option<String>,
    /// Serve POST /admin/abort, /admin/refuse?ms=N and /admin/blackhole?ms=N.
    #[arg(long)]
    admin: bool,
    /// Keep a connection without a transport (between polls, awaiting a resume) this long.
    #[arg(long, default_value_t = 15_000)]
    disconnect_timeout_ms: u64,
    /// Hold a long poll this long before answering it empty.
    #[arg(long, default_value_t = 90_000)]
    poll_timeout_ms: u64,
    /// Offer WebSockets in negotiate but refuse every upgrade with 503 (tests client fallback).
    #[arg(long)]
    refuse_websockets: bool,
    /// A user, as TOKEN=NAME (repeat for more). With any, every request needs one of these
    /// bearer tokens (401), and a request on another user's connection is refused (403).
    #[arg(long = "user", value_name = "TOKEN=NAME", value_parser = user)]
    users: Vec<(String, String)>,
    /// The longest invocation or stream id accepted, in bytes.
    #[arg(long, default_value_t = 256)]
    max_invocation_id_length: usize,
    /// Stateful resumes of one connection allowed at once; more get 429.
    #[arg(long, default_value_t = 200)]
    resume_burst: u32,
    /// Stateful resumes of one connection allowed per second after the burst.
    #[arg(long, default_value_t = 100)]
    resumes_per_second: u32,
    /// Put the reason in the Close message of a connection closed with an error (ASP.NET
    /// Core's `EnableDetailedErrors`); without it the error is "Connection closed with an error."
    #[arg(long)]
    detailed_errors: bool,
    /// This instance's name, returned by the hub method GetServerName [default: a random one].
    #[arg(long)]
    server_name: Option<String>,
    /// A connection's credentials expire this many milliseconds after negotiate: later
    /// requests on it (polls, sends, event-stream connects, WebSocket resumes) get 401.
    #[arg(long)]
    token_lifetime_ms: Option<u64>,
    /// Share the hub with every instance on this Redis (redis://HOST:PORT), in ASP.NET Core's
    /// backplane format. Exits with status 1 when Redis cannot be reached at start.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The hub's name on the backplane (ASP.NET Core: the hub class's full name).
    #[arg(long, default_value = "SignalRTestServer.TestHub")]
    hub_name: String,
    /// How long a group change or client result for another instance's connection waits.
    #[arg(long, default_value_t = 30_000)]
    backplane_timeout_ms: u64,
    /// Serve https/wss with this certificate chain (PEM, leaf first).
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve https/wss with a new throwaway CA and certificate for 127.0.0.1 and localhost,
    /// written to DIR (ca.pem, server.pem, server-key.pem, and client.pem: a client
    /// certificate and key signed by the same CA).
    #[arg(long, value_name = "DIR")]
    tls_self_signed: Option<std::path::PathBuf>,
    /// Require client certificates signed by the CAs in this PEM file (mutual TLS).
    #[arg(long, value_name = "PEM")]
    client_ca: Option<std::path::PathBuf>,
}

fn user(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((token, name)) if !token.is_empty() && !name.is_empty() => {
            Ok((token.to_owned(), name.to_owned()))
        }
        _ => Err("expected TOKEN=NAME".into()),
    }
}

fn transport(name: &str) -> Result<TransportKind, String> {
    match name.trim() {
        "ws" | "websockets" | "WebSockets" => Ok(TransportKind::WebSockets),
        "sse" | "ServerSentEvents" => Ok(TransportKind::ServerSentEvents),
        "lp" | "longpolling" | "LongPolling" => Ok(TransportKind::LongPolling),
        other => Err(format!("unknown transport {other:?} (use ws, sse, lp)")),
    }
}

fn config(args: &Args) -> Result<ServerConfig, String> {
    let ms = Duration::from_millis;
    let mut config = ServerConfig::default();
    config.hub_path = if args.hub_path.starts_with('/') {
        args.hub_path.clone()
    } else {
        format!("/{}", args.hub_path)
    };
    config.keep_alive_interval = ms(args.keep_alive_ms);
    config.client_timeout = ms(args.client_timeout_ms);
    config.handshake_timeout = ms(args.handshake_timeout_ms);
    config.max_message_size = args.max_message_size;
    config.stateful_reconnect = args.stateful_reconnect;
    config.stateful_buffer_bytes = args.stateful_buffer_bytes;
    config.transports = args
        .transports
        .iter()
        .map(|t| transport(t))
        .collect::<Result<_, _>>()?;
    if args.negotiate_version > 1 {
        return Err("--negotiate-version must be 0 or 1".into());
    }
    config.negotiate_version = args.negotiate_version;
    config.redirect = args
        .redirect_url
        .as_ref()
        .map(|url| Redirect::new(url.clone(), args.redirect_token.clone()));
    config.required_token.clone_from(&args.require_token);
    config.admin = args.admin;
    config.disconnect_timeout = ms(args.disconnect_timeout_ms);
    config.poll_timeout = ms(args.poll_timeout_ms);
    config.refuse_websockets = args.refuse_websockets;
    config.users = args.users.iter().cloned().collect();
    config.max_invocation_id_length = args.max_invocation_id_length;
    config.resume_burst = args.resume_burst;
    config.resumes_per_second = args.resumes_per_second;
    config.token_lifetime = args.token_lifetime_ms.map(ms);
    config.detailed_errors = args.detailed_errors;
    if let Some(name) = &args.server_name {
        config.server_name.clone_from(name);
    }
    config.redis.clone_from(&args.redis);
    config.hub_name.clone_from(&args.hub_name);
    config.backplane_timeout = ms(args.backplane_timeout_ms);
    config.tls = tls(args)?;
    Ok(config)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn tls(args: &Args) -> Result<Option<ServerTls>, String> {
    let tls = match (&args.tls_cert, &args.tls_key, &args.tls_self_signed) {
        (Some(cert), Some(key), _) => ServerTls::new(read(cert)?, read(key)?),
        (_, _, Some(dir)) => {
            let pki = TestPki::generate(&["127.0.0.1", "localhost", "::1"]);
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (name, text) in [
                ("ca.pem", pki.ca_pem.clone()),
                ("server.pem", pki.server_cert_pem.clone()),
                ("server-key.pem", pki.server_key_pem.clone()),
                ("client.pem", pki.client_identity_pem("signalr-test-client")),
            ] {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
            ServerTls::new(pki.server_cert_pem, pki.server_key_pem)
        }
        _ if args.client_ca.is_some() => {
            return Err(
                "--client-ca needs TLS: --tls-cert and --tls-key, or --tls-self-signed".into(),
            );
        }
        _ => return Ok(None),
    };
    Ok(Some(match &args.client_ca {
        Some(ca) => tls.require_client_certificates(read(ca)?),
        None => tls,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; plain text for a pipe or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config = config(&args)?;
    let server = match TestServer::start_with(
        SocketAddr::new(args.host, args.port),
        config,
        contract_hub(),
    )
    .await
    {
        Ok(server) => server,
        Err(e) => {
            // A clear line and status 1 (an unreachable Redis, a port in use), no hang.
            eprintln!("signalr-testserver: cannot start: {e}");
            std::process::exit(1);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.url())?;
        out.flush()?;
    }
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
