//! A 3-member ensemble in one process: a session on one member keeps its
//! ephemeral node while the leader is killed and a new one takes over.
//!
//! ```sh
//! cargo run -p corral --example cluster_failover
//! ```

use std::time::{Duration, Instant};

use zookeeper_client as zk;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let mut cluster = corral::Cluster::builder(3).start().await?;
    let leader = cluster.wait_for_leader().await?;
    println!("3 members up in {:?}; leader is member {leader}; connect string {}", started.elapsed(), cluster.connect_string());

    // A session on a member that is not the leader, owning an ephemeral node.
    let member = (leader + 1) % 3;
    let client = zk::Client::connector().connect(&cluster.member_connect_string(member)).await?;
    client.create("/workers", b"", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await?;
    client.create("/workers/w1", b"", &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())).await?;

    let killed = Instant::now();
    cluster.kill(leader).await;
    let new_leader = cluster.wait_for_leader().await?;
    println!("member {leader} killed; member {new_leader} leads after {:?}", killed.elapsed());

    // Writes go on through the same session; the ephemeral node is still there.
    loop {
        match client.set_data("/workers/w1", b"alive", None).await {
            Ok(_) => break,
            Err(e) if killed.elapsed() < Duration::from_secs(30) => {
                println!("retrying after {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("first write through the old session {:?} after the kill", killed.elapsed());

    cluster.restart(leader).await?;
    drop(client);
    cluster.shutdown().await?;
    Ok(())
}
