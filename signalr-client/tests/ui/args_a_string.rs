// A string alone is not a list of arguments either.
async fn call(conn: signalr_client::HubConnection) {
    conn.send("Fail", "msg").await.unwrap();
}

fn main() {}
