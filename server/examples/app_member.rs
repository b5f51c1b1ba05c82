//! An application that is also a member of its own 3-member coordination
//! group: no separate ZooKeeper to run. Start three copies, each with its
//! id; each serves ZooKeeper clients on 127.0.0.1:2181+id-1 and elects one
//! of the three as the application's leader with an ephemeral sequential
//! node, through its own member.
//!
//! ```sh
//! cargo run -p corral --example app_member -- 1 &
//! cargo run -p corral --example app_member -- 2 &
//! cargo run -p corral --example app_member -- 3
//! ```

use std::net::SocketAddr;

use zookeeper_client as zk;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let id: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).filter(|i| (1..=3).contains(i)).ok_or_else(|| anyhow::anyhow!("usage: app_member 1|2|3"))?;
    // The members find each other on fixed quorum ports, as server.N lines would say.
    let members: Vec<(u64, SocketAddr)> = (1..=3).map(|i| (i, SocketAddr::from(([127, 0, 0, 1], 2887 + i as u16)))).collect();
    let client_addr = SocketAddr::from(([127, 0, 0, 1], 2180 + id as u16));
    let data = std::env::temp_dir().join(format!("corral-app-member-{id}"));
    println!("member {id}: waiting for a majority of the group to start...");
    let server = corral::Server::builder().data_dir(&data).client_addr(client_addr).ensemble_member(id, &members).start().await?;

    // The application's own logic, through its own member.
    let client = zk::Client::connector().connect(&server.connect_string()).await?;
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let _ = client.create("/election", b"", &persistent).await;
    let me = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, seq) = client.create("/election/n-", format!("member {id}").as_bytes(), &me).await?;
    let mut children = client.get_children("/election").await?.0;
    children.sort();
    let mine = format!("n-{seq}");
    if children.first() == Some(&mine) {
        println!("member {id}: I lead the application (my node {mine})");
    } else {
        println!("member {id}: following; the application's leader holds {}", children[0]);
    }
    println!("member {id}: ctrl-c to stop");
    tokio::signal::ctrl_c().await?;
    drop(client);
    server.shutdown().await?;
    Ok(())
}
