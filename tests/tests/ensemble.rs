//! A 3-member ensemble of real `corral` processes on loopback (generated
//! zoo.cfg files with `server.N` lines, `myid` files), driven by the stock
//! Rust client: leader kill -9 with sessions and ephemerals kept and no
//! acknowledged write lost; all members killed mid-write; a wiped member
//! rebuilt from the others; a session whose member died expiring on the
//! leader.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use corral_tests::{connect, ephemeral, persistent, Ensemble, Writers};
use zookeeper_client as zk;

/// Retries `f` while it fails with a transient error (connection loss
/// during a failover), for at most `limit`.
async fn retry<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, zk::Error>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            // The client reports its own request timeout on a connection
            // as a custom error: a busy machine's stall, retried as a loss.
            Err(e) if Instant::now() < deadline && (matches!(e, zk::Error::ConnectionLoss | zk::Error::Timeout) || e.to_string().contains("no response from connection")) => {
                tokio::time::sleep(Duration::from_millis(20)).await; // a client's retry backoff, not synchronisation
            }
            Err(e) => panic!("gave up after {limit:?}: {e}"),
        }
    }
}

async fn assert_all_present(hosts: &str, acked: &BTreeSet<String>) {
    let zk = connect(hosts, Duration::from_secs(10)).await;
    retry(Duration::from_secs(20), || zk.sync("/d")).await;
    let present: BTreeSet<String> = retry(Duration::from_secs(20), || zk.list_children("/d")).await.into_iter().map(|c| format!("/d/{c}")).collect();
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), lost.iter().take(5).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_keeps_sessions_ephemerals_and_acknowledged_writes() {
    let mut ens = Ensemble::start(3, "");
    let leader = ens.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    // A client on a follower, with an ephemeral; another with the full connect string.
    let on_follower = connect(&ens.members[follower].hosts(), Duration::from_secs(10)).await;
    on_follower.create("/d", b"", &persistent()).await.unwrap();
    on_follower.create("/eph", b"mine", &ephemeral()).await.unwrap();
    let roaming = connect(&ens.hosts(), Duration::from_secs(10)).await;
    let roaming_session = roaming.session_id();
    roaming.create("/eph2", b"", &ephemeral()).await.unwrap();

    let mut writers = Writers::spawn(ens.members.iter().map(|m| m.hosts()).collect());
    writers.wait_for(300).await;

    let killed_at = Instant::now();
    ens.members[leader].kill();
    // A write through the roaming session succeeds on the new leader.
    retry(Duration::from_secs(20), || roaming.set_data("/d", b"after the kill", None)).await;
    let failover = killed_at.elapsed();
    let new_leader = ens.wait_for_leader(Duration::from_secs(20));
    assert_ne!(new_leader, leader);
    assert_eq!(roaming.session_id(), roaming_session, "the session survives the failover");
    let acked_now = writers.finish().await;

    // Ephemerals of live sessions are still there.
    let check = connect(&ens.members[new_leader].hosts(), Duration::from_secs(10)).await;
    assert_eq!(retry(Duration::from_secs(10), || check.get_data("/eph")).await.0, b"mine");
    assert!(retry(Duration::from_secs(10), || check.check_stat("/eph2")).await.is_some());
    assert_all_present(&ens.members[new_leader].hosts(), &acked_now).await;
    let mntr = ens.members[new_leader].four_letter("mntr");
    assert!(mntr.contains("zk_server_state\tleader") && mntr.contains("zk_followers\t2"), "{mntr}");

    // The old leader comes back and catches up.
    ens.members[leader].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let target = ens.zxid(new_leader).expect("leader zxid");
    while ens.zxid(leader).is_none_or(|z| z < target) {
        assert!(Instant::now() < deadline, "restarted member did not catch up");
        std::thread::sleep(Duration::from_millis(20)); // polled through mntr
    }
    assert_all_present(&ens.members[leader].hosts(), &acked_now).await;
    eprintln!("failover: first write {failover:?} after kill -9 of the leader; {} writes acknowledged", acked_now.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_members_killed_mid_write_lose_nothing_acknowledged() {
    let mut ens = Ensemble::start(3, "");
    let zk = connect(&ens.hosts(), Duration::from_secs(10)).await;
    zk.create("/d", b"", &persistent()).await.unwrap();
    drop(zk);
    let mut writers = Writers::spawn(ens.members.iter().map(|m| m.hosts()).collect());
    writers.wait_for(500).await;
    for m in &mut ens.members {
        m.kill();
    }
    let acked = writers.finish().await;
    for m in &mut ens.members {
        m.restart();
    }
    ens.wait_for_leader(Duration::from_secs(30));
    assert_all_present(&ens.hosts(), &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_is_rebuilt_from_a_snapshot() {
    let mut ens = Ensemble::start(3, "snapCount=50\n");
    let leader = ens.wait_for_leader(Duration::from_secs(30));
    let zk = connect(&ens.members[leader].hosts(), Duration::from_secs(10)).await;
    zk.create("/d", b"", &persistent()).await.unwrap();
    let mut acked = BTreeSet::new();
    for i in 0..300 {
        let p = format!("/d/n{i}");
        zk.create(&p, p.as_bytes(), &persistent()).await.unwrap();
        acked.insert(p);
    }
    let victim = (leader + 1) % 3;
    ens.members[victim].wipe();
    ens.members[victim].restart();
    let target = ens.zxid(leader).expect("leader zxid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ens.zxid(victim).is_none_or(|z| z < target) {
        assert!(Instant::now() < deadline, "wiped member was not rebuilt");
        std::thread::sleep(Duration::from_millis(20)); // polled through mntr
    }
    assert_all_present(&ens.members[victim].hosts(), &acked).await;
    // The log was compacted, so the member must have been sent a snapshot.
    let log = ens.members[victim].log();
    assert!(log.contains("installed a snapshot"), "expected a snapshot install in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_member_died_expires_on_the_leader() {
    let mut ens = Ensemble::start(3, "");
    let leader = ens.wait_for_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let observer = connect(&ens.members[leader].hosts(), Duration::from_secs(10)).await;
    // Only this member in its connect string: when it dies the client cannot move.
    let doomed = connect(&ens.members[follower].hosts(), Duration::from_millis(1_000)).await;
    doomed.create("/doomed", b"", &ephemeral()).await.unwrap();
    // Another client's acknowledged write is visible to this one only after
    // a sync (ZooKeeper's model): the follower may apply the create before
    // the leader has (followers' acks commit it while the leader's own
    // disk still syncs it), and the watch would then be one for a creation.
    observer.sync("/").await.unwrap();
    let (stat, gone) = observer.check_and_watch_stat("/doomed").await.unwrap();
    assert!(stat.is_some(), "the synced observer sees the ephemeral");
    let killed_at = Instant::now();
    ens.members[follower].kill();
    let event = tokio::time::timeout(Duration::from_secs(20), gone.changed()).await.expect("the ephemeral goes with its session");
    assert_eq!(event.event_type, zk::EventType::NodeDeleted);
    let waited = killed_at.elapsed();
    // Not before the session timeout: the leader heard from it until the kill.
    assert!(waited >= Duration::from_millis(300), "expired after only {waited:?}");
    assert!(observer.check_stat("/doomed").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_see_every_write_acknowledged_before_them() {
    // Sequentially consistent reads (ZooKeeper's model) may lag on a
    // follower; with readConsistency=linearizable a read through any member
    // sees a write acknowledged through another one just before.
    let ens = Ensemble::start(3, "readConsistency=linearizable\n");
    let leader = ens.wait_for_leader(Duration::from_secs(30));
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let writer = connect(&ens.members[a].hosts(), Duration::from_secs(10)).await;
    let reader = connect(&ens.members[b].hosts(), Duration::from_secs(10)).await;
    retry(Duration::from_secs(20), || writer.create("/lin", b"0", &persistent())).await;
    for i in 1..=200 {
        let v = i.to_string();
        retry(Duration::from_secs(20), || writer.set_data("/lin", v.as_bytes(), None)).await;
        let (got, _) = retry(Duration::from_secs(20), || reader.get_data("/lin")).await;
        assert_eq!(got, v.as_bytes(), "read {i} through member {} missed the write acknowledged through member {}", b + 1, a + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_minority_cannot_write_and_the_majority_goes_on() {
    let ens = Ensemble::start_with_proxies(3, "");
    let old = ens.wait_for_leader(Duration::from_secs(30));
    let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let setup = connect(&ens.members[old].hosts(), Duration::from_secs(10)).await;
    setup.create("/p", b"before", &persistent()).await.unwrap();
    // A client that can only reach the old leader.
    let isolated = connect(&ens.members[old].hosts(), Duration::from_secs(10)).await;

    ens.partition(&[&[old], &majority]);
    let new = ens.wait_for_leader_among(&majority, Duration::from_secs(20));
    let zk = connect(&ens.members[majority[0]].hosts(), Duration::from_secs(10)).await;
    for i in 0..50 {
        let v = format!("majority {i}");
        retry(Duration::from_secs(20), || zk.set_data("/p", v.as_bytes(), None)).await;
    }
    // The old leader steps down (check-quorum) and cannot write.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ens.mode(old).as_deref() == Some("leader") {
        assert!(Instant::now() < deadline, "the isolated leader did not step down");
        std::thread::sleep(Duration::from_millis(20)); // polled through srvr
    }
    let write = tokio::time::timeout(Duration::from_secs(5), isolated.set_data("/p", b"minority", None)).await;
    assert!(!matches!(write, Ok(Ok(_))), "the minority acknowledged a write: {write:?}");

    ens.heal();
    let target = ens.zxid(new).expect("leader zxid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ens.zxid(old).is_none_or(|z| z < target) {
        assert!(Instant::now() < deadline, "the healed member did not converge");
        std::thread::sleep(Duration::from_millis(20)); // polled through mntr
    }
    let healed = connect(&ens.members[old].hosts(), Duration::from_secs(10)).await;
    retry(Duration::from_secs(10), || healed.sync("/p")).await;
    assert_eq!(retry(Duration::from_secs(10), || healed.get_data("/p")).await.0, b"majority 49");
}
