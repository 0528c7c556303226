// A client-result handler answers with a Result, so that it can fail (and `?` works).
fn register(conn: &signalr_client::HubConnection) {
    conn.on_invoke("double", |n: i64| async move { n * 2 });
}

fn main() {}
