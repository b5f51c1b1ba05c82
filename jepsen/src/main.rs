//! `corral-jepsen`: see `docs/jepsen.md`.
//!
//! Exit status: 0 valid, 1 a violation found, 2 a harness or usage error.

use corral_jepsen::check::{self, history, Checked, Options, Workload};
use corral_jepsen::cluster::{Event, Target};
use corral_jepsen::report;
use corral_jepsen::runner::{self, TestConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  corral-jepsen test --workload W --nemesis N[,N...] --time SECONDS [--nodes 3] [--concurrency C]
                     [--read-consistency sequential|linearizable] [--target corral|zookeeper] [--bug B]
                     [--seed S] [--keys K] [--store DIR] [--net netns|proxy]
      workloads: register (linearizable registers; --keys K of them), set (adds, a final read),
                 counter (CAS increments and reads, a final read), unique-ids (sequential znodes),
                 lock (the ephemeral sequential lock recipe: no two live holders at once),
                 queue (corral-queue's native queue: nothing lost or unexpected, duplicates only
                 after a lost claim), total-queue (the same unkeyed, some puts indeterminate, batch
                 takes; deliveries held against the queue's own totals), watch (data watches on --keys K keys: each watcher sees
                 every key's values in order, none never written), session (ephemeral nodes:
                 owned by their creator's session, kept while it lives, gone once it closed)
      nemeses: kill, kill-all, pause, partition (isolate one, the leader, halves, a bridge, a ring),
               partition-leader, partition-bridge, partition-ring, wipe (restart a member empty),
               skew (restart a member with its wall clock off, libfaketime),
               partition-oneway (packets one way only; --net netns), lose-unsynced (a power cut:
               kill -9 a member and drop what its data directory had not fsynced; FUSE), lose-unsynced-all, none
      --net: netns (a network namespace per member, partitions drop packets; root, iproute2,
             iptables) or proxy (loopback, links through TCP proxies); default netns where it works
  corral-jepsen check HISTORY [--workload W] [--read-consistency sequential|linearizable]
  corral-jepsen bench-check [--ops N] [--keys K] [--concurrency C]
  corral-jepsen serve [--store DIR] [--port 8080]   (the store's runs and reports, on 127.0.0.1)";

fn usage(msg: &str) -> ExitCode {
    eprintln!("{msg}\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    // The corral beside this binary (same cargo profile), unless told.
    if std::env::var_os("CORRAL_BIN").is_none() {
        if let Some(bin) = std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("corral"))).filter(|p| p.exists()) {
            std::env::set_var("CORRAL_BIN", bin);
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => {
            clean_up_on_signal();
            test(&args[1..])
        }
        Some("check") => check_file(&args[1..]),
        Some("bench-check") => bench_check(&args[1..]),
        Some("serve") => serve(&args[1..]),
        // Not in the usage: the nemeses' filesystem alone, to poke at by hand.
        Some("lazyfs") => lazyfs(&args[1..]),
        _ => usage("no command"),
    }
}

/// `--flag value` pairs; every flag takes a value.
fn flags(args: &[String], known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a.strip_prefix("--").ok_or_else(|| format!("unexpected argument {a:?}"))?;
        if !known.contains(&name) {
            return Err(format!("unknown flag --{name}"));
        }
        let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.push((name.to_owned(), v.clone()));
    }
    Ok(out)
}

fn parse_test(args: &[String]) -> Result<TestConfig, String> {
    let known = ["workload", "nemesis", "time", "nodes", "concurrency", "rate", "read-consistency", "target", "bug", "seed", "keys", "store", "net"];
    let mut cfg = TestConfig {
        workload: Workload::Register,
        nemesis: Vec::new(),
        time: Duration::from_secs(30),
        nodes: 3,
        concurrency: 0,
        rate: None,
        linearizable_reads: false,
        target: Target::Corral,
        bug: None,
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000,
        keys: 3,
        store: PathBuf::from("store"),
        net: None,
    };
    let num = |k: &str, v: &str| v.parse::<u64>().map_err(|_| format!("--{k}: not a number: {v:?}"));
    for (k, v) in flags(args, &known)? {
        match k.as_str() {
            "workload" => cfg.workload = v.parse()?,
            "nemesis" => {
                cfg.nemesis = if v == "none" { Vec::new() } else { v.split(',').map(str::parse).collect::<Result<_, _>>()? };
            }
            "time" => cfg.time = Duration::from_secs(num(&k, &v)?),
            "nodes" => cfg.nodes = num(&k, &v)? as usize,
            "concurrency" => cfg.concurrency = num(&k, &v)? as usize,
            "rate" => {
                let r: f64 = v.parse().map_err(|_| format!("--rate: not a number: {v:?}"))?;
                if !(r.is_finite() && r > 0.0) {
                    return Err(format!("--rate must be a positive number of ops per second, not {v:?}"));
                }
                cfg.rate = Some(r);
            }
            "read-consistency" => {
                cfg.linearizable_reads = match v.as_str() {
                    "linearizable" => true,
                    "sequential" => false,
                    _ => return Err(format!("--read-consistency: sequential or linearizable, not {v:?}")),
                }
            }
            "target" => cfg.target = v.parse()?,
            "bug" => cfg.bug = Some(v),
            "seed" => cfg.seed = num(&k, &v)?,
            "keys" => cfg.keys = (num(&k, &v)? as usize).max(1),
            "store" => cfg.store = PathBuf::from(v),
            "net" => cfg.net = Some(v.parse()?),
            _ => unreachable!(),
        }
    }
    if cfg.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    if cfg.concurrency == 0 {
        cfg.concurrency = 2 * cfg.nodes;
    }
    Ok(cfg)
}

/// SIGINT, SIGTERM or SIGHUP ends a test run after removing its network
/// namespaces and what runs in them (no destructor runs on a signal; a
/// run killed with SIGKILL leaves them to the next run's stale sweep).
/// Called before any other thread exists: they inherit the blocked mask,
/// and only the thread here takes the signals (children start with
/// signals unblocked, as `std::process::Command` resets the mask).
fn clean_up_on_signal() {
    // SAFETY: plain libc calls on a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        std::thread::spawn(move || {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                eprintln!("signal {sig}: removing the run's network namespaces, then exiting");
                corral_jepsen::netns::remove_live();
                std::process::exit(128 + sig);
            }
        });
    }
}

