//! Run with: `cargo run -p examples --bin interop_client -- URL [ws|sse|lp|auto] [json|messagepack] [FLAGS]`
//!
//! Runs every method of the hub contract (`shared/design/hub-contract.md`) against the server at
//! URL with our client, prints one JSON object with a result per step, and exits 0 only when
//! every step passed (optional methods the server lacks are skipped): a way to check this client
//! against any server that implements the contract (ours, ASP.NET Core, another language's), and
//! any deployment in front of one (a load balancer, a proxy, mutual TLS) from the command line.
//! An unknown flag or a malformed value prints the usage and exits with 2. Logs go to stderr
//! (`RUST_LOG=debug` for more).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use signalr_client::{
    HubConnectionBuilder,
    protocol::TransportKind,
    transport::{
        Identity, Proxy, TlsOptions,
        header::{HeaderName, HeaderValue},
    },
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Transport {
    Ws,
    Sse,
    Lp,
    Auto,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Protocol {
    Json,
    Messagepack,
}

/// Runs the hub contract against a SignalR server with the signalr-rs client.
#[derive(Debug, Parser)]
#[command(name = "interop_client", about)]
struct Args {
    /// The hub URL (http, https, ws or wss).
    url: String,
    /// The transport: one, or auto (negotiate picks, with fallback).
    #[arg(value_enum, default_value = "auto")]
    transport: Transport,
    /// The hub protocol.
    #[arg(value_enum, default_value = "json")]
    protocol: Protocol,
    /// Go through this proxy (http:// or https://, credentials as user:password@).
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Go direct, whatever the proxy environment variables say.
    #[arg(long)]
    no_proxy: bool,
    /// Trust this CA certificate (PEM) as well as the operating system's.
    #[arg(long, value_name = "PEM")]
    root_ca: Option<PathBuf>,
    /// Present this client certificate and key (one PEM file) for mutual TLS.
    #[arg(long, value_name = "PEM")]
    identity: Option<PathBuf>,
    /// Send this header with every request (repeatable).
    #[arg(long, value_name = "NAME:VALUE", value_parser = header)]
    header: Vec<(HeaderName, HeaderValue)>,
    /// Send this bearer token with every request.
    #[arg(long, value_name = "TOKEN")]
    access_token: Option<String>,
    /// Send and keep no cookies (a load balancer's affinity cookie included).
    #[arg(long)]
    no_cookies: bool,
    /// Connect the WebSocket straight to the URL, without negotiate.
    #[arg(long)]
    skip_negotiation: bool,
}

fn header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected NAME:VALUE".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
    let mut value =
        HeaderValue::from_str(value.trim()).map_err(|e| format!("invalid header value: {e}"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

fn read_pem(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The builder the flags describe.
fn builder(args: &Args) -> Result<HubConnectionBuilder, String> {
    let mut builder = HubConnectionBuilder::new(args.url.as_str());
    builder = match args.transport {
        Transport::Ws => builder.with_transports([TransportKind::WebSockets]),
        Transport::Sse => builder.with_transports([TransportKind::ServerSentEvents]),
        Transport::Lp => builder.with_transports([TransportKind::LongPolling]),
        Transport::Auto => builder,
    };
    if matches!(args.protocol, Protocol::Messagepack) {
        builder = builder.with_messagepack();
    }
    if let Some(proxy) = &args.proxy {
        builder = builder.with_proxy(Proxy::url(proxy.clone()));
    }
    if args.no_proxy {
        builder = builder.with_proxy(Proxy::None);
    }
    let mut tls = TlsOptions::default();
    if let Some(path) = &args.root_ca {
        tls = tls
            .extra_roots_pem(&read_pem(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.identity {
        let identity =
            Identity::from_pem(&read_pem(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        tls = tls.identity(identity);
    }
    builder = builder.with_tls(tls);
    for (name, value) in &args.header {
        builder = builder.with_header(name.clone(), value.clone());
    }
    if let Some(token) = &args.access_token {
        let token = token.clone();
        builder = builder.with_access_token(move || {
            let token = token.clone();
            async move { Ok(token) }
        });
    }
    if args.no_cookies {
        builder = builder.without_cookies();
    }
    if args.skip_negotiation {
        builder = builder.with_skip_negotiation();
    }
    Ok(builder)
}

#[tokio::main]
async fn main() {
    // Logs go to stderr, the report to stdout: `RUST_LOG=debug` shows what the client does.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => refuse(&e.to_string()),
    };
    let report = |steps: Value, passed: usize, failed: usize, skipped: usize| {
        println!(
            "{}",
            json!({
                "url": signalr_client::transport::redact(&args.url),
                "transport": format!("{:?}", args.transport).to_lowercase(),
                "protocol": format!("{:?}", args.protocol).to_lowercase(),
                "steps": steps,
                "passed": passed,
                "failed": failed,
                "skipped": skipped,
            })
        );
    };
    let conn = match builder(&args).and_then(|b| b.build().map_err(|e| format!("{e:#}"))) {
        Ok(c) => c,
        Err(e) => refuse(&format!("interop_client: {e}")),
    };
    if let Err(e) = conn.start().await {
        report(json!({"start": format!("{e:#}")}), 0, 1, 0);
        std::process::exit(1);
    }
    let results = examples::contract::run(&conn).await;
    let _ = conn.stop().await;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let steps: serde_json::Map<String, Value> = results
        .into_iter()
        .map(|(name, step)| {
            let shown = match step {
                examples::contract::Step::Passed => {
                    passed += 1;
                    json!("ok")
                }
                examples::contract::Step::Failed(why) => {
                    failed += 1;
                    json!(why)
                }
                examples::contract::Step::Skipped(why) => {
                    skipped += 1;
                    json!(format!("skipped: {why}"))
                }
            };
            (name.to_owned(), shown)
        })
        .collect();
    report(Value::Object(steps), passed, failed, skipped);
    std::process::exit(i32::from(failed > 0));
}

/// Refuses the command line: what is wrong, the usage, exit code 2.
fn refuse(what: &str) -> ! {
    use clap::CommandFactory as _;
    eprintln!("{}\n\n{}", what.trim_end(), Args::command().render_usage());
    std::process::exit(2);
}
