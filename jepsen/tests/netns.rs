//! Ensembles in network namespaces (`--net netns`): the packets a cut
//! drops (one way only for `partition-oneway`), members started inside
//! their namespaces under their own pids, clean runs valid on both targets,
//! and nothing left behind. Skipped, saying so, where namespaces do not
//! work (not root, no `ip netns`, no iptables).

mod common;

use common::{events, n, results, test};
use corral_jepsen::cluster::{Cluster, Target};
use corral_jepsen::netns::{self, Net, Netns};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn netns_works() -> bool {
    match netns::available() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("\n*** SKIPPED: network namespaces do not work here ({e}); the harness falls back to proxies ***\n");
            false
        }
    }
}

/// Names the run printed on its `net: netns (namespaces A B C, root veth D, ...)` line.
fn run_names(out: &str) -> Vec<String> {
    let line = out.lines().find(|l| l.starts_with("net: netns (")).unwrap_or_else(|| panic!("no net line: {out}"));
    let ns = line.split("namespaces ").nth(1).unwrap().split(',').next().unwrap();
    let veth = line.split("root veth ").nth(1).unwrap().split(',').next().unwrap();
    ns.split_whitespace().chain(veth.split_whitespace()).map(str::to_owned).collect()
}

fn listed(cmd: &[&str]) -> String {
    let out = std::process::Command::new("ip").args(cmd).output().expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// None of `names` is a namespace or an interface any more.
fn assert_gone(names: &[String]) {
    let (ns, links) = (listed(&["netns", "list"]), listed(&["-o", "link", "show"]));
    for name in names {
        assert!(!ns.lines().any(|l| l.split_whitespace().next() == Some(name)), "namespace {name} left: {ns}");
        assert!(!links.lines().any(|l| l.split(':').nth(1).is_some_and(|n| n.trim().split('@').next() == Some(name))), "interface {name} left: {links}");
    }
}

/// A one-way cut drops packets in its direction and passes the others:
/// datagrams both ways, and the bytes of a TCP connection made before the
/// cut (the receiver's application still reads what arrives, though its
/// acknowledgements are dropped).
#[test]
fn a_oneway_cut_drops_one_direction_and_passes_the_other() {
    if !netns_works() {
        return;
    }
    let net = Netns::create(3).expect("namespaces");
    let (a, b) = (net.addr(0), net.addr(1));
    let udp = |i: usize, addr| netns::in_namespace(&net.ns(i), move || UdpSocket::bind(SocketAddr::from((addr, 7000))).expect("bind")).unwrap();
    let (ua, ub) = (udp(0, a), udp(1, b));
    for s in [&ua, &ub] {
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    }
    let to_b = SocketAddr::from((b, 7000));
    let to_a = SocketAddr::from((a, 7000));
    // A TCP connection from member 1 to member 2, made while the link is whole.
    let listener = netns::in_namespace(&net.ns(1), move || TcpListener::bind(SocketAddr::from((b, 7001))).unwrap()).unwrap();
    let mut ta = netns::in_namespace(&net.ns(0), move || TcpStream::connect_timeout(&SocketAddr::from((b, 7001)), Duration::from_secs(2)).unwrap()).unwrap();
    let (mut tb, _) = listener.accept().unwrap();
    for s in [&ta, &tb] {
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    }
    let mut buf = [0u8; 64];
    // Whole: both ways.
    ua.send_to(b"a1", to_b).unwrap();
    assert_eq!(ub.recv_from(&mut buf).map(|(k, _)| buf[..k].to_vec()).unwrap(), b"a1");
    ub.send_to(b"b1", to_a).unwrap();
    assert_eq!(ua.recv_from(&mut buf).map(|(k, _)| buf[..k].to_vec()).unwrap(), b"b1");

    // Member 1's packets to member 2 dropped; member 2's to member 1 pass.
    net.set_drops(&[(0, 1)]).unwrap();
    assert_eq!(net.drops(), vec![(0, 1)]);
    assert!(net.rules(1).unwrap().contains(&format!("-A INPUT -s {a}/32 -j DROP")), "{}", net.rules(1).unwrap());
    assert!(!net.rules(0).unwrap().contains("DROP"), "{}", net.rules(0).unwrap());
    ub.send_to(b"b2", to_a).unwrap();
    assert_eq!(ua.recv_from(&mut buf).map(|(k, _)| buf[..k].to_vec()).unwrap(), b"b2", "2 -> 1 must pass");
    tb.write_all(b"t-b2").unwrap();
    let k = ta.read(&mut buf).expect("2 -> 1 over TCP must arrive");
    assert_eq!(&buf[..k], b"t-b2");
    ua.send_to(b"a2", to_b).unwrap();
    assert!(ub.recv_from(&mut buf).is_err(), "1 -> 2 must be dropped, got {:?}", &buf[..2]);
    ta.write_all(b"t-a2").unwrap();
    assert!(tb.read(&mut buf).is_err(), "1 -> 2 over TCP must hang");
    // The third member is untouched.
    let uc = udp(2, net.addr(2));
    uc.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    ua.send_to(b"a3", SocketAddr::from((net.addr(2), 7000))).unwrap();
    assert_eq!(uc.recv_from(&mut buf).map(|(k, _)| buf[..k].to_vec()).unwrap(), b"a3");

    // Healed: what TCP held back is delivered, datagrams pass again.
    net.heal().unwrap();
    assert!(net.drops().is_empty() && !net.rules(1).unwrap().contains("DROP"));
    ua.send_to(b"a4", to_b).unwrap();
    assert_eq!(ub.recv_from(&mut buf).map(|(k, _)| buf[..k].to_vec()).unwrap(), b"a4");
    tb.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let k = tb.read(&mut buf).expect("retransmitted after the heal");
    assert_eq!(&buf[..k], b"t-a2");

    // The root namespace reaches every member; no member reaches past its /24.
    assert!(listed(&["-n", &net.ns(0), "route", "show"]).lines().all(|l| l.contains(&net.subnet())), "a route out of the bridge");
    let (names, links) = net.names();
    drop((ua, ub, uc, ta, tb, listener));
    drop(net);
    assert_gone(&[names, links].concat());
}

/// Members run inside their namespaces under their own pids (`ip netns
/// exec` execs), so kill and pause by pid work; an isolated leader is replaced.
#[test]
fn members_run_in_their_namespaces_under_their_own_pids() {
    if !netns_works() {
        return;
    }
    let _one = common::one_at_a_time();
    let mut c = Cluster::start_on(Net::Netns, Target::Corral, 3, "", None).expect("start");
    let ns = c.netns().expect("in namespaces");
    let names: Vec<String> = (0..3).map(|i| ns.ns(i)).collect();
    for (i, name) in names.iter().enumerate() {
        let pid = c.member_pid(i).expect("running");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(exe.ends_with("corral"), "member {i}'s pid {pid} is {exe:?}");
        let inside = listed(&["netns", "pids", name]);
        assert_eq!(inside.split_whitespace().collect::<Vec<_>>(), vec![pid.to_string()], "{name}");
        assert!(c.host(i).starts_with(&format!("{}:", ns.addr(i))), "{}", c.host(i));
    }
    let wait_for_leader = |c: &Cluster, among: &[usize]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = c.leader().filter(|l| among.contains(l)) {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader among {among:?}");
            std::thread::sleep(Duration::from_millis(50)); // polled: leadership shows only in srvr
        }
    };
    let old = wait_for_leader(&c, &[0, 1, 2]);
    let rest: Vec<usize> = (0..3).filter(|m| *m != old).collect();
    c.partition(&[vec![old], rest.clone()]);
    let new = wait_for_leader(&c, &rest);
    c.heal();
    // kill -9 by pid: the member's namespace is empty, then it restarts in it.
    c.kill(new);
    assert_eq!(listed(&["netns", "pids", &names[new]]).trim(), "");
    c.restart(new).unwrap();
    let pid = c.member_pid(new).unwrap();
    assert_eq!(listed(&["netns", "identify", &pid.to_string()]).trim(), names[new]);
    c.pause(old);
    let stat = format!("/proc/{}/stat", c.member_pid(old).unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = std::fs::read_to_string(&stat).unwrap();
        if s.rsplit(')').next().unwrap().split_whitespace().next() == Some("T") {
            break;
        }
        assert!(Instant::now() < deadline, "not stopped by SIGSTOP: {s}");
        std::thread::sleep(Duration::from_millis(10)); // polled: the stop shows only in /proc
    }
    assert_eq!(c.recover().unwrap(), Vec::<(usize, String)>::new(), "no member exited on its own");
    wait_for_leader(&c, &[0, 1, 2]);
    drop(c);
    assert_gone(&names);
}

