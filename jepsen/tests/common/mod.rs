//! What the end-to-end tests share: running the `corral-jepsen` binary, one
//! run at a time, each with a store of its own that a passing test removes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Runs are serialised: two ensembles under faults at once on two cores
/// would only slow each other down.
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
pub fn jepsen(args: &[&str]) -> (i32, String) {
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
pub struct Stored(pub PathBuf, pub PathBuf);

impl Drop for Stored {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
}

/// Holds off every other run of this test binary (for tests that start a
/// cluster in-process).
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// `corral-jepsen test --workload W ARGS`, in a store of its own; on
/// loopback behind proxies unless ARGS say `--net` (the tests written
/// before namespaces stay as they were; `netns.rs` runs in namespaces).
pub fn test(workload: &str, args: &[&str]) -> (i32, String, Stored) {
    let _one = one_at_a_time();
    let store = store();
    let mut all = vec!["test", "--workload", workload, "--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    if !args.contains(&"--net") {
        all.extend_from_slice(&["--net", "proxy"]);
    }
    let (code, out) = jepsen(&all);
    let dir = out.lines().find_map(|l| l.strip_prefix("store: ")).map(PathBuf::from).unwrap_or_default();
    (code, out, Stored(dir, store))
}

pub fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).expect("results.json")).unwrap()
}

/// The nemesis events of a run, as text.
pub fn events(r: &serde_json::Value) -> Vec<String> {
    r["nemesis"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap().to_owned()).collect()
}

pub fn zookeeper_available() -> bool {
    if corral_tests::zookeeper::ZooKeeper::available() {
        return true;
    }
    eprintln!("Apache ZooKeeper is not installed (tests/clients/install-deps.sh): skipped");
    false
}

/// A count in a results.json.
pub fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The run was valid, hit faults, and stored its verdict.
pub fn valid_under_faults(code: i32, out: &str, r: &serde_json::Value, workload: &str) {
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nVALID\n") && out.contains(&format!("rerun: corral-jepsen test --workload {workload} ")), "{out}");
    assert_eq!(r["valid"], true);
    assert_eq!(r["workload"], workload);
    let events = events(r);
    assert!(events.iter().any(|e| e.starts_with("partition") || e.starts_with("kill -9")), "{events:?}");
}

