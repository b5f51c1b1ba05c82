//! The system under test: an ensemble of real server processes, each in a
//! network namespace of its own with partitions made of dropped packets
//! (`crate::netns`), or on loopback with every connection between members
//! through a fault-injecting proxy (`corral_tests::LinkProxy`), which needs
//! neither root nor namespaces; and the nemeses that break it.

use corral_tests::zookeeper::ZooKeeperEnsemble;
use crate::grudge;
use crate::netns::Net;
use crate::lazyfs;
use corral_tests::Ensemble;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Corral,
    Zookeeper,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "corral" => Ok(Target::Corral),
            "zookeeper" => Ok(Target::Zookeeper),
            _ => Err(format!("unknown target {s:?} (corral, zookeeper)")),
        }
    }
}

enum Inner {
    Corral(Ensemble),
    Zookeeper(ZooKeeperEnsemble),
}

pub struct Cluster {
    inner: Inner,
    paused: Vec<bool>,
    net: Net,
    /// Each member's data directory on a lazy filesystem, when a nemesis
    /// loses unsynced writes (`on_lazyfs`); empty otherwise.
    lazy: Vec<lazyfs::Mount>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The members hold files open on the mounts: they go first, then
        // the mounts, so that the members' directories can be removed.
        if !self.lazy.is_empty() {
            for i in 0..self.len() {
                self.kill(i);
            }
            self.lazy.clear();
        }
    }
}

/// Runs `f`, turning a panic of the test helpers (which panic on a server
/// that does not start) into an error.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        format!("{what}: {msg}")
    })
}

