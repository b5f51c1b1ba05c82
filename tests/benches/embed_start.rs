//! How fast an embedded Corral starts, stops and how much memory it takes,
//! against Apache Curator's `TestingServer` and `TestingCluster(3)` on this
//! machine in the same run (the embedding issue's measurement):
//!
//! ```sh
//! bash tests/clients/install-deps.sh    # Debian's zookeeper and libcurator-test-java (and a JDK)
//! cargo bench -p corral-tests --bench embed_start
//! ```
//!
//! Figures, each over `BENCH_ROUNDS` rounds (default 20), median and p90:
//! - *start to first write*: from `start()` to the first acknowledged create
//!   of a stock client's fresh session (`zookeeper-client` here, the plain
//!   Java `ZooKeeper` for Curator); for a cluster the session is on one
//!   member (Corral) or on the all-members connect string (Curator, whose
//!   `start()` does not wait for an election, so the client's reconnect
//!   backoff is part of what a test sees). A second Curator cluster figure
//!   probes with fresh sessions every 10 ms instead: its servers' readiness
//!   without the client's backoff.
//! - *shutdown*: `shutdown().await` / `close()`, the session closed before.
//! - *RSS per server*: 10 standalone servers each with a session and five
//!   writes, (VmRSS after − VmRSS before) / 10, in a fresh process (a child
//!   of this bench, a fresh JVM) that has started and stopped one server
//!   first, so that one-time costs (code pages, runtime threads, class
//!   loading) are not counted per server.
//!
//! Curator runs in one JVM, driven over stdin, warmed by `BENCH_WARMUP`
//! rounds (default 5) of each kind before the measured rounds; the rounds
//! alternate (Corral first in even rounds, Curator first in odd ones). The
//! first `TestingServer` start of the fresh JVM and the first `Server` start
//! of this process are reported apart. Without `java`/`javac` or Curator's
//! jars, Corral's figures are printed alone.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use corral::{Cluster, Server};
use zookeeper_client as zk;

const RSS_SERVERS: usize = 10;
const RSS_CHILD_ENV: &str = "CORRAL_EMBED_START_RSS_CHILD";

fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn connect(hosts: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_connection_timeout(Duration::from_secs(10))
        .connect(hosts)
        .await
        .unwrap_or_else(|e| panic!("connect to {hosts}: {e}"))
}

