//! Durability: every write acknowledged before a SIGKILL is present after
//! the restart. Concurrent writers keep the server busy so the kill lands in
//! the middle of group commits.

use std::collections::BTreeSet;
use std::time::Duration;

use corral_tests::{connect, persistent, Corral, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let mut server = Corral::start();
    let hosts = server.hosts();
    {
        let zk = connect(&hosts, Duration::from_secs(10)).await;
        zk.create("/d", b"", &persistent()).await.unwrap();
    }
    let mut writers = Writers::spawn(vec![hosts.clone(); 4]);
    // Kill once a good number of writes has been acknowledged, writers still going.
    writers.wait_for(500).await;
    server.kill();
    let acked = writers.finish().await;
    assert!(acked.len() >= 500, "too few writes before the kill: {}", acked.len());

    server.restart();
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    let present: BTreeSet<String> = zk.list_children("/d").await.unwrap().into_iter().map(|c| format!("/d/{c}")).collect();
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), lost.iter().take(5).collect::<Vec<_>>());
    for p in acked.iter().take(50) {
        assert_eq!(zk.get_data(p).await.unwrap().0, p.as_bytes());
    }
}

#[tokio::test]
async fn clean_shutdown_on_sigterm() {
    let mut server = Corral::start();
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    zk.create("/t", b"1", &persistent()).await.unwrap();
    drop(zk);
    assert!(server.terminate(), "SIGTERM must exit 0");
    server.restart();
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    assert_eq!(zk.get_data("/t").await.unwrap().0, b"1");
}

#[tokio::test]
async fn snapshots_bound_the_log_and_restore_everything() {
    let mut server = Corral::start_with("snapCount=100");
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    zk.create("/s", b"", &persistent()).await.unwrap();
    for i in 0..1000 {
        zk.create(&format!("/s/n{i}"), format!("{i}").as_bytes(), &persistent()).await.unwrap();
    }
    for i in (0..1000).step_by(3) {
        zk.set_data(&format!("/s/n{i}"), b"changed", None).await.unwrap();
    }
    let ephemeral_owner = zk.session_id();
    zk.create("/s/eph", b"", &corral_tests::ephemeral()).await.unwrap();
    let before = zk.get_children("/s").await.unwrap().1;
    let entries = |mntr: String| -> usize {
        mntr.lines().find_map(|l| l.strip_prefix("zk_log_entries\t")).unwrap().parse().unwrap()
    };
    server.kill();
    server.restart();
    // The log holds only what came after the newest snapshot.
    assert!(entries(server.four_letter("mntr")) < 400, "log not truncated: {}", server.four_letter("mntr"));
    assert!(server.log().contains("snapshot_zxid"), "recovery reports its snapshot");
    let zk2 = connect(&server.hosts(), Duration::from_secs(10)).await;
    let (children, after) = zk2.get_children("/s").await.unwrap();
    assert_eq!(children.len(), 1001);
    assert_eq!((after.cversion, after.num_children, after.pzxid), (before.cversion, before.num_children, before.pzxid));
    assert_eq!(zk2.get_data("/s/n3").await.unwrap().0, b"changed");
    assert_eq!(zk2.get_data("/s/n4").await.unwrap().0, b"4");
    let eph = zk2.check_stat("/s/eph").await.unwrap().expect("ephemeral survives with its session");
    assert_eq!(eph.ephemeral_owner, ephemeral_owner.0);
}
