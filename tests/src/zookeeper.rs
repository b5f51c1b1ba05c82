//! Apache ZooKeeper 3.8 from Debian's `zookeeper` package, started on
//! loopback for side-by-side (differential) tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const JARS: &[&str] = &[
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ruok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"ruok").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out == "imok"
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
        let cp: Vec<String> = JARS.iter().map(|j| format!("/usr/share/java/{j}")).collect();
        let log = std::fs::File::create(dir.join("zookeeper.log")).unwrap();
        let child = Command::new("java")
            .arg("-cp")
            .arg(cp.join(":"))
            .arg("-Xmx256m")
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start java");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut zk = ZooKeeper { child, dir, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        while !ruok(addr) {
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
