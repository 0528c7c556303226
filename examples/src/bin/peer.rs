//! Run with: `cargo run -p examples --bin peer -- URL [--messagepack] [--on METHOD]…`
//!
//! A scriptable client for tests that put our client next to another one (the official JS
//! client in `interop/test/scaleout.test.mjs`). It connects to the hub at URL and prints one JSON
//! line per event on stdout: `{"event":"connected","id":…}` once started, then
//! `{"event":METHOD,"arg":…}` for each call of a method named with `--on` (its first argument),
//! and for each command read from stdin, one JSON object per line such as
//! `{"invoke":"SendToGroup","args":["g","m",1]}`, the answer: `{"event":"result","invoke":…,
//! "value":…}` or `{"event":"error","invoke":…,"error":…}`. It stops at the end of stdin.

use clap::Parser;
use serde_json::{Value, json};
use signalr_client::HubConnectionBuilder;
use tokio::io::AsyncBufReadExt as _;

/// A SignalR client driven by JSON lines on stdin, reporting on stdout.
#[derive(Debug, Parser)]
#[command(name = "peer", about)]
struct Args {
    /// The hub URL.
    url: String,
    /// Use MessagePack instead of JSON.
    #[arg(long)]
    messagepack: bool,
    /// Report calls of this server-to-client method (repeat for more).
    #[arg(long = "on", value_name = "METHOD")]
    on: Vec<String>,
}

fn emit(line: &Value) {
    println!("{line}");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut builder = HubConnectionBuilder::new(&args.url);
    if args.messagepack {
        builder = builder.with_messagepack();
    }
    let conn = builder.build()?;
    for method in args.on {
        conn.on(&method.clone(), move |arg: Value| {
            let method = method.clone();
            async move { emit(&json!({"event": method, "arg": arg})) }
        });
    }
    conn.start().await?;
    emit(&json!({"event": "connected", "id": conn.connection_id()}));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let command: Value = match serde_json::from_str(&line) {
            Ok(c) => c,
            Err(e) => {
                emit(&json!({"event": "error", "error": format!("not JSON: {e}")}));
                continue;
            }
        };
        let method = command["invoke"].as_str().unwrap_or_default().to_owned();
        let call_args = command["args"].as_array().cloned().unwrap_or_default();
        match conn.invoke::<Value>(&method, call_args).await {
            Ok(value) => emit(&json!({"event": "result", "invoke": method, "value": value})),
            Err(e) => emit(&json!({"event": "error", "invoke": method, "error": format!("{e:#}")})),
        }
    }
    conn.stop().await?;
    Ok(())
}