fn test(args: &[String]) -> ExitCode {
    let cfg = match parse_test(args) {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    match runner::run(&cfg) {
        Ok(r) => {
            println!("{} ops ({} ok, {} fail, {} info); {} nemesis events; {} ms to check", r.ops.total, r.ops.ok, r.ops.fail, r.ops.info, r.nemesis.len(), r.check_ms);
            println!("{}: {}", cfg.workload.name(), r.check.summary());
            println!("net: {}", r.net.name());
            println!("store: {}", r.dir.display());
            if !r.crashed.is_empty() {
                // No fault the nemesis injects may make a server exit on its
                // own (Corral stops on a failed invariant, e.g. a follower
                // whose tree left the log's): whatever the history shows.
                println!("INVALID: {} member(s) exited on their own during the run:", r.crashed.len());
                for c in &r.crashed {
                    println!("  {c}");
                }
                if let Some(why) = r.check.explain() {
                    println!("and the history: {why}");
                }
                println!("rerun: {}", r.command);
                return ExitCode::from(1);
            }
            finish(&r.check, &r.command)
        }
        Err(e) => {
            eprintln!("harness error: {e}");
            println!("rerun: {}", cfg.command());
            ExitCode::from(2)
        }
    }
}

fn finish(checked: &Checked, command: &str) -> ExitCode {
    match checked.explain() {
        None => {
            println!("VALID");
            println!("rerun: {command}");
            ExitCode::SUCCESS
        }
        Some(why) => {
            println!("INVALID: {why}");
            println!("rerun: {command}");
            ExitCode::from(1)
        }
    }
}

fn check_file(args: &[String]) -> ExitCode {
    let Some(path) = args.first() else { return usage("check needs a history file") };
    let path = PathBuf::from(path);
    // Reads are checked as the run checked them (results.json beside the
    // history), unless told; the workload is the run's, else told, else
    // what the ops are.
    let results = std::fs::read_to_string(path.with_file_name("results.json")).ok().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let mut reads = results.as_ref().and_then(|v| v["check"]["reads_checked"].as_bool()).unwrap_or(true);
    let mut workload = results.as_ref().and_then(|v| v["workload"].as_str().and_then(|w| w.parse::<Workload>().ok()));
    match flags(&args[1..], &["read-consistency", "workload"]) {
        Ok(f) => {
            for (k, v) in f {
                match (k.as_str(), v.as_str()) {
                    ("workload", w) => match w.parse() {
                        Ok(w) => workload = Some(w),
                        Err(e) => return usage(&e),
                    },
                    (_, "linearizable") => reads = true,
                    (_, "sequential") => reads = false,
                    (_, other) => return usage(&format!("--read-consistency: sequential or linearizable, not {other:?}")),
                }
            }
        }
        Err(e) => return usage(&e),
    }
    let ops = match std::fs::File::open(&path).map_err(|e| e.to_string()).and_then(|f| history::read_jsonl(std::io::BufReader::new(f))) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let workload = workload.unwrap_or_else(|| Workload::infer(&ops));
    let t = Instant::now();
    let checked = check::check_workload(workload, &ops, Options { reads });
    println!("{} ops in {} ms; {}: {}", ops.len(), t.elapsed().as_millis(), workload.name(), checked.summary());
    // The reports go beside the history, with the run's faults if its
    // results.json is there too.
    let events: Vec<Event> = results.as_ref().and_then(|v| serde_json::from_value(v["nemesis"].clone()).ok()).unwrap_or_default();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    match report::write(dir, &runner::title(dir), &ops, &events, &checked) {
        Ok(()) => println!("report: {}", dir.join("timeline.html").display()),
        Err(e) => eprintln!("no report: {e}"),
    }
    let command = format!("corral-jepsen check {} --workload {} --read-consistency {}", path.display(), workload.name(), if reads { "linearizable" } else { "sequential" });
    finish(&checked, &command)
}

fn serve(args: &[String]) -> ExitCode {
    let (mut store, mut port) = (PathBuf::from("store"), 8080u16);
    match flags(args, &["store", "port"]) {
        Ok(f) => {
            for (k, v) in f {
                match k.as_str() {
                    "store" => store = PathBuf::from(v),
                    _ => match v.parse() {
                        Ok(p) => port = p,
                        Err(_) => return usage(&format!("--port: not a port: {v:?}")),
                    },
                }
            }
        }
        Err(e) => return usage(&e),
    }
    let ready = |addr: std::net::SocketAddr| {
        use std::io::Write;
        println!("serving {} at http://{addr}/", store.display());
        let _ = std::io::stdout().flush();
    };
    match corral_jepsen::serve::serve(&store, port, ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::from(2)
        }
    }
}

