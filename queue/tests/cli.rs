//! The `corral-queue` binary end to end.

mod common;

use std::process::{Command, Output};

use common::{unique_path, Server};

fn cli(hosts: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral-queue")).arg("--hosts").arg(hosts).args(args).output().expect("run corral-queue")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stat_line(stats: &str, key: &str) -> String {
    stats.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap_or_else(|| panic!("no {key} in {stats}")).to_string()
}

#[test]
fn put_take_stats_roundtrip() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("cli");
    ok(&cli(hosts, &["put", &path, "first", "second"]));
    ok(&cli(hosts, &["put", "--priority", "1", &path, "urgent"]));
    let out = ok(&cli(hosts, &["put", "--key", "k1", &path, "keyed"]));
    assert!(out.starts_with("enqueued "), "{out}");
    let dup = ok(&cli(hosts, &["put", "--key", "k1", &path, "keyed"]));
    assert!(dup.starts_with("duplicate key \"k1\""), "{dup}");
    let stats = ok(&cli(hosts, &["stats", &path]));
    assert_eq!(stat_line(&stats, "depth"), "4");
    assert_eq!(stat_line(&stats, "layout"), "native");
    assert_eq!(ok(&cli(hosts, &["take", &path])), "urgent\n");
    // --no-ack hands the message back: it is the next one again.
    assert_eq!(ok(&cli(hosts, &["take", "--no-ack", &path])), "first\n");
    assert_eq!(ok(&cli(hosts, &["take", "--ack", &path])), "first\n");
    assert_eq!(ok(&cli(hosts, &["take", &path])), "second\n");
    assert_eq!(ok(&cli(hosts, &["take", &path])), "keyed\n");
    let empty = cli(hosts, &["take", "--timeout", "200ms", &path]);
    assert_eq!(empty.status.code(), Some(3));
    let stats = ok(&cli(hosts, &["stats", &path]));
    assert_eq!(stat_line(&stats, "depth"), "0");
    assert_eq!(stat_line(&stats, "redeliveries"), "1");
}

