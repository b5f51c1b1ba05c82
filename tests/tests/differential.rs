//! Differential test: the same seeded random operation sequences against
//! Corral and Apache ZooKeeper 3.8, side by side. Results, error codes, Stat
//! fields (zxid and time values compared only by their relations) and the
//! watch events a second session sees must match exactly.

use std::time::Duration;

use corral_tests::zookeeper::ZooKeeper;
use corral_tests::{connect, embedded};
use zookeeper_client::{Acls, AddWatchMode, Client, CreateMode, MultiWriteError, MultiWriteResult, PersistentWatcher, Stat};

/// splitmix64: a tiny seeded generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create { path: String, data: Vec<u8>, mode: CreateMode },
    Delete { path: String, version: Option<i32> },
    SetData { path: String, data: Vec<u8>, version: Option<i32> },
    Exists { path: String },
    GetData { path: String },
    GetChildren { path: String },
    Check { path: String, version: i32 },
    Multi(Vec<Op>),
}

const NAMES: &[&str] = &["a", "b", "c"];

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    let mut p = String::from("/t");
    for _ in 0..depth {
        p.push('/');
        let name: &&str = rng.pick(NAMES);
        p.push_str(name);
    }
    p
}

fn random_version(rng: &mut Rng) -> Option<i32> {
    match rng.below(4) {
        0 => Some(rng.below(3) as i32),
        _ => None,
    }
}

fn random_write(rng: &mut Rng) -> Op {
    let path = random_path(rng);
    match rng.below(4) {
        0 | 1 => {
            let mode = *rng.pick(&[
                CreateMode::Persistent,
                CreateMode::Persistent,
                CreateMode::Ephemeral,
                CreateMode::PersistentSequential,
                CreateMode::EphemeralSequential,
            ]);
            Op::Create { path, data: vec![b'x'; rng.below(4) as usize], mode }
        }
        2 => Op::Delete { path, version: random_version(rng) },
        _ => Op::SetData { path, data: vec![b'y'; rng.below(4) as usize], version: random_version(rng) },
    }
}

fn random_op(rng: &mut Rng) -> Op {
    match rng.below(10) {
        0..=4 => random_write(rng),
        5 => Op::Exists { path: random_path(rng) },
        6 => Op::GetData { path: random_path(rng) },
        7 => Op::GetChildren { path: random_path(rng) },
        _ => {
            let n = 1 + rng.below(3);
            let mut ops: Vec<Op> = (0..n).map(|_| random_write(rng)).collect();
            if rng.below(3) == 0 {
                ops.push(Op::Check { path: random_path(rng), version: rng.below(2) as i32 });
            }
            Op::Multi(ops)
        }
    }
}

/// Stat with zxids and times replaced by their relations, and the owner by
/// whether it is the acting session.
fn norm_stat(s: &Stat, me: i64) -> String {
    format!(
        "v{} cv{} av{} len{} kids{} owner:{} c=m:{} c=p:{}",
        s.version,
        s.cversion,
        s.aversion,
        s.data_length,
        s.num_children,
        match s.ephemeral_owner {
            0 => "none".to_string(),
            o if o == me => "me".to_string(),
            _ => "other".to_string(),
        },
        s.czxid == s.mzxid,
        s.czxid == s.pzxid,
    )
}

fn options(mode: CreateMode) -> zookeeper_client::CreateOptions<'static> {
    mode.with_acls(Acls::anyone_all())
}