fn signal(pid: u32, sig: libc::c_int) {
    // The pid is our own child's, which we have not reaped: it cannot have
    // been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

impl Cluster {
    /// Starts `n` members with `extra_cfg` in each zoo.cfg, Corral's with
    /// `--unsafe-test-bug bug` when given; returns once one leads. On
    /// loopback behind proxies (see [`Cluster::start_on`]).
    pub fn start(target: Target, n: usize, extra_cfg: &str, bug: Option<&str>) -> Result<Cluster, String> {
        Cluster::start_on(Net::Proxy, target, n, extra_cfg, bug)
    }

    /// As [`Cluster::start`], on the network `net`: in network namespaces
    /// (removed when the cluster is dropped, panics included) or behind proxies.
    pub fn start_on(net: Net, target: Target, n: usize, extra_cfg: &str, bug: Option<&str>) -> Result<Cluster, String> {
        let inner = match target {
            Target::Corral => {
                // Ports are chosen free and bound later by the members, so
                // another process (or a proxy) may take one in between: retry.
                let mut attempt = 0;
                let mut e = loop {
                    attempt += 1;
                    let started = match net {
                        Net::Proxy => guarded("starting corral", || Ensemble::start_with_proxies(n, extra_cfg)),
                        Net::Netns => guarded("starting corral in network namespaces", || Ensemble::start_in_netns(n, extra_cfg)),
                    };
                    match started {
                        Ok(e) => break e,
                        Err(err) if attempt >= 3 => return Err(err),
                        Err(err) => eprintln!("{err}; starting again"),
                    }
                };
                if let Some(bug) = bug {
                    // The helpers start members without arguments: restart
                    // each with the switch before any client connects.
                    guarded("restarting with the bug", || {
                        for m in &mut e.members {
                            m.restart_with_args(&["--unsafe-test-bug", bug]);
                        }
                        e.wait_until_formed(Duration::from_secs(30));
                    })?;
                }
                Inner::Corral(e)
            }
            Target::Zookeeper => {
                if bug.is_some() {
                    return Err("--bug switches exist only in corral".into());
                }
                let e = match net {
                    Net::Proxy => guarded("starting zookeeper", || ZooKeeperEnsemble::start_with_proxies(n, extra_cfg))?,
                    Net::Netns => guarded("starting zookeeper in network namespaces", || ZooKeeperEnsemble::start_in_netns(n, extra_cfg))?,
                };
                guarded("waiting for a zookeeper leader", || e.wait_for_leader(Duration::from_secs(60)))?;
                Inner::Zookeeper(e)
            }
        };
        Ok(Cluster { inner, paused: vec![false; n], net, lazy: Vec::new() })
    }

    /// How the members are networked.
    pub fn net(&self) -> Net {
        self.net
    }

    /// The namespaces, when the members run in them.
    pub fn netns(&self) -> Option<&crate::netns::Netns> {
        match &self.inner {
            Inner::Corral(e) => e.netns(),
            Inner::Zookeeper(e) => e.netns(),
        }
    }

    /// Member `i`'s process id, while it runs (in a namespace, the server's
    /// own: `ip netns exec` execs it).
    pub fn member_pid(&self, i: usize) -> Option<u32> {
        self.pid(i)
    }

    /// Drops the packets from member `from` to member `to` for each
    /// `(from, to)` in `drops`, the other way passing, and restores every
    /// other link. Namespaces only (a proxy cannot cut one direction of a
    /// TCP connection).
    pub fn drop_oneway(&self, drops: &[(usize, usize)]) -> Result<(), String> {
        match &self.inner {
            Inner::Corral(e) => e.drop_packets(drops),
            Inner::Zookeeper(e) => e.drop_packets(drops),
        }
    }

    /// Restarts every member with its data directory on a lazy filesystem
    /// (`lazyfs::over`), for the nemeses that lose unsynced writes; returns
    /// once one leads again.
    pub fn on_lazyfs(&mut self) -> Result<(), String> {
        if let Some(why) = lazyfs::unavailable() {
            return Err(why);
        }
        for i in 0..self.len() {
            self.kill(i);
            let data = self.member_dir(i).join("data");
            self.lazy.push(lazyfs::over(&data).map_err(|e| format!("mounting lazyfs over {}: {e}", data.display()))?);
        }
        for i in 0..self.len() {
            self.restart(i)?;
        }
        match &self.inner {
            Inner::Corral(e) => guarded("waiting for the ensemble on lazyfs", || e.wait_until_formed(Duration::from_secs(30))).map(drop),
            Inner::Zookeeper(e) => guarded("waiting for a zookeeper leader on lazyfs", || e.wait_for_leader(Duration::from_secs(60))).map(drop),
        }
    }

    /// kill -9 member `i`, then drop what its disk had not synced (a power
    /// cut); `restart` starts it on what is left.
    pub fn power_cut(&mut self, i: usize) -> Result<lazyfs::Cut, String> {
        self.kill(i);
        self.lazy.get(i).map(lazyfs::Mount::power_cut).ok_or_else(|| "a power cut needs the data on lazyfs (Cluster::on_lazyfs)".to_string())
    }

    fn member_dir(&self, i: usize) -> std::path::PathBuf {
        match &self.inner {
            Inner::Corral(e) => e.members[i].dir.clone(),
            Inner::Zookeeper(e) => e.members[i].dir.clone(),
        }
    }

    pub fn target(&self) -> Target {
        match self.inner {
            Inner::Corral(_) => Target::Corral,
            Inner::Zookeeper(_) => Target::Zookeeper,
        }
    }

    pub fn len(&self) -> usize {
        self.paused.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paused.is_empty()
    }

    /// Member `i`'s client address.
    pub fn host(&self, i: usize) -> String {
        match &self.inner {
            Inner::Corral(e) => e.members[i].hosts(),
            Inner::Zookeeper(e) => e.members[i].hosts(),
        }
    }

    /// The member that leads now, by its own account (`srvr`), if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len()).filter(|i| !self.paused[*i]).find(|&i| {
            let mode = match &self.inner {
                Inner::Corral(e) => e.mode(i),
                Inner::Zookeeper(e) => e.mode(i),
            };
            mode.as_deref() == Some("leader")
        })
    }

    /// Member `i`'s log so far (for a failure's report).
    pub fn log(&self, i: usize) -> String {
        match &self.inner {
            Inner::Corral(e) => e.members[i].log(),
            Inner::Zookeeper(e) => e.members[i].log(),
        }
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        self.paused[i] = false;
        match &mut self.inner {
            Inner::Corral(e) => e.members[i].kill(),
            Inner::Zookeeper(e) => e.members[i].kill(),
        }
    }

    /// Starts a killed member again on its data.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.paused[i] = false;
        match &mut self.inner {
            Inner::Corral(e) => guarded("restarting a member", || e.members[i].restart()),
            Inner::Zookeeper(e) => {
                e.members[i].restart();
                Ok(())
            }
        }
    }

    fn pid(&self, i: usize) -> Option<u32> {
        match &self.inner {
            Inner::Corral(e) => e.members[i].pid(),
            Inner::Zookeeper(e) => e.members[i].pid(),
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, libc::SIGSTOP);
            self.paused[i] = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        if let Some(pid) = self.pid(i) {
            signal(pid, libc::SIGCONT);
        }
        self.paused[i] = false;
    }

    /// Cuts every link between members of different groups.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let groups: Vec<&[usize]> = groups.iter().map(|g| g.as_slice()).collect();
        match &self.inner {
            Inner::Corral(e) => e.partition(&groups),
            Inner::Zookeeper(e) => e.partition(&groups),
        }
    }

    /// Cuts the links between each pair of members in `cuts` (both ways:
    /// see `grudge`), restores every other link.
    pub fn cut(&self, cuts: &[(usize, usize)]) {
        let cut = |i: usize, j: usize| cuts.contains(&(i.min(j), i.max(j)));
        match &self.inner {
            Inner::Corral(e) => e.cut(cut),
            Inner::Zookeeper(e) => e.cut(cut),
        }
    }

    pub fn heal(&self) {
        match &self.inner {
            Inner::Corral(e) => e.heal(),
            Inner::Zookeeper(e) => e.heal(),
        }
    }

    /// kill -9 member `i` and delete its data but `myid`, as a disk
    /// replaced; `restart` starts it empty.
    pub fn wipe(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        let data = match &self.inner {
            Inner::Corral(e) => e.members[i].dir.join("data"),
            Inner::Zookeeper(e) => e.members[i].dir.join("data"),
        };
        let entries = std::fs::read_dir(&data).map_err(|e| format!("wipe {}: {e}", data.display()))?;
        for entry in entries.flatten() {
            if entry.file_name() == "myid" {
                continue;
            }
            let p = entry.path();
            let gone = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            gone.map_err(|e| format!("wipe {}: {e}", p.display()))?;
        }
        Ok(())
    }

    /// Restarts member `i` (killed or not) with `env` added to its
    /// environment, or with nothing added; `skew` uses it to preload
    /// libfaketime.
    pub fn restart_with_env(&mut self, i: usize, env: &[(&str, &str)]) -> Result<(), String> {
        self.paused[i] = false;
        match &mut self.inner {
            Inner::Corral(e) => guarded("restarting a member", || e.members[i].restart_with_env(env)),
            Inner::Zookeeper(e) => {
                e.members[i].restart_with_env(env);
                Ok(())
            }
        }
    }

    /// Member `i`'s `srvr` answer: its mode (`None` while it serves no
    /// requests) and last zxid.
    pub fn srvr(&self, i: usize) -> (Option<String>, Option<i64>) {
        let Ok(addr) = self.host(i).parse() else { return (None, None) };
        let out = corral_tests::zookeeper::four_letter(addr, "srvr");
        let mode = out.lines().find_map(|l| l.strip_prefix("Mode: ").map(str::to_owned));
        let zxid = out.lines().find_map(|l| l.strip_prefix("Zxid: ")).and_then(|z| i64::from_str_radix(z.trim().trim_start_matches("0x"), 16).ok());
        (mode, zxid)
    }

    /// Ends every fault: heals, resumes the paused and restarts the killed.
    /// Ends every fault: heals, resumes and restarts. A member that exited
    /// on its own (not by the nemesis: a crash, a server that stopped on a
    /// failed invariant) is restarted too, and said: returns, per such
    /// member, its number and the line of its log that tells why.
    pub fn recover(&mut self) -> Result<Vec<(usize, String)>, String> {
        self.heal();
        let mut crashed = Vec::new();
        for i in 0..self.len() {
            if self.paused[i] {
                self.resume(i);
            }
            if self.pid(i).is_none() {
                self.restart(i)?;
            } else if !self.running(i) {
                let log = self.log(i);
                // The panic's place and message (the line after it) say
                // most; else the server's own last word.
                let lines: Vec<&str> = log.lines().collect();
                let why = match lines.iter().rposition(|l| l.contains("panicked at")) {
                    Some(k) => format!("{} {}", lines[k].trim(), lines.get(k + 1).map_or("", |l| l.trim())),
                    None => lines.iter().rev().find(|l| l.contains("stopping:") || l.contains("corral:") || l.contains("Exception")).map_or("(nothing in its log says why)".to_string(), |l| l.trim().to_string()),
                };
                crashed.push((i, why));
                self.restart(i)?;
            }
        }
        Ok(crashed)
    }

    /// Whether member `i`'s process is still there (it may have exited on its own).
    fn running(&mut self, i: usize) -> bool {
        match &mut self.inner {
            Inner::Corral(e) => e.members[i].is_running(),
            Inner::Zookeeper(e) => e.members[i].is_running(),
        }
    }
}

