// A single value is not a list of arguments: it goes in a one-tuple.
#[derive(serde::Serialize)]
struct Reading {
    celsius: f64,
}

async fn call(conn: signalr_client::HubConnection) {
    let _: () = conn.invoke("Record", Reading { celsius: 21.5 }).await.unwrap();
}

fn main() {}
