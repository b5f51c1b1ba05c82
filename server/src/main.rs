//! `corral`: with no arguments, the embedded default (standalone,
//! 127.0.0.1:2181, data in ./corral-data); `corral server zoo.cfg` runs from
//! a ZooKeeper configuration file.

// glibc's malloc took about a tenth of a replicated write's CPU in its slow
// paths (_int_malloc, unlink_chunk, malloc_consolidate) and returned pages it
// soon faulted in again; with mimalloc a write on a 3-member ensemble cost
// 51 instead of 64 µs of CPU (A/B, alternating runs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (the same index in
/// its v2 and v3; the crate names no constant for it). Checked by a test.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse instead of handing it back to the OS 10 ms
/// later: under load mimalloc gave pages back and faulted them in again, and
/// zeroing them took 9% of a member's CPU. With purging off: 15% less CPU per
/// replicated write (A/B, alternating runs). The cost: the process's RSS stays
/// at its high-water mark (docs/operations.md), as a JVM's heap does.
fn keep_freed_memory() {
    // Safety: sets a process-wide allocator option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

use std::path::PathBuf;
use std::process::ExitCode;

use corral::config::Config;
use corral::net::Server;

const USAGE: &str = "usage: corral                  run standalone on 127.0.0.1:2181 with data in ./corral-data
       corral server ZOO_CFG    run with a ZooKeeper zoo.cfg (and dataDir/myid)
       corral dev [--nodes N] [--port P] [--data DIR]
                                a local N-member ensemble (default 3) in this one process,
                                client ports P, P+1, ... (default 2181; 0: free ports); data in
                                a temporary directory removed on exit unless --data is given;
                                ctrl-c stops it
       corral --version         print the version
test only: corral server ZOO_CFG --unsafe-test-bug BUG [--unsafe-test-bug BUG ...]
                                break a guarantee on purpose (lost-ack, stale-read, overlay-skip, expire-on-follower)";

fn main() -> ExitCode {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut bugs = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    let mut it = args.iter().map(String::as_str);
    while let Some(a) = it.next() {
        if a == "--unsafe-test-bug" {
            match it.next().map(str::parse::<corral::testbug::TestBug>) {
                Some(Ok(b)) => bugs.push(b),
                Some(Err(e)) => {
                    eprintln!("corral: {e}");
                    return ExitCode::from(64);
                }
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(64);
                }
            }
        } else {
            rest.push(a);
        }
    }
    if rest.first() == Some(&"dev") && bugs.is_empty() {
        return dev(&rest[1..]);
    }
    let cfg = match rest.as_slice() {
        [] if bugs.is_empty() => Ok(Config::embedded_default()),
        ["server", path] => Config::load(&PathBuf::from(path)).map(|mut c| {
            c.unsafe_test_bugs = std::mem::take(&mut bugs);
            c
        }),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        ["-V" | "--version" | "version"] => {
            println!("corral {} (ZooKeeper 3.8 wire protocol)", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corral: configuration error: {e}");
            return ExitCode::from(78);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match Server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("corral: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        // Tests and scripts read the bound addresses from these lines; the
        // plain one comes last and means "ready".
        if let Some(a) = server.secure_addr {
            println!("corral listening (TLS) on {a}");
        }
        println!("corral listening on {}", server.local_addr);
        tokio::select! {
            _ = wait_for_signal() => tracing::info!("shutting down"),
            // Only on an error that makes going on unsafe (logged by the processor).
            _ = server.stopping() => {}
        }
        match server.shutdown().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corral: {e}");
                ExitCode::from(2)
            }
        }
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `corral dev`: an ensemble for development, through the embedding API.
fn dev(args: &[&str]) -> ExitCode {
    let mut nodes = 3usize;
    let mut data: Option<PathBuf> = None;
    let mut port = 2181u16;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (*a, it.next()) {
            ("--nodes", Some(n)) => match n.parse() {
                Ok(n) if (1..=9).contains(&n) => nodes = n,
                _ => {
                    eprintln!("corral dev: --nodes takes 1 to 9, found {n:?}");
                    return ExitCode::from(64);
                }
            },
            ("--data", Some(d)) => data = Some(PathBuf::from(d)),
            ("--port", Some(p)) => match p.parse() {
                Ok(p) => port = p,
                Err(_) => {
                    eprintln!("corral dev: --port takes a port number, found {p:?}");
                    return ExitCode::from(64);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(64);
            }
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let mut server = corral::ServerBuilder::default().client_addr(([127, 0, 0, 1], port).into());
        if let Some(d) = data {
            server = server.data_dir(d);
        }
        let stopped = if nodes == 1 {
            match server.start().await {
                Ok(s) => {
                    println!("corral dev: 1 member; connect string {}", s.connect_string());
                    wait_for_signal().await;
                    s.shutdown().await
                }
                Err(e) => Err(e),
            }
        } else {
            match corral::Cluster::builder(nodes).server(server).client_ports_from(port).start().await {
                Ok(c) => {
                    println!("corral dev: {nodes} members; connect string {}", c.connect_string());
                    wait_for_signal().await;
                    c.shutdown().await
                }
                Err(e) => Err(e),
            }
        };
        match stopped {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corral dev: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(test)]
mod tests {
    /// Prints what mimalloc holds at `MI_OPTION_PURGE_DELAY` (run on its own
    /// by the next test, with the option set through the environment).
    #[test]
    fn print_purge_delay_option() {
        let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        println!("option={v}");
    }

    /// The index is the purge delay: mimalloc reads `MIMALLOC_PURGE_DELAY`
    /// from the environment into exactly that option.
    #[test]
    fn the_option_index_is_the_purge_delay() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::print_purge_delay_option", "--nocapture", "--test-threads=1"])
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("option=4321"), "mimalloc's option {} is not the purge delay:\n{text}", super::MI_OPTION_PURGE_DELAY);
    }
}