/// A kind of fault the nemesis may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// kill -9 a random member, restart it.
    Kill,
    /// kill -9 every member, restart them all (what the disk kept is all
    /// that is left).
    KillAll,
    /// SIGSTOP a random member, SIGCONT it.
    Pause,
    /// Isolate one member, or the leader, or split into random halves; heal.
    Partition,
    /// Isolate the leader (a random member if none leads); heal.
    PartitionLeader,
    /// Two halves sharing one member that sees both (`grudge::bridge`); heal.
    PartitionBridge,
    /// Packets one way only (`grudge::oneway`): from one member (random or
    /// the leader) to the others, or to it from them, or from one random
    /// half to the other; heal. Network namespaces only.
    PartitionOneway,
    /// Each member sees only its two neighbours (`grudge::ring`; 4 members
    /// or more, with 3 it cuts nothing); heal.
    PartitionRing,
    /// kill -9 a random member, delete its data but `myid`, restart it
    /// empty; the next fault waits until it has caught up.
    Wipe,
    /// Restart a random member with its wall clock skewed (libfaketime),
    /// then restart it on the true clock.
    Skew,
    /// Power cut of a random member: kill -9 it and drop every write its
    /// data directory had not fsynced (lazyfs), restart it.
    LoseUnsynced,
    /// The same for every member at once.
    LoseUnsyncedAll,
}

