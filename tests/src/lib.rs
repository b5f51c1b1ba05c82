//! Test support: start a real `corral` process on loopback with its own data
//! directory, kill it (SIGKILL) or stop it (SIGTERM), restart it on the same
//! port and data, and talk raw protocol when a stock client would hide what
//! is under test.
//!
//! The binary is `$CORRAL_BIN`, else `{debug,release}/corral` in
//! `$CARGO_TARGET_DIR` or this workspace's `target` (the test command builds
//! it first).

pub mod netns;
pub mod zookeeper;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The target directory: `CARGO_TARGET_DIR`, when set, as cargo reads it
/// (relative to where cargo runs, here the root), else `target`.
fn target_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("CARGO_TARGET_DIR").map(|d| root.join(d)).unwrap_or_else(|| root.join("target"))
}

pub fn corral_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CORRAL_BIN") {
        return PathBuf::from(p);
    }
    for profile in ["debug", "release"] {
        let p = target_dir().join(profile).join("corral");
        if p.exists() {
            return p;
        }
    }
    panic!("no corral binary: run `cargo build -p corral` first or set CORRAL_BIN");
}

/// The binary for benchmarks: `$CORRAL_BIN`, else the release build (a
/// debug build beside it would otherwise win in [`corral_bin`]). Exits
/// with a hint when there is none.
pub fn corral_release_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CORRAL_BIN") {
        return PathBuf::from(p);
    }
    let p = target_dir().join("release").join("corral");
    if !p.exists() {
        eprintln!("no release corral binary at {}: run `cargo build --release -p corral` first or set CORRAL_BIN", p.display());
        std::process::exit(1);
    }
    p
}

