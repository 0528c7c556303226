// A handler's body is a future: `async move { .. }`.
fn register(conn: &signalr_client::HubConnection) {
    conn.on("tick", |price: f64| println!("{price}"));
}

fn main() {}