impl Fault {
    /// Whether the members' data must be on lazyfs (`Cluster::on_lazyfs`).
    pub fn loses_unsynced(self) -> bool {
        matches!(self, Fault::LoseUnsynced | Fault::LoseUnsyncedAll)
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        match s {
            "kill" => Ok(Fault::Kill),
            "kill-all" => Ok(Fault::KillAll),
            "pause" => Ok(Fault::Pause),
            "partition" => Ok(Fault::Partition),
            "partition-leader" => Ok(Fault::PartitionLeader),
            "partition-bridge" => Ok(Fault::PartitionBridge),
            "partition-oneway" => Ok(Fault::PartitionOneway),
            "partition-ring" => Ok(Fault::PartitionRing),
            "wipe" => Ok(Fault::Wipe),
            "skew" => Ok(Fault::Skew),
            "lose-unsynced" => Ok(Fault::LoseUnsynced),
            "lose-unsynced-all" => Ok(Fault::LoseUnsyncedAll),
            _ => Err(format!("unknown nemesis {s:?} (kill, kill-all, pause, partition, partition-leader, partition-bridge, partition-ring, partition-oneway, wipe, skew, lose-unsynced, lose-unsynced-all, none)")),
        }
    }
}

/// What the nemesis did, when (seconds since the test began).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Event {
    pub at_s: f64,
    pub what: String,
}

