//! Apache ZooKeeper 3.8 from Debian's `zookeeper` package, started on
//! loopback for side-by-side (differential) tests and benchmarks: a
//! standalone server ([`ZooKeeper`]) or an ensemble of `QuorumPeerMain`
//! processes from generated zoo.cfg files with `server.N` lines and `myid`
//! ([`ZooKeeperEnsemble`], the counterpart of [`crate::Ensemble`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The jars of Debian's ZooKeeper server (in /usr/share/java).
pub const JARS: &[&str] = &[
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
    "netty-handler.jar",
    "netty-transport.jar",
    "netty-common.jar",
    "netty-buffer.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar",
    "commons-cli.jar",
    "jline.jar",
    "metrics-core.jar",
    "snappy-java.jar",
];

/// How long ZooKeeper may take to answer `ruok`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ZooKeeper {
    child: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}


/// Sends a four-letter word and returns the whole answer (empty if the
/// server cannot be reached).
pub fn four_letter(addr: SocketAddr, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The `Mode:` line of `srvr` (`standalone`, `leader`, `follower`), or
/// `None` while the server does not serve requests (ZooKeeper answers
/// `ruok` before that, and `srvr` without a mode).
pub fn mode(addr: SocketAddr) -> Option<String> {
    four_letter(addr, "srvr").lines().find_map(|l| l.strip_prefix("Mode: ").map(str::to_owned))
}

/// The classpath of Debian's ZooKeeper server.
fn classpath() -> String {
    JARS.iter().map(|j| format!("/usr/share/java/{j}")).collect::<Vec<_>>().join(":")
}

/// Starts `QuorumPeerMain` on `cfg`, logging to `dir/zookeeper.log` (at
/// INFO, through slf4j-simple instead of the silent binding of [`JARS`], so
/// that a failed test can show what the members did: elections in
/// particular).
/// Inside network namespace `netns` when given (`ip netns exec` execs the
/// JVM: the pid is its).
fn spawn_java(cfg: &std::path::Path, dir: &std::path::Path, heap_mb: u32, env: &[(String, String)], netns: Option<&str>) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("zookeeper.log")).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "java"]);
            c
        }
        None => Command::new("java"),
    };
    cmd.arg("-cp")
        .arg(classpath().replace("slf4j-nop.jar", "slf4j-simple.jar"))
        .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
        .arg("-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS")
        .arg(format!("-Xmx{heap_mb}m"))
        .arg("-Dzookeeper.admin.enableServer=false")
        .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
        .arg(cfg)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .expect("start java")
}

impl ZooKeeper {
    /// Whether Debian's ZooKeeper is installed here.
    pub fn available() -> bool {
        PathBuf::from("/usr/share/java/zookeeper.jar").exists()
    }