#[test]
fn clean_corral_in_netns_under_partition_and_kill_is_valid_and_leaves_nothing() {
    if !netns_works() {
        return;
    }
    let (code, out, dir) = test("register", &["--net", "netns", "--nemesis", "partition,kill", "--time", "8", "--read-consistency", "linearizable", "--seed", "23"]);
    let r = results(&dir.0);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nVALID\n") && out.contains("\nnet: netns\n") && out.contains(" --net netns"), "{out}");
    assert_eq!(r["net"], "netns");
    let ev = events(&r);
    assert!(ev.iter().any(|e| e.starts_with("partition")) && ev.iter().any(|e| e.starts_with("kill -9")), "{ev:?}");
    assert!(n(&r["ops"]["ok"]) > 500, "{}", r["ops"]);
    assert_gone(&run_names(&out));
}

#[test]
fn oneway_partitions_keep_registers_linearizable_and_need_netns() {
    // Proxies cannot cut one direction: refused before anything starts.
    let (code, out, _) = test("register", &["--net", "proxy", "--nemesis", "partition-oneway", "--time", "1"]);
    assert_eq!(code, 2, "{out}");
    if !netns_works() {
        return;
    }
    let (code, out, dir) = test("register", &["--net", "netns", "--nemesis", "partition-oneway", "--time", "10", "--read-consistency", "linearizable", "--seed", "7"]);
    let r = results(&dir.0);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nVALID\n"), "{out}");
    let ev = events(&r);
    assert!(ev.iter().filter(|e| e.starts_with("partition one-way")).count() >= 2, "{ev:?}");
    assert!(ev.iter().any(|e| e.contains(" dropped (") && e.contains(" pass)")), "{ev:?}");
    assert!(n(&r["check"]["checked_ops"]) > 500, "{}", r["check"]);
    assert_gone(&run_names(&out));
}