/// Timing of the nemesis: each fault lasts `fault` and is followed by
/// `quiet` before the next, both drawn between the bounds given.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub fault_ms: (u64, u64),
    pub quiet_ms: (u64, u64),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { fault_ms: (1500, 3500), quiet_ms: (500, 1500) }
    }
}

/// How long the nemesis waits for a wiped member to catch up before it
/// goes on regardless (and says so in the schedule).
const CATCH_UP_MAX: Duration = Duration::from_secs(30);
/// The clock skew's size, seconds either way: well past the 4 s session
/// timeout and the election timeout, so that anything reading the wall
/// clock for a deadline would show it.
const SKEW_S: (i64, i64) = (10, 300);
pub const NO_ONEWAY: &str = "the partition-oneway nemesis needs network namespaces (--net netns; root, iproute2, iptables): a proxy cannot cut one direction of a TCP connection";
const NO_FAKETIME: &str = "the skew nemesis needs libfaketime (apt-get install faketime), or CORRAL_FAKETIME_LIB naming libfaketimeMT.so.1";

fn fmt_zxid(z: i64) -> String {
    format!("{z:#x}")
}

/// libfaketime's multi-threaded build (both servers run many threads).
pub fn faketime_lib() -> Option<String> {
    let told = std::env::var("CORRAL_FAKETIME_LIB").ok();
    let known = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/faketime/libfaketimeMT.so.1", "/usr/local/lib/faketime/libfaketimeMT.so.1"];
    told.into_iter().chain(known.iter().map(|s| s.to_string())).find(|p| std::path::Path::new(p).exists())
}

/// The environment that starts a server with its wall clock `offset` off
/// (`+30s`, `-2m`). Only the wall clock: both servers time sessions and
/// elections on the monotonic clock, which a fixed offset applied from the
/// process's start would not change anyway (no jump inside the process),
/// and which ZooKeeper's JVM is known to hang on when libfaketime fakes it.
pub fn faketime_env<'a>(lib: &'a str, offset: &'a str) -> [(&'a str, &'a str); 4] {
    [("LD_PRELOAD", lib), ("FAKETIME", offset), ("FAKETIME_DONT_FAKE_MONOTONIC", "1"), ("DONT_FAKE_MONOTONIC", "1")]
}

/// What the nemesis log says of a member that exited without the
/// nemesis's doing (`Cluster::recover`); such a run is invalid.
pub const EXITED_ON_ITS_OWN: &str = "had exited on its own";