    /// Starts a standalone server with the same timing settings as `Corral::start`.
    pub fn start(extra_cfg: &str) -> ZooKeeper {
        assert!(Self::available(), "Apache ZooKeeper is not installed: run tests/clients/install-deps.sh");
        let dir = std::env::temp_dir().join(format!("corral-zk-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let cfg = dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=200\ndataDir={}\nclientPortAddress=127.0.0.1\nclientPort={port}\nadmin.enableServer=false\n4lw.commands.whitelist=*\nextendedTypesEnabled=true\n{extra_cfg}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = spawn_java(&cfg, &dir, 256, &[], None);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut zk = ZooKeeper { child, dir, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        while mode(addr).is_none() {
            if Instant::now() > deadline || zk.child.try_wait().map(|s| s.is_some()).unwrap_or(true) {
                let log = std::fs::read_to_string(zk.dir.join("zookeeper.log")).unwrap_or_default();
                panic!("ZooKeeper did not start on {addr}; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100)); // polling a port that has no event to await
        }
        zk
    }

    pub fn hosts(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One member of a [`ZooKeeperEnsemble`]: a `QuorumPeerMain` process with
/// its own directory (zoo.cfg, `data/myid`, `zookeeper.log`).
pub struct ZooKeeperMember {
    child: Option<Child>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// Extra environment variables (a fault injector preloaded, say).
    env: Vec<(String, String)>,
    /// The network namespace it runs in, if any.
    netns: Option<String>,
}

impl ZooKeeperMember {
    /// `host:port` for clients.
    pub fn hosts(&self) -> String {
        self.addr.to_string()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("zookeeper.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still there (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Starts again (after [`ZooKeeperMember::kill`]) on the same zoo.cfg
    /// and data; does not wait for it to serve.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_java(&self.dir.join("zoo.cfg"), &self.dir, 512, &self.env, self.netns.as_deref()));
    }

    /// As [`ZooKeeperMember::restart`], with `env` added to the JVM's
    /// environment (replacing what an earlier call added).
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.restart();
    }
}

impl Drop for ZooKeeperMember {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An ensemble of Apache ZooKeeper processes on loopback, from generated
/// zoo.cfg files with `server.N=127.0.0.1:quorumPort:electionPort` lines and
/// `myid` files: the reference for [`crate::Ensemble`].
///
/// Timing: `tickTime=200` as `Corral`'s helpers (so both negotiate the same
/// session timeouts), with `initLimit=50` and `syncLimit=25` (10 s and 5 s)
/// so that a follower slowed by a loaded 2-core machine is not dropped;
/// neither limit delays a failover after kill -9, where the peers see their
/// connections to the dead leader close at once.
pub struct ZooKeeperEnsemble {
    pub members: Vec<ZooKeeperMember>,
    /// With proxies: `links[(i, j)]` carries member i's connections to
    /// member j (quorum and election ports alike).
    links: std::collections::BTreeMap<(usize, usize), crate::LinkProxy>,
    /// In network namespaces: the network, removed after the members stop
    /// (fields drop in order).
    net: Option<crate::netns::Netns>,
}

impl ZooKeeperEnsemble {
    /// Starts `n` members with `extra_cfg` appended to each zoo.cfg and
    /// waits until every one serves requests (`srvr` shows a mode).
    pub fn start(n: usize, extra_cfg: &str) -> ZooKeeperEnsemble {
        let servers: String = (1..=n).map(|i| format!("server.{i}=127.0.0.1:{}:{}\n", free_port(), free_port())).collect();
        Self::start_from(n, extra_cfg, |_| servers.clone(), Default::default(), None)
    }

    /// As [`ZooKeeperEnsemble::start`], each member in a network namespace
    /// of its own ([`crate::netns::Netns`]), zoo.cfg naming the members'
    /// real addresses (client port 2181, quorum 2888, election 3888 on
    /// each); partitions drop packets. Panics if the namespaces cannot be made.
    pub fn start_in_netns(n: usize, extra_cfg: &str) -> ZooKeeperEnsemble {
        let net = crate::netns::Netns::create(n).unwrap_or_else(|e| panic!("network namespaces: {e}"));
        let servers: String = (0..n).map(|i| format!("server.{}={}:2888:3888\n", i + 1, net.addr(i))).collect();
        Self::start_from(n, extra_cfg, |_| servers.clone(), Default::default(), Some(net))
    }

    /// The network namespaces, for an ensemble started in them.
    pub fn netns(&self) -> Option<&crate::netns::Netns> {
        self.net.as_ref()
    }

    /// As [`ZooKeeperEnsemble::start`], with every connection between
    /// members through a [`crate::LinkProxy`] so that partitions can be
    /// injected: member i's zoo.cfg names, for each other member j, proxies
    /// to j's quorum and election ports (its own line has its real ports,
    /// which it binds). ZooKeeper opens election connections from the member
    /// with the higher id only, and followers dial the leader, so each
    /// connection runs through the proxy of its dialer's side.
    pub fn start_with_proxies(n: usize, extra_cfg: &str) -> ZooKeeperEnsemble {
        let quorum: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let election: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut links = std::collections::BTreeMap::new();
        let mut election_links = std::collections::BTreeMap::new();
        for i in 0..n {
            for j in (0..n).filter(|j| *j != i) {
                links.insert((i, j), crate::LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], quorum[j]))));
                election_links.insert((i, j), crate::LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], election[j]))));
            }
        }
        let ports: std::collections::BTreeMap<(usize, usize), (u16, u16)> = links.keys().map(|k| (*k, (links[k].port, election_links[k].port))).collect();
        let servers = |i: usize| -> String {
            (0..n)
                .map(|j| {
                    let (q, e) = if i == j { (quorum[j], election[j]) } else { ports[&(i, j)] };
                    format!("server.{}=127.0.0.1:{q}:{e}\n", j + 1)
                })
                .collect()
        };
        // Both proxies of a link are cut together: keep them as one entry
        // each, with the election proxies under indexes past n.
        let mut all = links;
        for ((i, j), p) in election_links {
            all.insert((i + n, j + n), p);
        }
        Self::start_from(n, extra_cfg, servers, all, None)
    }

    fn start_from(n: usize, extra_cfg: &str, servers: impl Fn(usize) -> String, links: std::collections::BTreeMap<(usize, usize), crate::LinkProxy>, net: Option<crate::netns::Netns>) -> ZooKeeperEnsemble {
        assert!(ZooKeeper::available(), "Apache ZooKeeper is not installed: run tests/clients/install-deps.sh");
        static NEXT_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let members: Vec<ZooKeeperMember> = (1..=n)
            .map(|i| {
                // In a namespace every member has port 2181 on its own address.
                let (ip, port) = match &net {
                    Some(net) => (std::net::IpAddr::V4(net.addr(i - 1)), 2181),
                    None => (std::net::IpAddr::from([127, 0, 0, 1]), free_port()),
                };
                let netns = net.as_ref().map(|net| net.ns(i - 1));
                let dir = std::env::temp_dir().join(format!("corral-zk-ens-{}-{port}-{}", std::process::id(), NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(dir.join("data")).unwrap();
                std::fs::write(dir.join("data").join("myid"), format!("{i}\n")).unwrap();
                let cfg = dir.join("zoo.cfg");
                std::fs::write(
                    &cfg,
                    format!(
                        "tickTime=200\ninitLimit=50\nsyncLimit=25\ndataDir={}\nclientPortAddress={ip}\nclientPort={port}\nadmin.enableServer=false\n4lw.commands.whitelist=*\nextendedTypesEnabled=true\n{servers}{extra_cfg}\n",
                        dir.join("data").display(),
                        servers = servers(i - 1),
                    ),
                )
                .unwrap();
                let child = spawn_java(&cfg, &dir, 512, &[], netns.as_deref());
                ZooKeeperMember { child: Some(child), dir, addr: SocketAddr::new(ip, port), env: Vec::new(), netns }
            })
            .collect();
        let mut e = ZooKeeperEnsemble { members, links, net };
        let deadline = Instant::now() + START_TIMEOUT;
        for i in 0..n {
            while e.mode(i).is_none() {
                let exited = e.members[i].child.as_mut().map(|c| c.try_wait().map(|s| s.is_some()).unwrap_or(true)).unwrap_or(true);
                if Instant::now() > deadline || exited {
                    let log = e.members[i].log();
                    e.members.clear();
                    panic!("ZooKeeper member {} did not start serving; log:\n{log}", i + 1);
                }
                std::thread::sleep(Duration::from_millis(50)); // polled: readiness shows only in srvr
            }
        }
        e
    }

    /// Every member's client address, as a connect string.
    pub fn hosts(&self) -> String {
        self.members.iter().map(|m| m.hosts()).collect::<Vec<_>>().join(",")
    }

    /// Cuts every connection between members of different `groups`
    /// (indexes); connections within a group stay.
    pub fn partition(&self, groups: &[&[usize]]) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        self.cut(|i, j| group_of(i) != group_of(j));
    }

    /// Cuts the connections member i dials to member j (indexes), quorum
    /// and election alike, where `cut(i, j)`; restores the others. To part
    /// two members, cut both directions: which one dials depends on the
    /// connection (the higher id for elections, followers to the leader).
    /// In namespaces, `cut(i, j)` drops the packets between i and j both ways.
    pub fn cut(&self, cut: impl Fn(usize, usize) -> bool) {
        let n = self.members.len();
        if let Some(net) = &self.net {
            let drops: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).filter(|(i, j)| i != j && (cut(*i, *j) || cut(*j, *i))).collect();
            net.set_drops(&drops).unwrap_or_else(|e| panic!("cut: {e}"));
            return;
        }
        assert!(!self.links.is_empty(), "cutting links needs ZooKeeperEnsemble::start_with_proxies");
        for ((i, j), link) in &self.links {
            link.set_cut(cut(i % n, j % n));
        }
    }

    /// In namespaces only: drops the packets from member `from` to member
    /// `to` for each `(from, to)` given, the other way passing; restores
    /// every other link.
    pub fn drop_packets(&self, drops: &[(usize, usize)]) -> Result<(), String> {
        self.net.as_ref().ok_or("one-way cuts need network namespaces (ZooKeeperEnsemble::start_in_netns)")?.set_drops(drops)
    }

    /// Restores every connection.
    pub fn heal(&self) {
        if let Some(net) = &self.net {
            net.heal().unwrap_or_else(|e| panic!("heal: {e}"));
        }
        for link in self.links.values() {
            link.set_cut(false);
        }
    }

    /// The `srvr` mode of member `i` (index), or `None` if it is down or
    /// not serving.
    pub fn mode(&self, i: usize) -> Option<String> {
        let m = &self.members[i];
        m.child.as_ref()?;
        mode(m.addr)
    }

    /// The index of the member that leads, waiting up to `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = (0..self.members.len()).find(|i| self.mode(*i).as_deref() == Some("leader")) {
                return i;
            }
            assert!(Instant::now() < deadline, "no ZooKeeper leader within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20)); // polled: leadership shows only in srvr
        }
    }
}
