//! Runnable examples for the `signalr-*` crates. Run the demo with `cargo run -p examples --bin demo`.