/// Runs faults from `faults` (drawn with `rng`) until `until`, then ends
/// every fault. Waits are plain sleeps: the schedule is in time, nothing to await.
pub fn run_nemesis(cluster: &mut Cluster, faults: &[Fault], schedule: Schedule, rng: &mut impl Rng, start: Instant, until: Instant) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    let mut log = |what: String| {
        let e = Event { at_s: start.elapsed().as_secs_f64(), what };
        eprintln!("nemesis {:7.3}s {}", e.at_s, e.what);
        events.push(e);
    };
    let sleep_until = |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
    if faults.contains(&Fault::Skew) && faketime_lib().is_none() {
        return Err(NO_FAKETIME.into());
    }
    if faults.contains(&Fault::PartitionOneway) && cluster.net() != Net::Netns {
        return Err(NO_ONEWAY.into());
    }
    let n = cluster.len();
    // A quiet start, so workers have connected before the first fault.
    sleep_until((Instant::now() + Duration::from_millis(rng.gen_range(schedule.quiet_ms.0..=schedule.quiet_ms.1))).min(until));
    while !faults.is_empty() && Instant::now() < until {
        let fault = *faults.choose(rng).unwrap();
        let hold = Duration::from_millis(rng.gen_range(schedule.fault_ms.0..=schedule.fault_ms.1));
        let end = (Instant::now() + hold).min(until);
        match fault {
            Fault::Kill => {
                let i = rng.gen_range(0..n);
                log(format!("kill -9 member {}", i + 1));
                cluster.kill(i);
                sleep_until(end);
                log(format!("restart member {}", i + 1));
                cluster.restart(i)?;
            }
            Fault::KillAll => {
                log("kill -9 every member".into());
                for i in 0..n {
                    cluster.kill(i);
                }
                sleep_until(end);
                log("restart every member".into());
                for i in 0..n {
                    cluster.restart(i)?;
                }
            }
            Fault::Pause => {
                let i = rng.gen_range(0..n);
                log(format!("pause (SIGSTOP) member {}", i + 1));
                cluster.pause(i);
                sleep_until(end);
                log(format!("resume (SIGCONT) member {}", i + 1));
                cluster.resume(i);
            }
            Fault::Partition | Fault::PartitionLeader | Fault::PartitionBridge | Fault::PartitionRing => {
                let mut members: Vec<usize> = (0..n).collect();
                // `partition` draws a shape; a ring only where it cuts something.
                let how = match fault {
                    Fault::PartitionLeader => 1,
                    Fault::PartitionBridge => 3,
                    Fault::PartitionRing => 4,
                    _ => rng.gen_range(0..if n >= 4 { 5 } else { 4 }),
                };
                let groups: Vec<Vec<usize>> = match how {
                    0 => {
                        let i = rng.gen_range(0..n);
                        vec![vec![i], members.iter().copied().filter(|m| *m != i).collect()]
                    }
                    1 => {
                        let i = cluster.leader().unwrap_or_else(|| rng.gen_range(0..n));
                        vec![vec![i], members.iter().copied().filter(|m| *m != i).collect()]
                    }
                    2 => {
                        members.shuffle(rng);
                        let (a, b) = members.split_at(n / 2);
                        vec![a.to_vec(), b.to_vec()]
                    }
                    _ => Vec::new(),
                };
                if how == 3 || how == 4 {
                    members.shuffle(rng);
                    let cuts = if how == 3 { grudge::bridge(&members) } else { grudge::ring(&members) };
                    let shape = if how == 3 {
                        format!("bridge: member {} sees both halves", members[n / 2] + 1)
                    } else {
                        format!("ring {}", members.iter().map(|m| (m + 1).to_string()).collect::<Vec<_>>().join("-"))
                    };
                    log(format!("partition {shape}; cut {}", grudge::describe(&cuts)));
                    cluster.cut(&cuts);
                } else {
                    let show: Vec<String> = groups.iter().map(|g| g.iter().map(|m| (m + 1).to_string()).collect::<Vec<_>>().join(" ")).collect();
                    log(format!("partition {}", show.join(" | ")));
                    cluster.partition(&groups);
                }
                sleep_until(end);
                log("heal".into());
                cluster.heal();
            }
            Fault::PartitionOneway => {
                let mut members: Vec<usize> = (0..n).collect();
                let how = rng.gen_range(0..5);
                let (from, to): (Vec<usize>, Vec<usize>) = match how {
                    0..=3 => {
                        let i = if how < 2 { rng.gen_range(0..n) } else { cluster.leader().unwrap_or_else(|| rng.gen_range(0..n)) };
                        let rest: Vec<usize> = members.iter().copied().filter(|m| *m != i).collect();
                        // Even: its packets to the others dropped (it
                        // hears them, they do not hear it); odd: theirs to it.
                        if how % 2 == 0 {
                            (vec![i], rest)
                        } else {
                            (rest, vec![i])
                        }
                    }
                    _ => {
                        members.shuffle(rng);
                        let (a, b) = members.split_at(n / 2);
                        (a.to_vec(), b.to_vec())
                    }
                };
                let whom = match how {
                    0 | 1 => "a member",
                    2 | 3 => "the leader",
                    _ => "halves",
                };
                log(format!("partition one-way ({whom}): {}", grudge::describe_oneway(&from, &to)));
                cluster.drop_oneway(&grudge::oneway(&from, &to))?;
                sleep_until(end);
                log("heal".into());
                cluster.heal();
            }
            Fault::Wipe => {
                let i = rng.gen_range(0..n);
                // What it must catch up to: the most any member had when it
                // was wiped, or any other has at its restart (during an
                // election ZooKeeper's members do not say).
                let before = (0..n).filter_map(|m| cluster.srvr(m).1).max();
                log(format!("wipe member {} (kill -9, its data deleted but myid)", i + 1));
                cluster.wipe(i)?;
                sleep_until(end);
                let target = (0..n).filter(|m| *m != i).filter_map(|m| cluster.srvr(m).1).chain(before).max().unwrap_or(0);
                log(format!("restart member {} empty", i + 1));
                cluster.restart(i)?;
                // One wipe at a time, each healed before the next fault:
                // two empty members are a majority of three that has lost
                // everything, which no protocol survives.
                let waited = Instant::now();
                loop {
                    let (mode, zxid) = cluster.srvr(i);
                    let serving = matches!(mode.as_deref(), Some("leader" | "follower"));
                    if serving && zxid.is_some_and(|z| z >= target) {
                        log(format!("member {} caught up (zxid {:#x}, {} before the restart) after {:.1} s", i + 1, zxid.unwrap_or(0), fmt_zxid(target), waited.elapsed().as_secs_f64()));
                        break;
                    }
                    if waited.elapsed() > CATCH_UP_MAX {
                        log(format!("member {} has not caught up after {} s (mode {mode:?}, zxid {}); going on", i + 1, CATCH_UP_MAX.as_secs(), zxid.map(fmt_zxid).unwrap_or_else(|| "none".into())));
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100)); // polled: catching up shows only in srvr
                }
            }
            Fault::LoseUnsynced => {
                let i = rng.gen_range(0..n);
                let cut = cluster.power_cut(i)?;
                log(format!("power cut member {} (kill -9; {} unsynced bytes in {} files lost)", i + 1, cut.bytes, cut.files));
                sleep_until(end);
                log(format!("restart member {}", i + 1));
                cluster.restart(i)?;
            }
            Fault::LoseUnsyncedAll => {
                // Every member dies before any disk loses anything: one
                // cut for all, as in a data centre losing power.
                for i in 0..n {
                    cluster.kill(i);
                }
                let cuts = (0..n).map(|i| cluster.power_cut(i).map(|c| format!("member {} {} bytes in {} files", i + 1, c.bytes, c.files))).collect::<Result<Vec<_>, _>>()?;
                log(format!("power cut every member (kill -9; unsynced lost: {})", cuts.join(", ")));
                sleep_until(end);
                log("restart every member".into());
                for i in 0..n {
                    cluster.restart(i)?;
                }
            }
            Fault::Skew => {
                let i = rng.gen_range(0..n);
                let secs = rng.gen_range(SKEW_S.0..=SKEW_S.1) * if rng.gen() { 1 } else { -1 };
                let lib = faketime_lib().ok_or(NO_FAKETIME)?;
                log(format!("skew member {} wall clock {secs:+} s (restarted under libfaketime)", i + 1));
                let offset = format!("{secs:+}s");
                cluster.restart_with_env(i, &faketime_env(&lib, &offset))?;
                sleep_until(end);
                log(format!("restart member {} on the true clock", i + 1));
                cluster.restart_with_env(i, &[])?;
            }
        }
        let quiet = Duration::from_millis(rng.gen_range(schedule.quiet_ms.0..=schedule.quiet_ms.1));
        sleep_until((Instant::now() + quiet).min(until));
    }
    // With no faults the loop never ran: a member's own exit still counts
    // up to the end of the run.
    sleep_until(until);
    for (i, why) in cluster.recover()? {
        log(format!("member {} {EXITED_ON_ITS_OWN} (restarted): {why}", i + 1));
    }
    Ok(events)
}
