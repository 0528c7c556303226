//! Runnable examples for the `signalr-*` crates. The end-to-end demo: `cargo run -p examples --bin demo`.