#[test]
fn bounded_put_refuses_with_clear_error() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("cli-bound");
    ok(&cli(hosts, &["put", "--max-items", "2", &path, "a", "b"]));
    let out = cli(hosts, &["put", &path, "c"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is full") && err.contains("limits 2 items"), "{err}");
    assert_eq!(stat_line(&ok(&cli(hosts, &["stats", &path])), "max_items"), "2");
}

#[test]
fn consume_acks_on_success_and_dead_letters_failures() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("cli-consume");
    ok(&cli(hosts, &["put", "--max-attempts", "2", &path, "good-1", "bad", "good-2"]));
    let dir = std::env::temp_dir().join(format!("corral-queue-consume-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        "read -r m; if [ \"$m\" = bad ]; then exit 1; fi; printf '%s %s\\n' \"$m\" \"$CORRAL_QUEUE_ATTEMPT\" >> {}/done",
        dir.display()
    );
    let out = cli(hosts, &["consume", "--idle", "1s", &path, "--", "sh", "-c", &script]);
    ok(&out);
    let done = std::fs::read_to_string(dir.join("done")).unwrap();
    assert_eq!(done, "good-1 1\ngood-2 1\n");
    let dlq = ok(&cli(hosts, &["dlq", &path]));
    assert!(dlq.contains("attempts=2\tbad"), "{dlq}");
    assert_eq!(stat_line(&ok(&cli(hosts, &["stats", &path])), "depth"), "0");
    // Operators can send dead letters back once the cause is fixed.
    assert_eq!(ok(&cli(hosts, &["dlq", "--requeue", &path])), "requeued 1\n");
    let stats = ok(&cli(hosts, &["stats", &path]));
    assert_eq!((stat_line(&stats, "depth"), stat_line(&stats, "dlq")), ("1".into(), "0".into()));
    assert_eq!(ok(&cli(hosts, &["take", &path])), "bad\n");
    assert_eq!(ok(&cli(hosts, &["dlq", "--requeue", &path])), "requeued 0\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn clear_errors() {
    let hosts = &Server::shared().hosts;
    let bad = cli(hosts, &["take", "no-slash"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid queue path"), "{}", String::from_utf8_lossy(&bad.stderr));

    let missing = cli(hosts, &["stats", &unique_path("nope")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no queue at"), "{}", String::from_utf8_lossy(&missing.stderr));

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t0 = std::time::Instant::now();
    let unreachable = cli(&format!("127.0.0.1:{port}"), &["stats", "/q"]);
    assert!(!unreachable.status.success());
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(err.contains("cannot reach ZooKeeper"), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "refused connections must fail fast: {:?}", t0.elapsed());

    let usage = cli(hosts, &["frobnicate", "/q"]);
    assert!(!usage.status.success());
    assert!(String::from_utf8_lossy(&usage.stderr).contains("unknown command"));
}

#[test]
fn kazoo_and_curator_layouts_from_the_cli() {
    let hosts = &Server::shared().hosts;
    for layout in ["kazoo", "curator"] {
        let path = unique_path(layout);
        ok(&cli(hosts, &["put", "--layout", layout, &path, "one", "two"]));
        let stats = ok(&cli(hosts, &["stats", &path]));
        assert_eq!(stat_line(&stats, "layout"), layout);
        assert_eq!(stat_line(&stats, "depth"), "2");
        assert!(stat_line(&stats, "oldest_age_ms").parse::<u64>().is_ok(), "{stats}");
        assert_eq!(ok(&cli(hosts, &["take", &path])), "one\n");
        assert_eq!(ok(&cli(hosts, &["take", "--layout", layout, &path])), "two\n");
        let out = cli(hosts, &["put", "--layout", layout, "--delay", "1s", &path, "x"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not support delayed delivery"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_survives_session_expiry() {
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("cli-reconnect");
    let proxy = common::Proxy::start(&hosts).await;
    ok(&cli(&hosts, &["put", &path, "before"]));
    let dir = std::env::temp_dir().join(format!("corral-queue-reconnect-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let done = dir.join("done");
    let script = format!("cat >> {}; echo >> {}", done.display(), done.display());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_corral-queue"))
        .args(["--hosts", &proxy.hosts, "--session-timeout", "1s", "consume", "--max", "2", "--idle", "30s", &path, "--", "sh", "-c", &script])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&done).unwrap_or_default() != "before\n" {
        assert!(std::time::Instant::now() < deadline, "first message not consumed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Cut the consumer off long enough for its session to expire.
    proxy.partition();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    proxy.heal();
    ok(&cli(&hosts, &["put", &path, "after"]));
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output()).await.expect("consume did not finish").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("reconnecting"), "{err}");
    assert_eq!(std::fs::read_to_string(&done).unwrap(), "before\nafter\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn blob_dir_keeps_large_payloads_outside_zookeeper() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("cli-blobs");
    let dir = tempfile::tempdir().unwrap();
    let blob_dir = dir.path().to_str().unwrap();
    let big = "x".repeat(5000);
    ok(&cli(hosts, &["put", "--blob-dir", blob_dir, "--blob-threshold", "1000", &path, &big, "small"]));
    let blob_files = || walk(dir.path());
    assert_eq!(blob_files().len(), 1);
    // A consumer without the directory cannot read it, and says why.
    let out = cli(hosts, &["take", "--timeout", "5s", &path]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("blob store") && err.contains("--blob-dir"), "{err}");
    // That failed delivery put the message back for a second.
    assert_eq!(ok(&cli(hosts, &["take", "--blob-dir", blob_dir, "--timeout", "5s", &path])), "small\n");
    assert_eq!(ok(&cli(hosts, &["take", "--blob-dir", blob_dir, "--timeout", "5s", &path])), format!("{big}\n"));
    assert!(blob_files().is_empty(), "blob left after the ack");
    let swept = ok(&cli(hosts, &["sweep-blobs", "--blob-dir", blob_dir, "--grace", "0s", &path]));
    assert_eq!(swept, "listed 0, deleted 0, referenced 0, young 0, foreign 0\n");
    let out = cli(hosts, &["sweep-blobs", &path]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --blob-dir"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
