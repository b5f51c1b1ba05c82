//! Four-letter words: answered by the processor from its own state, in
//! ZooKeeper's text formats (tools parse them: keep the key names).

use std::fmt::Write;

use super::processor::Processor;

/// The version Corral reports where ZooKeeper reports its own: clients and
/// tools gate features on it, and Corral implements 3.8's protocol.
pub const ZK_VERSION: &str = concat!("3.8.4-corral-", env!("CARGO_PKG_VERSION"), ", built on 1970-01-01 00:00 UTC");

/// Each limit on what a client can grow, beside its current use (Corral's
/// own mntr keys; `corral_limit_X` is the limit, `corral_use_X` what is
/// nearest to it now).
fn limit_rows(p: &Processor) -> Vec<(&'static str, String)> {
    let cfg = &p.cfg;
    let (per_ip_max, cnxns) = {
        let m = p.per_ip.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (m.values().copied().max().unwrap_or(0), m.values().sum::<u32>())
    };
    let queues = p.conns.values().map(|c| c.out.queued());
    let (out_max, out_total) = queues.fold((0, 0), |(m, t), q| (m.max(q), t + q));
    let input_used = p.input.as_ref().and_then(|w| w.upgrade()).map_or(0, |tx| tx.max_capacity() - tx.capacity());
    let core = p.replica.core();
    vec![
        ("corral_limit_max_client_cnxns", cfg.max_client_cnxns.to_string()),
        ("corral_use_max_client_cnxns", per_ip_max.to_string()),
        ("corral_limit_max_cnxns", cfg.max_cnxns.to_string()),
        ("corral_use_max_cnxns", cnxns.to_string()),
        ("corral_limit_max_watches_per_session", cfg.max_watches_per_session.to_string()),
        ("corral_use_max_watches_per_session", core.watches.session_len_max().to_string()),
        ("corral_limit_max_set_watches_paths", cfg.max_set_watches_paths.to_string()),
        ("corral_use_max_set_watches_paths", p.stats.set_watches_paths_max.to_string()),
        ("corral_limit_max_output_queue_bytes", cfg.max_output_queue_bytes.to_string()),
        ("corral_use_max_output_queue_bytes", out_max.to_string()),
        ("corral_output_queue_bytes", out_total.to_string()),
        ("corral_limit_session_pending_max", crate::replica::SESSION_PENDING_MAX.to_string()),
        ("corral_use_session_pending_max", p.replica.longest_line().to_string()),
        ("corral_limit_input_queue_max", super::INPUT_QUEUE_MAX.to_string()),
        ("corral_use_input_queue_max", input_used.to_string()),
        ("corral_limit_jute_maxbuffer", cfg.max_frame_bytes.to_string()),
    ]
}

