//! The cluster control the nemeses use, on real corral processes.

use corral_jepsen::cluster::{Cluster, Target};
use std::time::{Duration, Instant};

fn wait_for_leader(c: &Cluster, among: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(l) = c.leader().filter(|l| among.contains(l)) {
            return l;
        }
        assert!(Instant::now() < deadline, "no leader among {among:?}");
        std::thread::sleep(Duration::from_millis(50)); // polled: leadership shows only in srvr
    }
}

#[test]
fn partition_kill_and_pause_move_leadership() {
    let mut c = Cluster::start(Target::Corral, 3, "", None).expect("start");
    let old = wait_for_leader(&c, &[0, 1, 2]);
    let rest: Vec<usize> = (0..3).filter(|m| *m != old).collect();
    // Isolated, the leader steps down (check-quorum) and the others elect one of themselves.
    c.partition(&[vec![old], rest.clone()]);
    let new = wait_for_leader(&c, &rest);
    assert_ne!(new, old);
    c.heal();
    // kill -9 the new leader: the two others elect a leader.
    c.kill(new);
    let others: Vec<usize> = (0..3).filter(|m| *m != new).collect();
    let third = wait_for_leader(&c, &others);
    c.restart(new).unwrap();
    // A paused leader is replaced as well; resumed, it rejoins.
    c.pause(third);
    let fourth = wait_for_leader(&c, &(0..3).filter(|m| *m != third).collect::<Vec<_>>());
    assert_ne!(fourth, third);
    c.resume(third);
    c.recover().unwrap();
    wait_for_leader(&c, &[0, 1, 2]);
}

#[test]
fn zookeeper_members_are_partitioned_through_the_proxies() {
    if !corral_tests::zookeeper::ZooKeeper::available() {
        eprintln!("Apache ZooKeeper is not installed (tests/clients/install-deps.sh): skipped");
        return;
    }
    let mut c = Cluster::start(Target::Zookeeper, 3, "", None).expect("start");
    let old = wait_for_leader(&c, &[0, 1, 2]);
    let rest: Vec<usize> = (0..3).filter(|m| *m != old).collect();
    c.partition(&[vec![old], rest.clone()]);
    let new = wait_for_leader(&c, &rest);
    assert_ne!(new, old);
    c.heal();
    c.kill(new);
    c.restart(new).unwrap();
    c.recover().unwrap();
    wait_for_leader(&c, &[0, 1, 2]);
}
