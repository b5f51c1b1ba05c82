//! Proof the harness can fail: the register workload run end to end with
//! the `corral-jepsen` binary against real processes, clean and with the
//! server's test-only bug switches. Runs are serialised: two ensembles
//! under faults at once on two cores would only slow each other down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A store of its own for each run, so that a passing test leaves nothing.
fn store() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("corral-jepsen-store-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `corral-jepsen` with `args`; returns its exit code and stdout.
fn jepsen(args: &[&str]) -> (i32, String) {
    if std::env::var_os("CORRAL_BIN").is_none() {
        // As the tests crate: the corral binary of this target directory.
        std::env::set_var("CORRAL_BIN", corral_tests::corral_bin());
    }
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_corral-jepsen")).args(args).output().expect("run corral-jepsen");
    let out = String::from_utf8_lossy(&stdout).into_owned();
    eprintln!("{out}\n{}", String::from_utf8_lossy(&stderr));
    (status.code().unwrap_or(-1), out)
}

/// A run's stored results (its directory, and the store holding it),
/// removed when the test passes, kept for a look when it fails.
struct Stored(PathBuf, PathBuf);

impl Drop for Stored {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
}

fn test(args: &[&str]) -> (i32, String, Stored) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let store = store();
    let mut all = vec!["test", "--workload", "register", "--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, out) = jepsen(&all);
    let dir = out.lines().find_map(|l| l.strip_prefix("store: ")).map(PathBuf::from).unwrap_or_default();
    (code, out, Stored(dir, store))
}

fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("results.json")).unwrap()
}

#[test]
fn clean_corral_under_partitions_and_kills_is_linearizable() {
    let (code, out, dir) = test(&["--nemesis", "partition,kill", "--time", "15", "--read-consistency", "linearizable", "--seed", "11"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("VALID") && out.contains("rerun: corral-jepsen test --workload register --nemesis partition,kill --time 15"), "{out}");
    let r = results(&dir.0);
    // The run did something worth checking: faults and many acknowledged ops, reads included.
    let events: Vec<&str> = r["nemesis"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
    assert!(events.iter().any(|e| e.starts_with("partition")) && events.iter().any(|e| e.starts_with("kill -9")), "{events:?}");
    assert!(r["ops"]["ok"].as_u64().unwrap() > 1000, "{r}");
    assert_eq!(r["check"]["reads_checked"], true);
    assert!(dir.0.join("history.jsonl").exists());
}

#[test]
fn stale_read_bug_is_caught() {
    // Reads answered at once, without the read index: a follower a moment
    // behind the leader answers from the past. No fault needed.
    let (code, out, dir) = test(&["--nemesis", "none", "--time", "5", "--read-consistency", "linearizable", "--bug", "stale-read", "--seed", "12"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: key r") && out.contains("read -> ") && out.contains("--bug stale-read"), "{out}");
    assert_eq!(results(&dir.0)["valid"], false);
}

#[test]
fn split_brain_bug_is_caught() {
    // An isolated leader keeps leading and answers linearizable reads
    // locally while the majority elects another and moves on.
    let (code, out, _stored) = test(&["--nemesis", "partition-leader", "--time", "8", "--read-consistency", "linearizable", "--bug", "split-brain", "--seed", "13"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: key r"), "{out}");
}

#[test]
fn overlay_skip_bug_is_caught_by_writes_alone() {
    // Prep ignores proposals in flight: two CAS from the same version both
    // succeed. Reads are not even checked (sequential mode).
    let (code, out, _stored) = test(&["--nemesis", "none", "--time", "5", "--bug", "overlay-skip", "--seed", "15"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID: key r") && out.contains(" cas "), "{out}");
}

#[test]
fn zookeeper_default_reads_are_not_linearizable_but_its_writes_are() {
    if !corral_tests::zookeeper::ZooKeeper::available() {
        eprintln!("Apache ZooKeeper is not installed (tests/clients/install-deps.sh): skipped");
        return;
    }
    // ZooKeeper documents its reads as sequentially consistent: checked for
    // linearizability they fail (a follower serves a read from before a
    // write acknowledged by the leader)...
    let (code, out, dir) = test(&["--target", "zookeeper", "--nemesis", "none", "--time", "6", "--read-consistency", "linearizable", "--seed", "14"]);
    assert_eq!(code, 1, "{out}");
    // ...while its writes and CAS linearize: the same history, re-checked.
    let history = dir.0.join("history.jsonl");
    let (code, out) = jepsen(&["check", history.to_str().unwrap(), "--read-consistency", "sequential"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = jepsen(&["check", history.to_str().unwrap()]);
    assert_eq!(code, 1, "re-checked as recorded (reads included): {out}");
}

#[test]
fn usage_and_harness_errors_exit_2() {
    assert_eq!(jepsen(&["test", "--workload", "register", "--nemesis", "meteor"]).0, 2);
    assert_eq!(jepsen(&["check", "/nonexistent/history.jsonl"]).0, 2);
    let (code, _, _) = test(&["--workload", "queue", "--time", "1"]);
    assert_eq!(code, 2);
}