async fn run(zk: &Client, op: &Op) -> String {
    let me = zk.session_id().0;
    match op {
        Op::Create { path, data, mode } => match zk.create(path, data, &options(*mode)).await {
            Ok((stat, seq)) => format!("ok seq={} {}", seq.into_i64(), norm_stat(&stat, me)),
            Err(e) => format!("err {e:?}"),
        },
        Op::Delete { path, version } => format!("{:?}", zk.delete(path, *version).await),
        Op::SetData { path, data, version } => match zk.set_data(path, data, *version).await {
            Ok(stat) => format!("ok {}", norm_stat(&stat, me)),
            Err(e) => format!("err {e:?}"),
        },
        Op::Exists { path } => match zk.check_stat(path).await {
            Ok(Some(stat)) => format!("ok {}", norm_stat(&stat, me)),
            other => format!("{other:?}"),
        },
        Op::GetData { path } => match zk.get_data(path).await {
            Ok((d, stat)) => format!("ok {d:?} {}", norm_stat(&stat, me)),
            Err(e) => format!("err {e:?}"),
        },
        Op::GetChildren { path } => match zk.get_children(path).await {
            Ok((mut c, stat)) => {
                c.sort();
                format!("ok {c:?} {}", norm_stat(&stat, me))
            }
            Err(e) => format!("err {e:?}"),
        },
        Op::Check { .. } => unreachable!("check only inside multi"),
        Op::Multi(ops) => {
            let mut w = zk.new_multi_writer();
            for op in ops {
                match op {
                    Op::Create { path, data, mode } => w.add_create(path, data, &options(*mode)).unwrap(),
                    Op::Delete { path, version } => w.add_delete(path, *version).unwrap(),
                    Op::SetData { path, data, version } => w.add_set_data(path, data, *version).unwrap(),
                    Op::Check { path, version } => w.add_check_version(path, *version).unwrap(),
                    _ => unreachable!(),
                }
            }
            match w.commit().await {
                Ok(results) => results
                    .iter()
                    .map(|r| match r {
                        // Only the path: ZooKeeper's multi create Stat is unreliable (ZOOKEEPER-4026).
                        MultiWriteResult::Create { path, .. } => format!("create {path}"),
                        MultiWriteResult::SetData { stat } => format!("set {}", norm_stat(stat, me)),
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(MultiWriteError::OperationFailed { index, source }) => format!("failed at {index}: {source:?}"),
                Err(e) => format!("err {e:?}"),
            }
        }
    }
}

/// The events delivered so far; after a reply on the watching session, every
/// event of an earlier change must already be here.
async fn drain(watcher: &Client, events: &mut PersistentWatcher) -> Vec<String> {
    watcher.sync("/t").await.unwrap();
    watcher.check_stat("/t").await.unwrap();
    let mut out = Vec::new();
    while let Ok(ev) = tokio::time::timeout(Duration::ZERO, events.changed()).await {
        out.push(format!("{:?} {}", ev.event_type, ev.path));
    }
    out
}

struct Side {
    zk: Client,
    watcher: Client,
    recursive: PersistentWatcher,
    children: PersistentWatcher,
}

async fn side(hosts: &str) -> Side {
    let zk = connect(hosts, Duration::from_secs(20)).await;
    let watcher = connect(hosts, Duration::from_secs(20)).await;
    zk.create("/t", b"", &options(CreateMode::Persistent)).await.unwrap();
    let recursive = watcher.watch("/t", AddWatchMode::PersistentRecursive).await.unwrap();
    let children = watcher.watch("/t/a", AddWatchMode::Persistent).await.unwrap();
    Side { zk, watcher, recursive, children }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_match_apache_zookeeper() {
    if !ZooKeeper::available() {
        panic!("Apache ZooKeeper is not installed: run tests/clients/install-deps.sh (tests/run-all.sh does)");
    }
    let zookeeper = ZooKeeper::start("");
    let corral = embedded("").await;
    let seeds: Vec<u64> = match std::env::var("DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("DIFF_SEED is a number")],
        Err(_) => vec![1, 2, 3, 4],
    };
    let ops_per_seed = 250;
    // Coverage: the comparison must not be vacuous.
    let (mut created, mut multi_ok, mut multi_failed, mut events, mut errors) = (0, 0, 0, 0, 0);
    for seed in seeds {
        let mut a = side(&zookeeper.hosts()).await;
        let mut b = side(&corral.connect_string()).await;
        let mut rng = Rng(seed);
        for step in 0..ops_per_seed {
            let op = random_op(&mut rng);
            let ra = run(&a.zk, &op).await;
            let rb = run(&b.zk, &op).await;
            assert_eq!(ra, rb, "seed {seed} step {step}: {op:?}\n  zookeeper: {ra}\n  corral:    {rb}");
            match &op {
                Op::Create { .. } if ra.starts_with("ok") => created += 1,
                Op::Multi(_) if ra.starts_with("failed") => multi_failed += 1,
                Op::Multi(_) => multi_ok += 1,
                _ => {}
            }
            errors += usize::from(ra.contains("Err")) + usize::from(ra.starts_with("err"));
            let ea = drain(&a.watcher, &mut a.recursive).await;
            let eb = drain(&b.watcher, &mut b.recursive).await;
            assert_eq!(ea, eb, "seed {seed} step {step}: recursive-watch events after {op:?}");
            events += ea.len();
            let ca = drain(&a.watcher, &mut a.children).await;
            let cb = drain(&b.watcher, &mut b.children).await;
            assert_eq!(ca, cb, "seed {seed} step {step}: persistent-watch events after {op:?}");
        }
        // Tear down for the next seed: closing the sessions removes their ephemerals.
        for s in [a, b] {
            drop(s.zk);
            drop(s.watcher);
        }
        let cleaner_a = connect(&zookeeper.hosts(), Duration::from_secs(20)).await;
        let cleaner_b = connect(&corral.connect_string(), Duration::from_secs(20)).await;
        for c in [&cleaner_a, &cleaner_b] {
            delete_all(c, "/t").await;
        }
    }
    println!("created {created}, multi ok {multi_ok}, multi failed {multi_failed}, errors {errors}, events {events}");
    assert!(created >= 20 && multi_ok >= 5 && multi_failed >= 5 && errors >= 20 && events >= 20,
        "too little coverage: created {created}, multi ok {multi_ok}, multi failed {multi_failed}, errors {errors}, events {events}");
}

async fn delete_all(zk: &Client, root: &str) {
    // Depth-first, iterative; ephemerals of closed sessions may vanish meanwhile.
    let mut stack = vec![root.to_string()];
    let mut order = Vec::new();
    while let Some(p) = stack.pop() {
        if let Ok(children) = zk.list_children(&p).await {
            for c in children {
                stack.push(format!("{p}/{c}"));
            }
        }
        order.push(p);
    }
    for p in order.iter().rev() {
        let _ = zk.delete(p, None).await;
    }
    assert_eq!(zk.check_stat(root).await.unwrap(), None);
}