fn bench_check(args: &[String]) -> ExitCode {
    let (mut ops, mut keys, mut conc) = (100_000usize, 5usize, 10u64);
    match flags(args, &["ops", "keys", "concurrency"]) {
        Ok(f) => {
            for (k, v) in f {
                let Ok(n) = v.parse::<u64>() else { return usage(&format!("--{k}: not a number")) };
                match k.as_str() {
                    "ops" => ops = n as usize,
                    "keys" => keys = (n as usize).max(1),
                    _ => conc = n.max(1),
                }
            }
        }
        Err(e) => return usage(&e),
    }
    let history = check::gen::linearizable_history(ops, keys, conc, 1);
    let t = Instant::now();
    let report = check::check(&history, Options::default());
    println!("{ops} ops, {keys} keys, ~{} overlapping: {} in {} ms", 2 * conc, if report.valid { "valid" } else { "INVALID" }, t.elapsed().as_millis());
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `corral-jepsen lazyfs MOUNT BACKING`: mounts the lose-unsynced
/// nemeses' filesystem until SIGTERM or SIGINT; SIGUSR1 is a power cut.
fn lazyfs(args: &[String]) -> ExitCode {
    let [mount, backing] = args else { return usage("lazyfs MOUNT BACKING") };
    // Blocked before the filesystem's threads exist, so that they inherit
    // the mask and only sigwait below sees these signals.
    // SAFETY: plain libc signal-set calls on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGUSR1, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let m = match corral_jepsen::lazyfs::Mount::new(mount.as_ref(), backing.as_ref()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("lazyfs: mounting {mount}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("lazyfs: {backing} mounted on {mount}; SIGUSR1 drops unsynced writes, SIGTERM unmounts");
    loop {
        let mut sig = 0;
        // SAFETY: waits on the set built above.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 || sig != libc::SIGUSR1 {
            break;
        }
        let cut = m.power_cut();
        println!("lazyfs: power cut: {} unsynced bytes in {} files dropped", cut.bytes, cut.files);
    }
    match m.unmount() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazyfs: unmounting {mount}: {e}");
            ExitCode::from(2)
        }
    }
}