/// The start every bench binary shares: `None` when cargo only probes the
/// harness-less bench (`--list`); exits if Apache ZooKeeper is missing;
/// otherwise points `CORRAL_BIN` at the release binary (call it before any
/// thread that starts a corral exists) and returns it.
pub fn bench_start() -> Option<PathBuf> {
    if std::env::args().any(|a| a == "--list") {
        return None; // `cargo test --benches` probes harness-less benches this way
    }
    if !zookeeper::ZooKeeper::available() {
        eprintln!("Apache ZooKeeper is not installed: run tests/clients/install-deps.sh");
        std::process::exit(1);
    }
    let bin = corral_release_bin();
    std::env::set_var("CORRAL_BIN", &bin);
    println!("corral binary: {}", bin.display());
    Some(bin)
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A corral server process owned by a test. Killed when dropped.
pub struct Corral {
    child: Option<Child>,
    /// Every line the server printed on stdout.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    extra_cfg: String,
    /// `myid`, for an ensemble member.
    myid: Option<u64>,
    /// Extra command-line arguments after `server zoo.cfg`.
    args: Vec<String>,
    /// Extra environment variables (a fault injector preloaded, say).
    env: Vec<(String, String)>,
    /// The network namespace it runs in (`ip netns exec`), if any.
    netns: Option<String>,
}

impl Corral {
    pub fn start() -> Corral {
        Corral::start_with("")
    }

    /// Starts with `extra_cfg` appended to a minimal zoo.cfg (tickTime=200 so
    /// session timeouts are short, every four-letter word enabled).
    pub fn start_with(extra_cfg: &str) -> Corral {
        let dir = std::env::temp_dir().join(format!(
            "corral-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let mut c = Corral { child: None, stdout: Default::default(), dir, addr: "127.0.0.1:0".parse().unwrap(), extra_cfg: extra_cfg.to_owned(), myid: None, args: Vec::new(), env: Vec::new(), netns: None };
        c.spawn();
        c
    }

    /// An ensemble member `myid` with its own directory and zoo.cfg lines.
    fn member(myid: u64, cfg: &str) -> Corral {
        Corral::member_at(myid, cfg, "127.0.0.1:0".parse().unwrap(), None)
    }

    /// As [`Corral::member`], serving clients on `addr` (port 0: any),
    /// inside network namespace `netns` when given.
    fn member_at(myid: u64, cfg: &str, addr: SocketAddr, netns: Option<String>) -> Corral {
        let dir = std::env::temp_dir().join(format!("corral-ens-{}-{}", std::process::id(), NEXT_DIR.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let mut c = Corral {
            child: None,
            stdout: Default::default(),
            dir,
            addr,
            extra_cfg: cfg.to_owned(),
            myid: Some(myid),
            args: Vec::new(),
            env: Vec::new(),
            netns,
        };
        c.spawn();
        c
    }

    /// Removes the member's data (not its myid): it restarts empty.
    pub fn wipe(&mut self) {
        self.kill();
        let data = self.dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
    }

    fn write_cfg(&self) -> PathBuf {
        let cfg = self.dir.join("zoo.cfg");
        let text = format!(
            "tickTime=200\ndataDir={}\nclientPortAddress={}\nclientPort={}\n4lw.commands.whitelist=*\nextendedTypesEnabled=true\nznode.container.checkIntervalMs=100\n{}\n",
            self.dir.join("data").display(),
            self.addr.ip(),
            self.addr.port(),
            self.extra_cfg
        );
        std::fs::write(&cfg, text).expect("write zoo.cfg");
        cfg
    }

    /// Restarts on the same port and data with extra command-line arguments.
    pub fn restart_with_args(&mut self, args: &[&str]) {
        self.kill();
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.spawn();
    }

    /// Restarts on the same port, data and arguments with `env` added to
    /// the server's environment (replacing what an earlier call added).
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.kill();
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.spawn();
    }

    fn spawn(&mut self) {
        let cfg = self.write_cfg();
        if let Some(id) = self.myid {
            let data = self.dir.join("data");
            std::fs::create_dir_all(&data).expect("data dir");
            std::fs::write(data.join("myid"), format!("{id}\n")).expect("write myid");
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("corral.log")).expect("log file");
        // In a namespace, `ip netns exec` execs the server: the pid is its.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(corral_bin());
                c
            }
            None => Command::new(corral_bin()),
        };
        let mut child = cmd
            .arg("server")
            .arg(&cfg)
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(log)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .expect("spawn corral");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let lines = self.stdout.clone();
        lines.lock().unwrap().clear();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                // The plain listener is announced last, after any TLS one.
                if let Some(a) = line.strip_prefix("corral listening on ") {
                    let _ = tx.send(a.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(self.dir.join("corral.log")).unwrap_or_default();
                panic!("corral did not start listening within {START_TIMEOUT:?}; log:\n{log}");
            }
        };
        self.addr = addr.parse().expect("listening address");
        self.child = Some(child);
    }

    /// The rest of the first stdout line starting with `prefix`.
    pub fn stdout_line(&self, prefix: &str) -> Option<String> {
        self.stdout.lock().unwrap().iter().find_map(|l| l.strip_prefix(prefix).map(|s| s.trim().to_owned()))
    }

    /// `host:port` for clients.
    pub fn hosts(&self) -> String {
        self.addr.to_string()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        matches!(c.wait(), Ok(s) if s.success())
    }

    /// Starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("corral.log")).unwrap_or_default()
    }

    /// Sends a four-letter word and returns the whole answer.
    pub fn four_letter(&self, word: &str) -> String {
        let mut s = TcpStream::connect(self.addr).expect("connect for 4lw");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(word.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A loopback port free at the time of asking (the quorum ports of an
/// ensemble must be known before any member starts).
///
/// Not from `bind(:0)`: that gives a port of the kernel's ephemeral range,
/// which the kernel may hand out again, before the member that is to listen
/// on it starts, as the source port of any outgoing connection (a peer
/// link, a client); the member then fails with "address in use" (seen in
/// CI with six ensembles starting side by side). So ports come from below
/// that range, each handed out once per process, from a window that
/// depends on the process id, skipping any something listens on.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const LOW: usize = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<usize>().ok()))
        .unwrap_or(32_768);
    if ephemeral_low < LOW + 2_000 {
        return std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().unwrap().port();
    }
    let span = ephemeral_low - LOW;
    let base = (std::process::id() as usize).wrapping_mul(7_919) % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "every test port below the ephemeral range handed out");
        let port = (LOW + (base + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A fault-injecting TCP proxy for one direction of a link between two
/// members: it forwards connections to `target` until cut; cutting closes
/// the connections it carries (the members see them close, as when a
/// network fails and TCP gives up) and refuses new ones until healed.
pub struct LinkProxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LinkProxy {
    pub fn start(target: SocketAddr) -> LinkProxy {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let (cut, generation, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (c, g, st) = (cut.clone(), generation.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        if c.load(Ordering::Relaxed) {
                            continue; // dropped: refused while cut
                        }
                        let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else { continue };
                        let born = g.load(Ordering::Relaxed);
                        for (from, to) in [(inbound.try_clone(), outbound.try_clone()), (outbound.try_clone(), inbound.try_clone())] {
                            let (Ok(mut from), Ok(mut to)) = (from, to) else { continue };
                            let (g, st) = (g.clone(), st.clone());
                            std::thread::spawn(move || {
                                let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
                                let mut buf = [0u8; 64 * 1024];
                                // Bounded by the link's life: a cut, a stop, EOF or an error ends it.
                                while g.load(Ordering::Relaxed) == born && !st.load(Ordering::Relaxed) {
                                    match from.read(&mut buf) {
                                        Ok(0) => break,
                                        Ok(n) => {
                                            if to.write_all(&buf[..n]).is_err() {
                                                break;
                                            }
                                        }
                                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                                        Err(_) => break,
                                    }
                                }
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                            });
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        LinkProxy { port, cut, generation, stop }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
        if cut {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An ensemble of real `corral` processes on loopback, from generated
/// zoo.cfg files with `server.N` lines and `myid` files.
pub struct Ensemble {
    pub members: Vec<Corral>,
    /// With proxies: `links[(i, j)]` carries member i's link to member j.
    links: std::collections::BTreeMap<(usize, usize), LinkProxy>,
    /// In network namespaces: the network, removed after the members stop
    /// (fields drop in order).
    net: Option<netns::Netns>,
}

impl Ensemble {
    /// Starts `n` members with `extra_cfg` appended to each zoo.cfg, and
    /// waits until one of them leads.
    pub fn start(n: usize, extra_cfg: &str) -> Ensemble {
        let servers: String = (1..=n).map(|i| format!("server.{i}=127.0.0.1:{}:{}\n", free_port(), free_port())).collect();
        let members = (1..=n)
            .map(|i| Corral::member(i as u64, &format!("{servers}{extra_cfg}")))
            .collect();
        let e = Ensemble { members, links: Default::default(), net: None };
        e.wait_until_formed(Duration::from_secs(30));
        e
    }

    /// Waits until every member knows the leader (a member found with an
    /// empty log takes no part before it has learned the ensemble's term).
    pub fn wait_until_formed(&self, timeout: Duration) {
        self.wait_for_leader(timeout);
        let deadline = std::time::Instant::now() + timeout;
        for i in 0..self.members.len() {
            loop {
                let leader = self.members[i].four_letter("mntr").lines().find_map(|l| l.strip_prefix("zk_raft_leader\t").map(str::to_owned));
                if leader.is_some_and(|l| l != "0") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "member {} did not join within {timeout:?}", i + 1);
                std::thread::sleep(Duration::from_millis(20)); // polled through mntr
            }
        }
    }

    /// As [`Ensemble::start`], with every link between members through a
    /// [`LinkProxy`] so that tests can partition them: member i's zoo.cfg
    /// names, for each other member j, the proxy of the link i→j.
    pub fn start_with_proxies(n: usize, extra_cfg: &str) -> Ensemble {
        let quorum: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let election: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut links = std::collections::BTreeMap::new();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    links.insert((i, j), LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], quorum[j]))));
                }
            }
        }
        let members = (0..n)
            .map(|i| {
                let servers: String = (0..n)
                    .map(|j| {
                        let port = if i == j { quorum[j] } else { links[&(i, j)].port };
                        format!("server.{}=127.0.0.1:{port}:{}\n", j + 1, election[j])
                    })
                    .collect();
                Corral::member(i as u64 + 1, &format!("{servers}{extra_cfg}"))
            })
            .collect();
        let e = Ensemble { members, links, net: None };
        e.wait_until_formed(Duration::from_secs(30));
        e
    }

    /// As [`Ensemble::start`], each member in a network namespace of its
    /// own ([`netns::Netns`]): zoo.cfg names the members' real addresses
    /// (client port 2181, quorum 2888, election 3888 on each), and
    /// partitions drop packets. Panics if the namespaces cannot be made.
    pub fn start_in_netns(n: usize, extra_cfg: &str) -> Ensemble {
        let net = netns::Netns::create(n).unwrap_or_else(|e| panic!("network namespaces: {e}"));
        let servers: String = (0..n).map(|i| format!("server.{}={}:2888:3888\n", i + 1, net.addr(i))).collect();
        let mut members = Vec::new();
        for i in 0..n {
            let addr = SocketAddr::from((net.addr(i), 2181));
            members.push(Corral::member_at(i as u64 + 1, &format!("{servers}{extra_cfg}"), addr, Some(net.ns(i))));
        }
        let e = Ensemble { members, links: Default::default(), net: Some(net) };
        e.wait_until_formed(Duration::from_secs(30));
        e
    }

    /// The network namespaces, for an ensemble started in them.
    pub fn netns(&self) -> Option<&netns::Netns> {
        self.net.as_ref()
    }

    /// Cuts every link between members of different `groups` (indexes);
    /// links within a group stay.
    pub fn partition(&self, groups: &[&[usize]]) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        self.cut(|i, j| group_of(i) != group_of(j));
    }

    /// Cuts the link from member i to member j (indexes) where `cut(i, j)`,
    /// restores the others. With proxies a link carries the connections i
    /// dials to j, both ways: to part two members, cut both of their links.
    /// In namespaces, `cut(i, j)` drops the packets between i and j both ways.
    pub fn cut(&self, cut: impl Fn(usize, usize) -> bool) {
        if let Some(net) = &self.net {
            let n = self.members.len();
            let drops: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).filter(|(i, j)| i != j && (cut(*i, *j) || cut(*j, *i))).collect();
            net.set_drops(&drops).unwrap_or_else(|e| panic!("cut: {e}"));
            return;
        }
        assert!(!self.links.is_empty(), "cutting links needs Ensemble::start_with_proxies");
        for ((i, j), link) in &self.links {
            link.set_cut(cut(*i, *j));
        }
    }

    /// In namespaces only: drops the packets from member `from` to member
    /// `to` for each `(from, to)` given, the other way passing; restores
    /// every other link.
    pub fn drop_packets(&self, drops: &[(usize, usize)]) -> Result<(), String> {
        self.net.as_ref().ok_or("one-way cuts need network namespaces (Ensemble::start_in_netns)")?.set_drops(drops)
    }

    /// Restores every link.
    pub fn heal(&self) {
        if let Some(net) = &self.net {
            net.heal().unwrap_or_else(|e| panic!("heal: {e}"));
        }
        for link in self.links.values() {
            link.set_cut(false);
        }
    }

    /// The index of the member that leads among `among`, waiting up to `timeout`.
    pub fn wait_for_leader_among(&self, among: &[usize], timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(i) = among.iter().copied().find(|i| self.mode(*i).as_deref() == Some("leader")) {
                return i;
            }
            assert!(std::time::Instant::now() < deadline, "no leader among {among:?} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20)); // polled through srvr
        }
    }

    /// Every member's client address, as a connect string.
    pub fn hosts(&self) -> String {
        self.members.iter().map(|m| m.hosts()).collect::<Vec<_>>().join(",")
    }

    /// The `srvr` mode of member `i` (index), or `None` if it does not answer.
    pub fn mode(&self, i: usize) -> Option<String> {
        let m = &self.members[i];
        if m.child.is_none() {
            return None;
        }
        let mut s = TcpStream::connect(m.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"srvr").ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines().find_map(|l| l.strip_prefix("Mode: ").map(str::to_owned))
    }

    /// The index of the member that leads, waiting up to `timeout`.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(i) = (0..self.members.len()).find(|i| self.mode(*i).as_deref() == Some("leader")) {
                return i;
            }
            assert!(std::time::Instant::now() < deadline, "no leader within {timeout:?}");
            // Polled: leadership is visible only through the members' 4lw answers.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The zxid member `i` reports (`mntr` zk_zxid).
    pub fn zxid(&self, i: usize) -> Option<i64> {
        let out = self.members[i].four_letter("mntr");
        let v = out.lines().find_map(|l| l.strip_prefix("zk_zxid\t"))?;
        i64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
    }
}

/// Concurrent writers, one per host given, each creating `/d/w{n}-{i}`
/// until its first error (a kill, a failover) or 20,000 writes. The
/// acknowledged paths are collected; tests wait on their count, not on time.
pub struct Writers {
    acked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    progress: tokio::sync::watch::Receiver<usize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub fn spawn(hosts: Vec<String>) -> Writers {
        let acked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Default::default();
        let (tx, progress) = tokio::sync::watch::channel(0usize);
        let tx = std::sync::Arc::new(tx);
        let tasks = hosts
            .into_iter()
            .enumerate()
            .map(|(w, host)| {
                let (acked, tx) = (acked.clone(), tx.clone());
                tokio::spawn(async move {
                    let zk = connect(&host, Duration::from_secs(10)).await;
                    for i in 0..20_000 {
                        let path = format!("/d/w{w}-{i}");
                        match zk.create(&path, path.as_bytes(), &persistent()).await {
                            Ok(_) => {
                                let n = {
                                    let mut a = acked.lock().unwrap();
                                    a.insert(path);
                                    a.len()
                                };
                                tx.send_replace(n);
                            }
                            // Its in-flight create is indeterminate, not acknowledged.
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Writers { acked, progress, tasks }
    }

    /// Waits until `n` writes are acknowledged (panics after 60 s).
    pub async fn wait_for(&mut self, n: usize) {
        tokio::time::timeout(Duration::from_secs(60), self.progress.wait_for(|k| *k >= n))
            .await
            .unwrap_or_else(|_| panic!("{n} writes acknowledged within 60 s"))
            .unwrap();
    }

    /// Waits (bounded) for every writer to stop; returns every acknowledged path.
    pub async fn finish(self) -> std::collections::BTreeSet<String> {
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Connects the stock client with a session timeout.
pub async fn connect(hosts: &str, timeout: Duration) -> zookeeper_client::Client {
    zookeeper_client::Client::connector()
        .with_session_timeout(timeout)
        .with_connection_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .unwrap_or_else(|e| panic!("connect to {hosts}: {e}"))
}

/// Options for a persistent node open to all.
/// A server in this process (`corral::Server`), configured as
/// [`Corral::start_with`] configures a process (`extra_cfg` are zoo.cfg
/// lines): for tests that need no kill -9, no log and no separate process.
pub async fn embedded(extra_cfg: &str) -> corral::Server {
    let cfg = format!("tickTime=200\nextendedTypesEnabled=true\nznode.container.checkIntervalMs=100\n{extra_cfg}\n");
    corral::Server::builder()
        .zoo_cfg(&cfg)
        .unwrap_or_else(|e| panic!("embedded server config: {e}"))
        .start()
        .await
        .unwrap_or_else(|e| panic!("embedded server: {e:#}"))
}

pub fn persistent() -> zookeeper_client::CreateOptions<'static> {
    zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all())
}

pub fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    zookeeper_client::CreateMode::Ephemeral.with_acls(zookeeper_client::Acls::anyone_all())
}

/// A raw protocol connection, for what stock clients will not send.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("raw connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { stream }
    }

    pub fn send_frame(&mut self, body: &[u8]) -> std::io::Result<()> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        self.stream.write_all(&v)
    }

    /// Reads one frame; `None` when the server closed the connection.
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    /// Performs the session handshake and returns the response.
    pub fn handshake(&mut self) -> protocol::ConnectResponse {
        use protocol::Jute;
        let req = protocol::ConnectRequest { time_out: 10_000, passwd: vec![0; 16], read_only: Some(false), ..Default::default() };
        self.send_frame(&req.to_bytes()).unwrap();
        protocol::ConnectResponse::from_bytes(&self.read_frame().expect("connect response")).unwrap()
    }

    /// Sends a request and returns the reply header and body.
    pub fn call(&mut self, xid: i32, req: &protocol::Request) -> (protocol::ReplyHeader, Vec<u8>) {
        use protocol::Jute;
        let mut v = Vec::new();
        protocol::RequestHeader { xid, r#type: req.op_code().as_i32() }.encode(&mut v);
        req.encode_body(&mut v);
        self.send_frame(&v).unwrap();
        loop {
            let f = self.read_frame().expect("reply");
            let mut b = &f[..];
            let h = protocol::ReplyHeader::decode(&mut b).unwrap();
            if h.xid == -1 {
                continue; // a watch event
            }
            return (h, b.to_vec());
        }
    }
}