pub(super) fn run(p: &mut Processor, word: &str, asker: std::net::SocketAddr) -> String {
    let mut s = String::new();
    let core = p.replica.core();
    let st = &p.stats;
    // As ZooKeeper, a member without a leader serves no requests, and its
    // statistics words say so instead of answering.
    if p.cfg.peers.len() > 1 && p.replica.leader_id() == 0 && matches!(word, "srvr" | "stat" | "mntr" | "cons" | "wchs" | "wchc" | "wchp" | "dump") {
        return "This ZooKeeper instance is not currently serving requests\n".to_owned();
    }
    let mode = if p.cfg.peers.len() <= 1 {
        "standalone"
    } else if p.replica.is_leader() {
        "leader"
    } else {
        "follower"
    };
    let avg = if st.latency_count == 0 { 0.0 } else { st.latency_total_ms as f64 / st.latency_count as f64 };
    match word {
        "ruok" => s.push_str("imok"),
        "isro" => s.push_str("rw"),
        "srvr" | "stat" => {
            let _ = writeln!(s, "Zookeeper version: {ZK_VERSION}");
            if word == "stat" {
                s.push_str("Clients:\n");
                for c in p.conns_by_addr() {
                    let _ = writeln!(s, " /{}[1](queued=0,recved={},sent={})", c.addr, c.received, c.sent);
                }
                s.push('\n');
            }
            let _ = writeln!(s, "Latency min/avg/max: {}/{:.4}/{}", st.latency_min_ms, avg, st.latency_max_ms);
            let _ = writeln!(s, "Received: {}", st.received);
            let _ = writeln!(s, "Sent: {}", st.sent);
            let _ = writeln!(s, "Connections: {}", p.conns.len());
            let _ = writeln!(s, "Outstanding: 0");
            let _ = writeln!(s, "Zxid: {:#x}", core.last_zxid());
            let _ = writeln!(s, "Mode: {mode}");
            let _ = writeln!(s, "Node count: {}", core.tree.len());
        }
        "mntr" => {
            let rows: Vec<(&str, String)> = vec![
                ("zk_version", ZK_VERSION.to_string()),
                ("zk_server_state", mode.into()),
                ("zk_avg_latency", format!("{avg:.4}")),
                ("zk_max_latency", st.latency_max_ms.to_string()),
                ("zk_min_latency", st.latency_min_ms.to_string()),
                ("zk_packets_received", st.received.to_string()),
                ("zk_packets_sent", st.sent.to_string()),
                ("zk_num_alive_connections", p.conns.len().to_string()),
                ("zk_outstanding_requests", "0".into()),
                ("zk_znode_count", core.tree.len().to_string()),
                ("zk_watch_count", core.watches.total().to_string()),
                ("zk_ephemerals_count", core.tree.ephemeral_count().to_string()),
                ("zk_approximate_data_size", core.tree.data_bytes().to_string()),
                ("zk_global_sessions", core.sessions.len().to_string()),
                ("zk_last_zxid", format!("{:#x}", core.last_zxid())),
                ("zk_log_entries", p.replica.log_entries().to_string()),
                ("zk_zxid", format!("{:#x}", core.last_zxid())),
                ("zk_raft_term", p.replica.term().to_string()),
                ("zk_raft_leader", p.replica.leader_id().to_string()),
                ("zk_raft_commit_index", p.replica.commit_index().to_string()),
                ("zk_raft_applied_index", p.replica.applied_index().to_string()),
                ("zk_pending_writes", p.replica.pending_count().to_string()),
                ("zk_data_dir_size", p.store().size_on_disk().to_string()),
            ];
            let mut rows = rows;
            rows.extend(limit_rows(p));
            if let Some((followers, synced)) = p.replica.followers() {
                // As ZooKeeper, only the leader reports these. Syncs go
                // through the log like writes, so none wait apart.
                rows.push(("zk_followers", followers.to_string()));
                rows.push(("zk_synced_followers", synced.to_string()));
                rows.push(("zk_pending_syncs", "0".into()));
            }
            for (k, v) in rows {
                let _ = writeln!(s, "{k}\t{v}");
            }
        }
        "conf" => {
            let c = &p.cfg;
            let _ = writeln!(s, "clientPort={}", c.client_addr.port());
            let _ = writeln!(s, "clientPortAddress={}", c.client_addr.ip());
            let _ = writeln!(s, "dataDir={}", c.data_dir.display());
            let _ = writeln!(s, "dataLogDir={}", c.data_log_dir.display());
            let _ = writeln!(s, "tickTime={}", c.tick_ms);
            let _ = writeln!(s, "maxClientCnxns={}", c.max_client_cnxns);
            let _ = writeln!(s, "maxCnxns={}", c.max_cnxns);
            let _ = writeln!(s, "maxWatchesPerSession={}", c.max_watches_per_session);
            let _ = writeln!(s, "maxSetWatchesPaths={}", c.max_set_watches_paths);
            let _ = writeln!(s, "maxOutputQueueBytes={}", c.max_output_queue_bytes);
            let _ = writeln!(s, "minSessionTimeout={}", c.min_session_timeout_ms);
            let _ = writeln!(s, "maxSessionTimeout={}", c.max_session_timeout_ms);
            let _ = writeln!(s, "serverId={}", c.my_id);
            let _ = writeln!(s, "jute.maxbuffer={}", c.max_frame_bytes);
            let _ = writeln!(s, "extendedTypesEnabled={}", c.extended_types);
            for peer in &c.peers {
                let _ = writeln!(s, "server.{}={}:{}:{}:participant", peer.id, peer.host, peer.peer_port, peer.election_port);
            }
        }
        "cons" => {
            for c in p.conns_by_addr() {
                let avg = c.latency_total_ms.checked_div(c.latency_count).unwrap_or(0);
                let _ = writeln!(
                    s,
                    " /{}[1](queued=0,recved={},sent={},sid={:#x},lop={},est={},to={},lcxid={:#x},lzxid={:#x},lresp={},llat={},minlat={},avglat={},maxlat={})",
                    c.addr, c.received, c.sent, c.session_id, c.last_op, c.established_ms, c.timeout_ms, c.last_cxid,
                    c.last_zxid, c.last_response_ms, c.last_latency_ms, c.latency_min_ms, avg, c.latency_max_ms
                );
            }
            // The asking connection itself, which has no session.
            let _ = writeln!(s, " /{asker}[0](queued=0,recved=1,sent=0)");
            s.push('\n');
        }
        "envi" => {
            s.push_str("Environment:\n");
            let _ = writeln!(s, "zookeeper.version={ZK_VERSION}");
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let _ = writeln!(s, "host.name={}", host.trim());
            // ZooKeeper's keys, so tools that read them find them; Corral has no JVM.
            let _ = writeln!(s, "java.version=n/a (corral {})", env!("CARGO_PKG_VERSION"));
            let _ = writeln!(s, "java.vendor=n/a");
            let _ = writeln!(s, "java.home=n/a");
            let _ = writeln!(s, "java.class.path=n/a");
            let _ = writeln!(s, "java.library.path=n/a");
            let _ = writeln!(s, "java.io.tmpdir={}", std::env::temp_dir().display());
            let _ = writeln!(s, "java.compiler=<NA>");
            let _ = writeln!(s, "os.name={}", std::env::consts::OS);
            let _ = writeln!(s, "os.arch={}", std::env::consts::ARCH);
            let _ = writeln!(s, "os.version={}", std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim());
            let _ = writeln!(s, "user.name={}", std::env::var("USER").unwrap_or_default());
            let _ = writeln!(s, "user.home={}", std::env::var("HOME").unwrap_or_default());
            let _ = writeln!(s, "user.dir={}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default());
            let _ = writeln!(s, "corral.version={}", env!("CARGO_PKG_VERSION"));
        }
        "wchs" => {
            let w = &core.watches;
            let _ = writeln!(s, "{} connections watching {} paths", w.session_count(), w.path_count());
            let _ = writeln!(s, "Total watches:{}", w.count());
        }
        "wchc" => {
            for (session, paths) in core.watches.by_session() {
                let _ = writeln!(s, "{session:#x}");
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
        }
        "wchp" => {
            for (path, sessions) in core.watches.by_path() {
                let _ = writeln!(s, "{path}");
                for id in sessions {
                    let _ = writeln!(s, "\t{id:#x}");
                }
            }
        }
        "dump" => {
            s.push_str("SessionTracker dump:\n");
            let _ = writeln!(s, "Global Sessions({}):", core.sessions.len());
            let now = p.mono_ms();
            for (id, sess) in core.sessions.iter() {
                let left = if sess.deadline_ms == i64::MAX { sess.timeout_ms as i64 } else { sess.deadline_ms - now };
                let _ = writeln!(s, "{id:#x}\t{}ms", left.max(0));
            }
            s.push_str("ephemeral nodes dump:\n");
            let with: Vec<_> = core.sessions.iter().filter(|(id, _)| core.tree.ephemerals(**id).next().is_some()).collect();
            let _ = writeln!(s, "Sessions with Ephemerals ({}):", with.len());
            for (id, _) in with {
                let _ = writeln!(s, "{id:#x}:");
                for path in core.tree.ephemerals(*id) {
                    let _ = writeln!(s, "\t{path}");
                }
            }
        }
        "crst" => {
            p.reset_conn_stats();
            s.push_str("Connection stats reset.\n");
        }
        "srst" => {
            p.reset_stats();
            s.push_str("Server stats reset.\n");
        }
        other => {
            let _ = writeln!(s, "{other} is not a known command");
        }
    }
    s
}
