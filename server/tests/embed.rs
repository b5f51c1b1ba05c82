//! The embedding API (`corral::Server`, `corral::Cluster`) with the stock
//! Rust client: what a test suite or an application embedding Corral does.

mod common;

use common::{connect, ephemeral, persistent, until_ok};
use corral::{Cluster, Server};
use zookeeper_client as zk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_starts_serves_and_removes_its_temporary_directory() {
    let server = Server::builder().start().await.unwrap();
    let dir = server.data_dir().to_path_buf();
    assert!(dir.exists());
    let c = connect(&server.connect_string()).await;
    c.create("/app", b"v1", &persistent()).await.unwrap();
    assert_eq!(c.get_data("/app").await.unwrap().0, b"v1");
    drop(c);
    server.shutdown().await.unwrap();
    assert!(!dir.exists(), "the temporary data directory is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_loses_nothing_acknowledged_and_restart_comes_back_on_the_same_port() {
    let mut server = Server::builder().start().await.unwrap();
    let addr = server.addr();
    let c = connect(&server.connect_string()).await;
    c.create("/acked", b"", &persistent()).await.unwrap();
    // Writers run while the kill lands; every acknowledged create must survive.
    let mut writers = Vec::new();
    for w in 0..4 {
        let c = c.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let path = format!("/acked/w{w}-{i}");
                match c.create(&path, b"x", &persistent()).await {
                    Ok(_) => acked.push(path),
                    Err(_) => break, // the server is gone
                }
            }
            acked
        }));
    }
    // Let some writes through first: wait until a few are visible.
    until_ok("some writes", || async { if c.get_children("/acked").await?.0.len() >= 20 { Ok(()) } else { Err(zk::Error::NoNode) } }).await;
    server.kill().await;
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 20, "writes were acknowledged before the kill");
    server.restart().await.unwrap();
    assert_eq!(server.addr(), addr, "same port after restart");
    let c = connect(&server.connect_string()).await;
    let children: std::collections::BTreeSet<String> = c.get_children("/acked").await.unwrap().0.into_iter().collect();
    for path in &acked {
        let name = path.rsplit('/').next().unwrap();
        assert!(children.contains(name), "{path} was acknowledged before the kill and is gone");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_servers_and_two_clusters_run_side_by_side() {
    let servers = futures_util::future::join_all((0..8).map(|_| Server::builder().start())).await;
    let servers: Vec<Server> = servers.into_iter().map(Result::unwrap).collect();
    let clusters = futures_util::future::join_all((0..2).map(|_| Cluster::builder(3).start())).await;
    let clusters: Vec<Cluster> = clusters.into_iter().map(Result::unwrap).collect();
    let mut hosts: Vec<String> = servers.iter().map(Server::connect_string).collect();
    hosts.extend(clusters.iter().map(Cluster::connect_string));
    // Each is its own: a node written to one is in no other.
    for (i, h) in hosts.iter().enumerate() {
        let c = connect(h).await;
        c.create(&format!("/only-{i}"), b"", &persistent()).await.unwrap();
    }
    for (i, h) in hosts.iter().enumerate() {
        let c = connect(h).await;
        c.sync("/").await.unwrap();
        let children = c.get_children("/").await.unwrap().0;
        let mine: Vec<_> = children.iter().filter(|n| n.starts_with("only-")).collect();
        assert_eq!(mine, vec![&format!("only-{i}")], "{h}");
    }
    for s in servers {
        s.shutdown().await.unwrap();
    }
    for c in clusters {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_fails_over_keeps_sessions_and_survives_a_partition() {
    let mut cluster = Cluster::builder(3).start().await.unwrap();
    let leader = cluster.wait_for_leader().await.unwrap();
    let other = (leader + 1) % 3;
    let client = connect(&cluster.member_connect_string(other)).await;
    client.create("/owner", b"", &ephemeral()).await.unwrap();
    client.create("/before", b"", &persistent()).await.unwrap();

    // The leader dies: a new one is elected, the session on the other member lives on.
    cluster.kill(leader).await;
    let new_leader = cluster.wait_for_leader().await.unwrap();
    assert_ne!(new_leader, leader);
    until_ok("a write after the leader's death", || client.create("/after-kill", b"", &persistent())).await;
    assert!(client.check_stat("/owner").await.unwrap().is_some(), "the ephemeral node of a live session stays");
    assert!(client.check_stat("/before").await.unwrap().is_some());
    cluster.restart(leader).await.unwrap();

    // The leader is cut off: the other two elect a leader between them and go on.
    let isolated = cluster.wait_for_leader().await.unwrap();
    let rest: Vec<usize> = (0..3).filter(|i| *i != isolated).collect();
    cluster.partition(&[&[isolated], &rest]);
    let majority_client = connect(&cluster.member_connect_string(rest[0])).await;
    until_ok("a write on the majority side", || majority_client.create("/during-partition", b"", &persistent())).await;
    let l = cluster.leader().unwrap();
    assert!(rest.contains(&l), "the majority side leads (leader {l}, isolated {isolated})");

    // Healed, the isolated member catches up.
    cluster.heal();
    let lone = connect(&cluster.member_connect_string(isolated)).await;
    until_ok("the healed member catches up", || async {
        lone.sync("/").await?;
        lone.check_stat("/during-partition").await?.ok_or(zk::Error::NoNode)
    })
    .await;
    cluster.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoo_cfg_lines_configure_an_embedded_server() {
    let server = Server::builder().zoo_cfg("jute.maxbuffer=4096\n4lw.commands.whitelist=ruok, srvr").unwrap().start().await.unwrap();
    assert!(server.addr().ip().is_loopback(), "the builder's address where the text sets none");
    assert_eq!(server.four_letter_word("ruok").await.unwrap(), "imok");
    assert!(server.four_letter_word("mntr").await.unwrap().contains("not in the whitelist"));
    let c = connect(&server.connect_string()).await;
    assert!(c.create("/big", &[0u8; 8192], &persistent()).await.is_err(), "jute.maxbuffer=4096 refuses 8 KiB");
    drop(c);
    server.shutdown().await.unwrap();
    let e = Server::builder().zoo_cfg("tickTime=200\nmaxClientCnxns=lots").err().expect("a bad value is refused").to_string();
    assert!(e.contains(":2:") && e.contains("maxClientCnxns"), "{e}");
}