#[test]
fn zookeeper_in_netns_under_partition_is_valid() {
    if !netns_works() || !common::zookeeper_available() {
        return;
    }
    let (code, out, dir) = test("register", &["--target", "zookeeper", "--net", "netns", "--nemesis", "partition", "--time", "6", "--seed", "3"]);
    let r = results(&dir.0);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nVALID\n"), "{out}");
    assert_eq!(r["net"], "netns");
    assert!(events(&r).iter().any(|e| e.starts_with("partition")), "{r}");
    assert!(n(&r["ops"]["ok"]) > 200, "{}", r["ops"]);
    assert_gone(&run_names(&out));
}

/// What a run killed before its cleanup leaves (its pid dead) is removed
/// by the next; a live run's namespaces are not touched.
#[test]
fn stale_namespaces_of_a_dead_run_are_removed() {
    if !netns_works() {
        return;
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("cj{dead}-0-1");
    let live = format!("cj{}-999-1", std::process::id());
    for ns in [&stale, &live] {
        assert!(std::process::Command::new("ip").args(["netns", "add", ns]).status().unwrap().success());
    }
    let removed = netns::remove_stale();
    let now = listed(&["netns", "list"]);
    let _ = std::process::Command::new("ip").args(["netns", "del", &live]).status();
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(!removed.contains(&live) && now.contains(&live), "{removed:?} {now}");
    assert!(!now.lines().any(|l| l.split_whitespace().next() == Some(stale.as_str())), "{now}");
}
