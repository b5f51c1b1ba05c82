//! Test harness: a ZooKeeper-protocol server for the integration tests.
//!
//! * `CORRAL_QUEUE_TEST_HOSTS=host:port[,...]`: use that running server.
//!   Tests that restart the server are skipped (they print why).
//! * `CORRAL_BIN=/path/to/corral`: start `corral server DIR/zoo.cfg`.
//! * otherwise: start Apache ZooKeeper 3.8 from the Debian packages
//!   (`queue/tests/install-deps.sh` installs them).
//!
//! Started servers run under a tiny shell wrapper that kills the server (by
//! its PID) as soon as our end of its stdin closes, so the server dies with
//! the test process even if a test panics or the process is killed.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use zookeeper_client::Client;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Server {
    child: Option<Child>,
    pub hosts: String,
    dir: Option<PathBuf>,
    port: u16,
    external: bool,
    /// The shared server is a static whose Drop never runs: its wrapper
    /// removes the directory instead when the test process goes away.
    shared: bool,
}

const WRAPPER: &str = r#""$@" </dev/null >>"$LOG" 2>&1 & pid=$!
cat >/dev/null
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -n "$RMDIR" ]; then rm -rf "$RMDIR"; fi
exit 0"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn java_classpath() -> String {
    let wanted = [
        "zookeeper.jar",
        "zookeeper-jute.jar",
        "slf4j-api.jar",
        "slf4j-log4j12.jar",
        "log4j-1.2.jar",
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
    wanted
        .iter()
        .map(|j| Path::new("/usr/share/java").join(j))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

impl Server {
    /// A server private to the caller (needed by tests that restart it).
    pub fn start_private() -> Option<Server> {
        Self::start(false)
    }

    fn start(shared: bool) -> Option<Server> {
        if let Ok(hosts) = std::env::var("CORRAL_QUEUE_TEST_HOSTS") {
            return Some(Server { child: None, hosts, dir: None, port: 0, external: true, shared });
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("corral-queue-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let cfg = format!(
            "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             minSessionTimeout=400\nmaxSessionTimeout=60000\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
             maxClientCnxns=0\nsnapCount=1000000\n",
            data = dir.join("data").display()
        );
        std::fs::write(dir.join("zoo.cfg"), cfg).unwrap();
        std::fs::write(dir.join("log4j.properties"), "log4j.rootLogger=WARN, F\nlog4j.appender.F=org.apache.log4j.ConsoleAppender\nlog4j.appender.F.layout=org.apache.log4j.PatternLayout\nlog4j.appender.F.layout.ConversionPattern=%d %p %c{1}: %m%n\n").unwrap();
        let mut s = Server { child: None, hosts: format!("127.0.0.1:{port}"), dir: Some(dir), port, external: false, shared };
        s.spawn();
        Some(s)
    }

    /// One server shared by all tests of this test binary; each test uses its
    /// own queue path.
    pub fn shared() -> &'static Server {
        static SHARED: OnceLock<Server> = OnceLock::new();
        SHARED.get_or_init(|| Server::start(true).unwrap())
    }

    pub fn is_external(&self) -> bool {
        self.external
    }

    fn spawn(&mut self) {
        let dir = self.dir.clone().unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(WRAPPER).arg("corral-queue-test-server");
        if let Ok(bin) = std::env::var("CORRAL_BIN") {
            cmd.arg(bin).arg("server").arg(dir.join("zoo.cfg"));
        } else {
            cmd.arg("java")
                .arg(format!("-Xmx{}", std::env::var("CORRAL_QUEUE_ZK_HEAP").unwrap_or_else(|_| "256m".into())))
                .arg("-XX:+UseSerialGC")
                .arg("-XX:TieredStopAtLevel=1")
                .arg(format!("-Dlog4j.configuration=file:{}", dir.join("log4j.properties").display()))
                .arg("-Dzookeeper.jmx.log4j.disable=true")
                .arg("-cp")
                .arg(java_classpath())
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(dir.join("zoo.cfg"));
        }
        if self.shared {
            cmd.env("RMDIR", &dir);
        }
        cmd.env("LOG", dir.join("server.log")).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawn server wrapper"));
        self.wait_ready();
    }

    fn log_tail(&self) -> String {
        let Some(dir) = &self.dir else { return String::new() };
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({status}):\n{}", self.log_tail());
            }
            if ruok(self.port) {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready after 60s:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server (SIGKILL, like a crash) and starts it again on the
    /// same port and data directory. Returns false for an external server.
    pub fn restart(&mut self) -> bool {
        if self.external {
            return false;
        }
        self.stop();
        self.spawn();
        true
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// `ruok` four-letter word; Corral may not implement it, so with CORRAL_BIN an
/// accepted connection is enough.
fn ruok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else { return false };
    if std::env::var_os("CORRAL_BIN").is_some() {
        return true;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"ruok").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf == "imok"
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A unique queue path for one test.
pub fn unique_path(name: &str) -> String {
    format!("/t-{}-{}-{}/{name}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst), fastrand::u32(..))
}

pub async fn connect(hosts: &str, session: Duration) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connector().with_session_timeout(session).with_connection_timeout(Duration::from_secs(2)).connect(hosts).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {hosts}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
        }
    }
}

/// A client whose session is not closed when dropped: dropping it simulates a
/// killed process (the session then expires on the server).
pub async fn connect_detached(hosts: &str, session: Duration) -> Client {
    Client::connector()
        .with_session_timeout(session)
        .with_detached()
        .connect(hosts)
        .await
        .expect("connect detached")
}

/// A TCP proxy in front of the server. `partition()` cuts every connection
/// through it and refuses new ones until `heal()`: a client behind it keeps
/// running but its session expires on the server, like a consumer on the far
/// side of a network partition. `blackhole()` instead keeps connections open
/// and silently drops every byte both ways (a request sent then is lost
/// without the client knowing whether it arrived), until `heal()`.
pub struct Proxy {
    pub hosts: String,
    blocked: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dropping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to`, discarding what arrives while `dropping` is set.
async fn forward(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, dropping: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !dropping.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            },
        }
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hosts = listener.local_addr().unwrap().to_string();
        let blocked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dropping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let upstream = upstream.split(',').next().unwrap().to_string();
        let (b, d, c) = (blocked.clone(), dropping.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if b.load(Ordering::SeqCst) {
                    continue;
                }
                let (upstream, d) = (upstream.clone(), d.clone());
                let h = tokio::spawn(async move {
                    if let Ok(up) = tokio::net::TcpStream::connect(&upstream).await {
                        let ((down_r, down_w), (up_r, up_w)) = (down.into_split(), up.into_split());
                        // Either direction ending ends the link (the other half is dropped with the task).
                        tokio::select! {
                            _ = forward(down_r, up_w, d.clone()) => {},
                            _ = forward(up_r, down_w, d) => {},
                        }
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        Proxy { hosts, blocked, dropping, conns, accept }
    }

    pub fn partition(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn blackhole(&self) {
        self.dropping.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.blocked.store(false, Ordering::SeqCst);
        self.dropping.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.partition();
    }
}

/// Waits (on a watch, bounded) until `path` no longer exists.
pub async fn wait_gone(client: &Client, path: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (stat, w) = client.check_and_watch_stat(path).await.unwrap();
        if stat.is_none() {
            return;
        }
        if tokio::time::timeout_at(deadline, w.changed()).await.is_err() {
            panic!("{path} still exists after {within:?}");
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Python with kazoo: `CORRAL_QUEUE_PYTHON`, else the workspace `.venv`.
pub fn kazoo_python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("CORRAL_QUEUE_PYTHON") {
        Some(p) => vec![p.into()],
        None => vec![workspace_root().join(".venv/bin/python")],
    };
    candidates.into_iter().find(|p| {
        Command::new(p).arg("-c").arg("import kazoo").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}