/// One round's figures, by name.
type Sample = Vec<(&'static str, f64)>;

async fn corral_server(prefix: &'static str) -> Sample {
    let t0 = Instant::now();
    let server = Server::builder().start().await.expect("Server::start");
    let started = t0.elapsed();
    let client = connect(&server.connect_string()).await;
    client.create("/bench", b"", &persistent()).await.expect("first create");
    let written = t0.elapsed();
    drop(client);
    let t1 = Instant::now();
    server.shutdown().await.expect("Server::shutdown");
    let stopped = t1.elapsed();
    let name = |s: &'static str| -> &'static str {
        match (prefix, s) {
            ("first_server", "start") => "first_server_start_ms",
            ("first_server", "write") => "first_server_first_write_ms",
            ("first_server", _) => "first_server_shutdown_ms",
            (_, "start") => "server_start_ms",
            (_, "write") => "server_first_write_ms",
            _ => "server_shutdown_ms",
        }
    };
    vec![(name("start"), ms(started)), (name("write"), ms(written)), (name("shutdown"), ms(stopped))]
}

async fn corral_cluster() -> Sample {
    let t0 = Instant::now();
    let cluster = Cluster::builder(3).start().await.expect("Cluster::start");
    let started = t0.elapsed();
    let client = connect(&cluster.member_connect_string(0)).await;
    client.create("/bench", b"", &persistent()).await.expect("first create");
    let written = t0.elapsed();
    drop(client);
    let t1 = Instant::now();
    cluster.shutdown().await.expect("Cluster::shutdown");
    let stopped = t1.elapsed();
    vec![("cluster_start_ms", ms(started)), ("cluster_first_write_ms", ms(written)), ("cluster_shutdown_ms", ms(stopped))]
}

fn vm_rss_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

async fn standalone_with_writes() -> (Server, zk::Client) {
    let server = Server::builder().start().await.expect("Server::start");
    let client = connect(&server.connect_string()).await;
    for k in 0..5 {
        client.create(&format!("/n{k}"), &[b'v'; 100], &persistent()).await.expect("create");
    }
    (server, client)
}

/// The child process's part: RSS per server in a process that did nothing else.
fn rss_child(rt: &tokio::runtime::Runtime) {
    let per_server_mib = rt.block_on(async {
        let (s, c) = standalone_with_writes().await;
        drop(c);
        s.shutdown().await.expect("shutdown");
        // Let the dropped session's tasks end.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = vm_rss_kib();
        let mut running = Vec::new();
        for _ in 0..RSS_SERVERS {
            running.push(standalone_with_writes().await);
        }
        let after = vm_rss_kib();
        for (s, c) in running {
            drop(c);
            s.shutdown().await.expect("shutdown");
        }
        (after - before) / 1024.0 / RSS_SERVERS as f64
    });
    println!("rss_per_server_mib {per_server_mib}");
}

fn corral_rss() -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe).env(RSS_CHILD_ENV, "1").stderr(Stdio::inherit()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("the RSS child failed: {}", out.status));
    }
    parse(&String::from_utf8_lossy(&out.stdout)).into_iter().find(|(k, _)| k == "rss_per_server_mib").map(|(_, v)| v).ok_or_else(|| "no figure from the RSS child".into())
}

fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (k, v) = (it.next()?, it.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Curator's side: CuratorStart.java compiled into a temporary directory and
/// run in one JVM, one command per round.
struct Curator {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Curator's jars beside ZooKeeper's (`corral_tests::zookeeper::JARS`).
const CURATOR_JARS: &[&str] = &["curator-test.jar", "commons-io.jar", "guava.jar"];

/// Removed on drop: the compiled Java class, and the JVM's temporary
/// directory (TestingServer's data, and a properties file per server start
/// that Curator and ZooKeeper never delete).
struct ClassDir(PathBuf);

impl Drop for ClassDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn on_path(tool: &str) -> bool {
    Command::new(tool).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Compiles CuratorStart.java, or says why Curator cannot be measured.
fn compile_curator() -> Result<(ClassDir, String, PathBuf), String> {
    for tool in ["java", "javac"] {
        if !on_path(tool) {
            return Err(format!("no `{tool}` on PATH (bash tests/clients/install-deps.sh installs a JDK)"));
        }
    }
    let share = Path::new("/usr/share/java");
    for required in ["curator-test.jar", "zookeeper.jar"] {
        if !share.join(required).exists() {
            return Err(format!("{} missing (Debian's libcurator-test-java and zookeeper; bash tests/clients/install-deps.sh)", share.join(required).display()));
        }
    }
    // Dependencies a Debian release may lack are left out; curator-test and zookeeper are not.
    let jars = CURATOR_JARS.iter().chain(corral_tests::zookeeper::JARS);
    let classpath: Vec<String> = jars.map(|j| share.join(j)).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
    let classpath = classpath.join(":");
    let dir = ClassDir(std::env::temp_dir().join(format!("corral-curator-start-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| e.to_string())?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/curator/CuratorStart.java");
    let out = Command::new("javac").arg("-d").arg(&dir.0).arg("-cp").arg(&classpath).arg(&source).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("javac failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let full = format!("{}:{classpath}", dir.0.display());
    let tmp = dir.0.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    Ok((dir, full, tmp))
}

impl Curator {
    fn spawn(classpath: &str, tmp: &Path) -> Result<Curator, String> {
        let mut child = Command::new("java")
            .arg(format!("-Djava.io.tmpdir={}", tmp.display()))
            .arg("-cp")
            .arg(classpath)
            .arg("CuratorStart")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("java: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Curator { child, stdin, stdout })
    }

    /// Runs one command; its figures, or why it failed.
    fn run(&mut self, command: &str) -> Result<Vec<(String, f64)>, String> {
        writeln!(self.stdin, "{command}").and_then(|_| self.stdin.flush()).map_err(|e| format!("the JVM is gone: {e}"))?;
        let mut figures = Vec::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err(format!("the JVM ended during `{command}`"));
            }
            let line = line.trim();
            if line == "done" {
                return Ok(figures);
            }
            if line.starts_with("error") {
                return Err(line.to_string());
            }
            figures.extend(parse(line));
        }
    }
}

impl Drop for Curator {
    fn drop(&mut self) {
        // "quit" ends the JVM; so would its stdin closing.
        let _ = writeln!(self.stdin, "quit").and_then(|_| self.stdin.flush());
        let _ = self.child.wait();
    }
}

/// Every round's value of each figure, per target.
#[derive(Default)]
struct Figures(Vec<(String, Vec<f64>)>);

impl Figures {
    fn add<K: AsRef<str>>(&mut self, sample: impl IntoIterator<Item = (K, f64)>) {
        for (k, v) in sample {
            let k = k.as_ref();
            match self.0.iter_mut().find(|(n, _)| n == k) {
                Some((_, vs)) => vs.push(v),
                None => self.0.push((k.to_string(), vec![v])),
            }
        }
    }

    /// (median, p90) of a figure, p90 by nearest rank.
    fn stats(&self, k: &str) -> Option<(f64, f64)> {
        let (_, vs) = self.0.iter().find(|(n, _)| n == k)?;
        let mut v = vs.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let p90 = v[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        Some((median, p90))
    }
}

/// Runs one Curator command; the first failure is kept (and printed) and ends Curator's part.
fn curator_run(jvm: &mut Result<Curator, String>, command: &str, figures: Option<&mut Figures>, why_not: &mut Option<String>) {
    let result = match jvm {
        Ok(c) => c.run(command),
        Err(e) => Err(e.clone()),
    };
    match result {
        Ok(sample) => {
            if let Some(f) = figures {
                f.add(sample);
            }
        }
        Err(e) => {
            if why_not.is_none() {
                eprintln!("Curator not measured: {e}");
                *why_not = Some(e.clone());
            }
            *jvm = Err(e);
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here takes arguments.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    if std::env::var_os(RSS_CHILD_ENV).is_some() {
        rss_child(&rt);
        return;
    }
    let rounds = env_usize("BENCH_ROUNDS", 20).max(1);
    let warmup = env_usize("BENCH_WARMUP", 5);

    let mut corral = Figures::default();
    let mut curator = Figures::default();

    // The first start of each in a fresh process: class loading for the JVM,
    // code pages and allocator arenas for Corral. Corral's comes before javac
    // and the JVM start, which would otherwise take both cores from it.
    eprintln!("first starts");
    corral.add(rt.block_on(corral_server("first_server")));
    let compiled = compile_curator();
    let mut jvm = match &compiled {
        Ok((_, classpath, tmp)) => Curator::spawn(classpath, tmp),
        Err(e) => Err(e.clone()),
    };
    let mut why_no_curator: Option<String> = None;
    curator_run(&mut jvm, "first", Some(&mut curator), &mut why_no_curator);

    eprintln!("warm-up: {warmup} rounds of each");
    for _ in 0..warmup {
        rt.block_on(corral_server("server"));
        rt.block_on(corral_cluster());
        for command in ["server", "cluster", "probe"] {
            curator_run(&mut jvm, command, None, &mut why_no_curator);
        }
    }

    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let mut corral_round = || {
            corral.add(rt.block_on(corral_server("server")));
            corral.add(rt.block_on(corral_cluster()));
        };
        if round % 2 == 0 {
            corral_round();
        }
        for command in ["server", "cluster", "probe"] {
            curator_run(&mut jvm, command, Some(&mut curator), &mut why_no_curator);
        }
        if round % 2 == 1 {
            corral_round();
        }
    }
    drop(jvm);

    // Memory in fresh processes: one server started and stopped first, then ten.
    eprintln!("RSS");
    match corral_rss() {
        Ok(v) => corral.add([("rss_per_server_mib", v)]),
        Err(e) => eprintln!("Corral RSS not measured: {e}"),
    }
    let mut fresh = match &compiled {
        Ok((_, classpath, tmp)) if why_no_curator.is_none() => Curator::spawn(classpath, tmp),
        Ok(_) => Err(why_no_curator.clone().unwrap_or_default()),
        Err(e) => Err(e.clone()),
    };
    curator_run(&mut fresh, "first", None, &mut why_no_curator);
    curator_run(&mut fresh, "rss", Some(&mut curator), &mut why_no_curator);
    drop(fresh);
    drop(compiled);

    print_table(&corral, &curator, why_no_curator.as_deref(), rounds, warmup);
}

fn print_table(corral: &Figures, curator: &Figures, why_no_curator: Option<&str>, rounds: usize, warmup: usize) {
    // (label, Corral's figure, Curator's figure)
    let rows: &[(&str, &str, &str)] = &[
        ("Server: start to first acknowledged write (ms)", "server_first_write_ms", "server_first_write_ms"),
        ("Server: start() returns (ms)", "server_start_ms", "server_start_ms"),
        ("Server: shutdown (ms)", "server_shutdown_ms", "server_shutdown_ms"),
        ("Server: first in a fresh process, to first write (ms)", "first_server_first_write_ms", "first_server_first_write_ms"),
        ("Cluster(3): start to first acknowledged write (ms)", "cluster_first_write_ms", "cluster_first_write_ms"),
        ("Cluster(3): start to first write, 10 ms probe (ms)", "cluster_first_write_ms", "probe_first_write_ms"),
        ("Cluster(3): start() returns (ms)", "cluster_start_ms", "cluster_start_ms"),
        ("Cluster(3): shutdown (ms)", "cluster_shutdown_ms", "cluster_shutdown_ms"),
        ("RSS per standalone server (MiB)", "rss_per_server_mib", "rss_per_server_mib"),
    ];
    println!();
    println!("embed_start: {rounds} rounds ({warmup} warm-up rounds each first); median (p90)");
    if let Some(why) = why_no_curator {
        println!("Curator not measured: {why}");
    }
    println!();
    println!("| figure | Corral | Curator | ratio |");
    println!("|---|---:|---:|---:|");
    let cell = |s: Option<(f64, f64)>, one: bool| match s {
        Some((m, _)) if one => format!("{m:.1}"),
        Some((m, p)) => format!("{m:.1} ({p:.1})"),
        None => "–".to_string(),
    };
    for (label, ck, zk) in rows {
        let c = corral.stats(ck);
        let z = curator.stats(zk);
        // Single measurements (first start, RSS) have no p90 worth printing.
        let one = ck.starts_with("first") || ck.starts_with("rss");
        let ratio = match (c, z) {
            (Some((c, _)), Some((z, _))) if c > 0.0 => format!("{:.1}", z / c),
            _ => "–".to_string(),
        };
        println!("| {label} | {} | {} | {ratio} |", cell(c, one), cell(z, one));
    }
    println!();
    println!("ratio = Curator / Corral (medians): how many times faster or smaller Corral is.");
    let goal = |k: &str, limit: f64, what: &str| {
        if let Some((m, _)) = corral.stats(k) {
            println!("goal {what} ≤ {limit}: {m:.1} — {}", if m <= limit { "met" } else { "MISSED" });
        }
    };
    goal("server_first_write_ms", 10.0, "Server start to first write (ms)");
    goal("cluster_first_write_ms", 60.0, "Cluster(3) start to first write (ms)");
    goal("rss_per_server_mib", 10.0, "RSS per standalone server (MiB)");
}
