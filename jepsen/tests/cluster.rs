//! The cluster control the nemeses use, on real corral processes.

use corral_jepsen::cluster::{Cluster, Target};
use std::time::{Duration, Instant};

/// How long an election may take. ZooKeeper's can take several rounds of
/// `initLimit` (10 s here): after a partition, a member left in an older
/// election round refuses the leader the other elected ("Oracle indicates
/// not to follow") until that leader gives up waiting for followers and a
/// new round begins. Seen taking over 30 s on an idle machine.
fn election_timeout(c: &Cluster) -> Duration {
    match c.target() {
        Target::Corral => Duration::from_secs(30),
        Target::Zookeeper => Duration::from_secs(120),
    }
}

fn wait_for_leader(c: &Cluster, among: &[usize]) -> usize {
    let start = Instant::now();
    let deadline = start + election_timeout(c);
    loop {
        if let Some(l) = c.leader().filter(|l| among.contains(l)) {
            eprintln!("leader {l} among {among:?} after {:?}", start.elapsed());
            return l;
        }
        if Instant::now() > deadline {
            for i in 0..c.len() {
                let log = c.log(i);
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- member {i}, last lines of its log:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            panic!("no leader among {among:?}");
        }
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
    assert_eq!(c.recover().unwrap(), Vec::<(usize, String)>::new(), "no member exited on its own");
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
    assert_eq!(c.recover().unwrap(), Vec::<(usize, String)>::new(), "no member exited on its own");
    wait_for_leader(&c, &[0, 1, 2]);
}
