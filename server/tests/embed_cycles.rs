//! Starting and stopping embedded servers leaks nothing. Alone in its test
//! binary: the counts are the whole process's.

mod common;

use std::time::Duration;

use common::{connect, persistent};
use corral::Server;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_start_stop_cycles_leak_no_descriptor_thread_or_memory() {
    async fn cycle() {
        let s = Server::builder().start().await.unwrap();
        let c = connect(&s.connect_string()).await;
        c.create("/x", b"v", &persistent()).await.unwrap();
        // The stock client closes its session in a task of its own after
        // the drop, and retries for ever if the server vanishes first (a
        // task leaked by the client, not the server): wait for the close.
        drop(c);
        loop {
            let mntr = s.four_letter_word("mntr").await.unwrap();
            if mntr.lines().any(|l| l == "zk_global_sessions\t0") {
                break;
            }
            if std::env::var_os("CYCLES_TRACE").is_some() {
                eprintln!("{}", mntr.lines().filter(|l| l.contains("session") || l.contains("conn")).collect::<Vec<_>>().join(" | "));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        s.shutdown().await.unwrap();
    }
    // Warm up: the runtime's blocking pool and the allocator settle.
    for _ in 0..20 {
        cycle().await;
    }
    let (fds0, threads0, rss0) = (fds(), threads(), rss_kib());
    for k in 0..200 {
        cycle().await;
        if std::env::var_os("CYCLES_TRACE").is_some() && k % 20 == 0 {
            eprintln!("cycle {k}: rss {} KiB fds {} threads {} tasks {}", rss_kib(), fds(), threads(), tokio::runtime::Handle::current().metrics().num_alive_tasks());
        }
    }
    let (fds1, threads1, rss1) = (fds(), threads(), rss_kib());
    // The last client's session-close task ends on its own just after the
    // close is answered: give it a moment rather than count it as a leak.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::runtime::Handle::current().metrics().num_alive_tasks() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), 0, "every task of every server ended");
    assert!(fds1 <= fds0 + 2, "file descriptors grew from {fds0} to {fds1}");
    // tokio's blocking pool keeps idle threads for a while; a leak would be one or more per cycle.
    assert!(threads1 <= threads0 + 8, "threads grew from {threads0} to {threads1}");
    assert!(rss1 <= rss0 + 32 * 1024, "RSS grew from {rss0} KiB to {rss1} KiB over 200 cycles");
}

