//! The smallest use: a real ZooKeeper-compatible server inside this
//! process, used through the stock client, then stopped.
//!
//! ```sh
//! cargo run -p corral --example embedded_server
//! ```

use zookeeper_client as zk;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A free port on 127.0.0.1, a temporary data directory removed on shutdown.
    let server = corral::Server::builder().start().await?;
    println!("serving on {}", server.connect_string());

    let client = zk::Client::connector().connect(&server.connect_string()).await?;
    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    client.create("/config", b"feature-x=on", &options).await?;
    let (data, stat) = client.get_data("/config").await?;
    println!("/config = {:?} (zxid {:#x})", String::from_utf8_lossy(&data), stat.czxid);

    drop(client);
    server.shutdown().await?;
    Ok(())
}
