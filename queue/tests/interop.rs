//! Interop: real kazoo `LockingQueue` and `Queue` (Python) and real Curator
//! `DistributedQueue` (Java, compiled here with javac against Debian's jars)
//! against our kazoo, kazoo-queue and curator layouts, in both directions,
//! including queues the other library created without any marker of ours.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{connect, kazoo_python, unique_path, Server};
use corral_queue::codec;
use corral_queue::interop::LockQueue;
use zookeeper_client::{Acls, CreateMode};

const SESSION: Duration = Duration::from_secs(10);

/// Runs a kazoo snippet with `hosts` and `path` as argv[1], argv[2].
fn kazoo(py: &std::path::Path, hosts: &str, path: &str, body: &str) -> String {
    kazoo_with(py, hosts, path, "LockingQueue", body)
}

/// Same, with `q` an instance of kazoo's `class` (`Queue` or `LockingQueue`).
fn kazoo_with(py: &std::path::Path, hosts: &str, path: &str, class: &str, body: &str) -> String {
    let script = format!(
        "import sys\nfrom kazoo.client import KazooClient\nzk = KazooClient(hosts=sys.argv[1])\nzk.start(timeout=15)\n\
         from kazoo.recipe.queue import {class}\nq = {class}(zk, sys.argv[2])\n{body}\nzk.stop()\n"
    );
    let out = Command::new(py).arg("-c").arg(&script).arg(hosts).arg(path).output().expect("run python");
    assert!(out.status.success(), "kazoo script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn python_or_skip(test: &str) -> Option<std::path::PathBuf> {
    let py = kazoo_python();
    if py.is_none() {
        eprintln!("SKIP {test}: no python with kazoo (run queue/tests/install-deps.sh or set CORRAL_QUEUE_PYTHON)");
    }
    py
}

#[tokio::test]
async fn kazoo_producer_our_consumer() {
    let Some(py) = python_or_skip("kazoo_producer_our_consumer") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("kz1");
    kazoo(&py, hosts, &path, "q.put(b'low', priority=200)\nq.put(b'a')\nq.put(b'b')\nq.put_all([b'c', b'd'])\nq.put(b'urgent', priority=1)");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, false).await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = q.take(Some(Duration::from_millis(300))).await.unwrap() {
        got.push(String::from_utf8(d.payloads[0].clone()).unwrap());
        q.ack(&d).await.unwrap();
    }
    assert_eq!(got, ["urgent", "a", "b", "c", "d", "low"]);
    // kazoo sees the queue empty: our acks removed entries and locks.
    assert_eq!(kazoo(&py, hosts, &path, "print(len(q))").trim(), "0");
}

#[tokio::test]
async fn our_producer_kazoo_consumer() {
    let Some(py) = python_or_skip("our_producer_kazoo_consumer") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("kz2");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, true).await.unwrap();
    q.put(b"one", 100).await.unwrap();
    q.put(b"zero", 50).await.unwrap();
    q.put_batch(&[b"two".to_vec(), b"three".to_vec()], 100).await.unwrap();
    let out = kazoo(
        &py,
        hosts,
        &path,
        "while True:\n    v = q.get(timeout=0.5)\n    if v is None: break\n    print(v.decode())\n    assert q.consume()",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["zero", "one", "two", "three"]);
    assert_eq!(q.counts().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn kazoo_lock_is_respected_both_ways() {
    let Some(py) = python_or_skip("kazoo_lock_is_respected_both_ways") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("kz3");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, true).await.unwrap();
    q.put(b"first", 100).await.unwrap();
    q.put(b"second", 100).await.unwrap();
    // We hold "first"; kazoo must hand out "second" and then find nothing.
    let mine = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(mine.payloads[0], b"first");
    let out = kazoo(&py, hosts, &path, "v = q.get(timeout=1)\nprint(v.decode())\nassert q.consume()\nprint(q.get(timeout=0.3))");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["second", "None"]);
    // Released (nack) items go back to kazoo consumers at their old place.
    q.release(&mine).await.unwrap();
    let out = kazoo(&py, hosts, &path, "print(q.get(timeout=2).decode())\nassert q.consume()");
    assert_eq!(out.trim(), "first");
    assert_eq!(q.counts().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn curator_envelopes_are_byte_exact() {
    let hosts = &Server::shared().hosts;
    let path = unique_path("cur");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::curator(&c, &path, None, true).await.unwrap();
    let name = q.put(b"hello", codec::DEFAULT_PRIORITY).await.unwrap();
    assert_eq!(name, "queue-0000000000");
    let (raw, _) = c.get_data(&format!("{path}/{name}")).await.unwrap();
    // ItemSerializer: int 0x00010001, 0x01, int length, bytes, 0x02.
    assert_eq!(raw, [0, 1, 0, 1, 1, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o', 2]);

    // What Curator's putMulti writes: one node, several items.
    let multi = [0, 1, 0, 1, 1, 0, 0, 0, 1, b'x', 1, 0, 0, 0, 0, 1, 0, 0, 0, 2, b'y', b'z', 2];
    c.create(&format!("{path}/queue-"), &multi, &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.unwrap();
    let d = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(d.payloads, [b"hello".to_vec()]);
    q.ack(&d).await.unwrap();
    let d = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(d.payloads, [b"x".to_vec(), Vec::new(), b"yz".to_vec()]);
    // Curator's REQUEUE: the item moves to the tail under a new sequence.
    q.release(&d).await.unwrap();
    let again = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    assert_eq!(again.name, "queue-0000000002");
    assert_eq!(again.payloads, d.payloads);
    q.ack(&again).await.unwrap();
    // The lock directory is a sibling (Curator treats every child of the
    // queue path as an item) and is empty again.
    assert!(c.list_children(&format!("{path}-locks")).await.unwrap().is_empty());
    assert!(c.list_children(&path).await.unwrap().is_empty());

    // A corrupt envelope is reported, not delivered, and its lock released.
    c.create(&format!("{path}/queue-"), b"junk", &CreateMode::PersistentSequential.with_acls(Acls::anyone_all())).await.unwrap();
    let err = q.take(Some(Duration::from_secs(5))).await.unwrap_err();
    assert!(err.to_string().contains("curator envelope"), "{err}");
    assert!(c.list_children(&format!("{path}-locks")).await.unwrap().is_empty());
}

/// kazoo and our consumers compete on one queue fed by both kinds of
/// producer: every message is consumed exactly once (no crashes here, so no
/// redelivery is allowed either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_kazoo_and_our_consumers_share_the_work() {
    let Some(py) = python_or_skip("mixed_kazoo_and_our_consumers_share_the_work") else { return };
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("kz-mixed");
    let c = connect(&hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, true).await.unwrap();
    let ours: Vec<Vec<u8>> = (0..100).map(|i| format!("rs-{i}").into_bytes()).collect();
    q.put_batch(&ours, 100).await.unwrap();
    kazoo(&py, &hosts, &path, "q.put_all([('py-%d' % i).encode() for i in range(100)])");
    // Two kazoo consumers (own sessions, threads) run while two of ours do.
    let script = r#"import threading
out = []
lock = threading.Lock()
def work():
    z = KazooClient(hosts=sys.argv[1]); z.start(timeout=15)
    qq = LockingQueue(z, sys.argv[2])
    while True:
        v = qq.get(timeout=2)
        if v is None: break
        assert qq.consume()
        with lock: out.append(v.decode())
    z.stop()
ts = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in ts]
[t.join() for t in ts]
print('\n'.join(out))"#;
    let py_task = {
        let (py, hosts, path) = (py.clone(), hosts.clone(), path.clone());
        tokio::task::spawn_blocking(move || kazoo(&py, &hosts, &path, script))
    };
    let mut ours_tasks = Vec::new();
    for _ in 0..2 {
        let (hosts, path) = (hosts.clone(), path.clone());
        ours_tasks.push(tokio::spawn(async move {
            let c = connect(&hosts, SESSION).await;
            let q = LockQueue::kazoo(&c, &path, false).await.unwrap();
            let mut got = Vec::new();
            while let Some(d) = q.take(Some(Duration::from_secs(2))).await.unwrap() {
                q.ack(&d).await.unwrap();
                got.push(String::from_utf8(d.payloads[0].clone()).unwrap());
            }
            got
        }));
    }
    let mut all: Vec<String> = py_task.await.unwrap().lines().map(str::to_string).collect();
    let py_count = all.len();
    let mut our_count = 0;
    for t in ours_tasks {
        let got = t.await.unwrap();
        our_count += got.len();
        all.extend(got);
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "a message was consumed twice");
    assert_eq!(total, 200, "kazoo consumed {py_count}, we consumed {our_count}");
    assert!(our_count > 0, "our consumers got nothing");
    assert_eq!(q.counts().await.unwrap(), (0, 0));
}

/// A kazoo consumer killed while holding an entry: its ephemeral lock goes
/// with its session and our waiting consumer gets the entry without any
/// further change to the queue.
#[tokio::test]
async fn killed_kazoo_consumer_releases_its_entry_to_us() {
    let Some(py) = python_or_skip("killed_kazoo_consumer_releases_its_entry_to_us") else { return };
    let hosts = Server::shared().hosts.clone();
    let path = unique_path("kz-kill");
    let c = connect(&hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, true).await.unwrap();
    q.put(b"job", 100).await.unwrap();
    let script = "import sys, os\nfrom kazoo.client import KazooClient\nfrom kazoo.recipe.queue import LockingQueue\n\
zk = KazooClient(hosts=sys.argv[1], timeout=2)\nzk.start(timeout=15)\nq = LockingQueue(zk, sys.argv[2])\n\
assert q.get(timeout=5) == b'job'\nprint('held', flush=True)\nsys.stdin.read()\n";
    let mut child = tokio::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(&hosts)
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line)).await.unwrap().unwrap();
    assert_eq!(line.trim(), "held");
    assert!(q.take(Some(Duration::from_millis(300))).await.unwrap().is_none(), "kazoo's lock must be respected");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let t0 = std::time::Instant::now();
    let d = q.take(Some(Duration::from_secs(20))).await.unwrap().expect("entry released by the session's end");
    assert_eq!(d.payloads[0], b"job");
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    q.ack(&d).await.unwrap();
}

// ---------------------------------------------------------------------------
// Queues created by the other libraries, and real Curator.
// ---------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// `n` distinct payloads covering what a text-only path would mangle: NUL,
/// newlines, high bytes, an empty one.
fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i == 4 {
                return Vec::new();
            }
            let mut p = format!("m{i:03}").into_bytes();
            p.extend_from_slice(&[0, b'\n', 0xff, i as u8, b'\r']);
            p
        })
        .collect()
}

/// Python list literal of `bytes.fromhex(...)` items.
fn py_items(items: &[Vec<u8>]) -> String {
    let parts: Vec<String> = items.iter().map(|p| format!("bytes.fromhex('{}')", hex(p))).collect();
    format!("[{}]", parts.join(", "))
}

fn cli(hosts: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_corral-queue")).arg("--hosts").arg(hosts).args(args).output().expect("run corral-queue")
}

async fn drain(q: &LockQueue) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(d) = q.take(Some(Duration::from_millis(500))).await.unwrap() {
        q.ack(&d).await.unwrap();
        got.extend(d.payloads);
    }
    got
}

#[tokio::test]
async fn kazoo_created_queue_producer_our_consumer() {
    let Some(py) = python_or_skip("kazoo_created_queue_producer_our_consumer") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("kzq1");
    let items = payloads(20);
    // kazoo's lock-less Queue makes the node and `entry-PPP-SEQ` children
    // itself: nothing of ours is there.
    kazoo_with(&py, hosts, &path, "Queue", &format!("q.put(b'cli-first', priority=5)\nfor v in {}:\n    q.put(v)", py_items(&items)));
    let out = cli(hosts, &["take", "--layout", "kazoo", "--timeout", "5s", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"cli-first\n");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, false).await.unwrap();
    assert_eq!(q.flavor(), corral_queue::interop::Flavor::KazooQueue);
    assert_eq!(drain(&q).await, items);
    // Nothing of ours was added: kazoo's Queue still works on the node.
    assert!(c.list_children(&path).await.unwrap().is_empty());
    assert_eq!(kazoo_with(&py, hosts, &path, "Queue", "q.put(b'x')\nprint(q.get().decode(), len(q))").trim(), "x 0");
}

#[tokio::test]
async fn our_producer_kazoo_queue_consumer() {
    let Some(py) = python_or_skip("our_producer_kazoo_queue_consumer") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("kzq2");
    // A kazoo consumer came first: its get() leaves an empty node, which
    // only an explicit layout can feed (it could be any library's).
    assert_eq!(kazoo_with(&py, hosts, &path, "Queue", "print(q.get())").trim(), "None");
    let err = corral_queue::Queue::open_existing(&connect(hosts, SESSION).await, &path).await.unwrap_err();
    assert!(err.to_string().contains("empty node"), "{err}");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::kazoo_queue(&c, &path, false).await.unwrap();
    let items = payloads(20);
    for p in &items[..10] {
        q.put(p, 100).await.unwrap();
    }
    q.put_batch(&items[10..], 100).await.unwrap();
    let out = kazoo_with(&py, hosts, &path, "Queue", "while True:\n    v = q.get()\n    if v is None: break\n    print(v.hex())");
    assert_eq!(out.lines().map(unhex).collect::<Vec<_>>(), items);
    // Once it has kazoo entries, `--layout kazoo` finds it too.
    kazoo_with(&py, hosts, &path, "Queue", "q.put(b'again')");
    let out = cli(hosts, &["take", "--layout", "kazoo", "--timeout", "5s", &path]);
    assert_eq!(out.stdout, b"again\n", "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn kazoo_locking_queue_created_by_kazoo_via_cli_and_binary() {
    let Some(py) = python_or_skip("kazoo_locking_queue_created_by_kazoo_via_cli_and_binary") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("kzl");
    let items = payloads(20);
    kazoo(&py, hosts, &path, &format!("q.put(b'cli-first', priority=5)\nq.put_all({})", py_items(&items)));
    let out = cli(hosts, &["take", "--layout", "kazoo", "--timeout", "5s", &path]);
    assert_eq!(out.stdout, b"cli-first\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(hosts, &["stats", &path]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("layout: kazoo\n"), "{}", String::from_utf8_lossy(&out.stdout));
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::kazoo(&c, &path, false).await.unwrap();
    assert_eq!(q.flavor(), corral_queue::interop::Flavor::Kazoo);
    assert_eq!(drain(&q).await, items);
    // And back: our binary items come out of kazoo's LockingQueue unchanged.
    q.put_batch(&items, 100).await.unwrap();
    let out = kazoo(&py, hosts, &path, "while True:\n    v = q.get(timeout=0.5)\n    if v is None: break\n    print(v.hex())\n    assert q.consume()");
    assert_eq!(out.lines().map(unhex).collect::<Vec<_>>(), items);
}

#[tokio::test]
async fn layouts_that_cannot_be_read_are_refused_clearly() {
    let hosts = &Server::shared().hosts;
    let c = connect(hosts, SESSION).await;
    let path = unique_path("refuse");
    let any = CreateMode::Persistent.with_acls(Acls::anyone_all());
    // A Curator DistributedIdQueue item: an id between prefix and sequence.
    c.mkdir(&format!("{path}/ids"), &any).await.unwrap();
    c.create(&format!("{path}/ids/queue-|job-7|0000000000"), b"", &any).await.unwrap();
    let err = LockQueue::curator(&c, &format!("{path}/ids"), None, false).await.unwrap_err();
    assert!(err.to_string().contains("Curator id queue"), "{err}");
    // Plain and priority items in one node: no Curator queue writes that.
    c.mkdir(&format!("{path}/mix"), &any).await.unwrap();
    c.create(&format!("{path}/mix/queue-0000000000"), b"", &any).await.unwrap();
    c.create(&format!("{path}/mix/queue-1000000050000000001"), b"", &any).await.unwrap();
    let err = LockQueue::curator(&c, &format!("{path}/mix"), None, false).await.unwrap_err();
    assert!(err.to_string().contains("both plain and priority"), "{err}");
    // Priorities on a plain (or empty) Curator queue stay unsupported.
    let q = LockQueue::curator(&c, &format!("{path}/ids2"), None, true).await.unwrap();
    assert!(q.put(b"x", 5).await.is_err());
    // A kazoo LockingQueue opened as kazoo's lock-less Queue.
    c.mkdir(&format!("{path}/lq/entries"), &any).await.unwrap();
    let err = LockQueue::kazoo_queue(&c, &format!("{path}/lq"), false).await.unwrap_err();
    assert!(err.to_string().contains("kazoo LockingQueue"), "{err}");
    // kazoo's LockingQueue ensures both directories; so do we.
    let q = LockQueue::kazoo(&c, &format!("{path}/lq"), false).await.unwrap();
    assert!(c.check_stat(&format!("{path}/lq/taken")).await.unwrap().is_some());
    assert_eq!(q.counts().await.unwrap(), (0, 0));
    // A node holding both kazoo shapes is ambiguous.
    c.create(&format!("{path}/lq/entry-100-0000000000"), b"", &any).await.unwrap();
    let err = LockQueue::kazoo(&c, &format!("{path}/lq"), false).await.unwrap_err();
    assert!(err.to_string().contains("both"), "{err}");
    // A missing node is still "not found", for every layout.
    for r in [
        LockQueue::kazoo(&c, &format!("{path}/none"), false).await,
        LockQueue::kazoo_queue(&c, &format!("{path}/none"), false).await,
        LockQueue::curator(&c, &format!("{path}/none"), None, false).await,
    ] {
        assert!(matches!(r, Err(corral_queue::QueueError::NotFound(_))), "{r:?}");
    }
}

/// The node as Curator 5.4 leaves it before any put: the client's address as
/// data, no children, no lock directory, possibly reaped later (it is a
/// container): take waits instead of failing and put brings it back.
#[tokio::test]
async fn curator_shaped_empty_and_reaped_queue() {
    let hosts = &Server::shared().hosts;
    let c = connect(hosts, SESSION).await;
    let path = unique_path("cur-empty");
    c.mkdir(&path, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await.unwrap();
    c.set_data(&path, b"127.0.0.1", None).await.unwrap();
    let q = LockQueue::curator(&c, &path, None, false).await.unwrap();
    assert!(q.take(Some(Duration::from_millis(200))).await.unwrap().is_none());
    c.delete(&path, None).await.unwrap();
    assert!(q.take(Some(Duration::from_millis(200))).await.unwrap().is_none());
    assert_eq!(q.counts().await.unwrap(), (0, 0));
    let waiter = {
        let (hosts, path) = (hosts.clone(), path.clone());
        tokio::spawn(async move {
            let c = connect(&hosts, SESSION).await;
            let q = LockQueue::curator(&c, &path, None, true).await.unwrap();
            c.delete(&path, None).await.unwrap(); // reaped while we wait
            let d = q.take(Some(Duration::from_secs(10))).await.unwrap().expect("item after re-creation");
            q.ack(&d).await.unwrap();
            d.payloads
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.put(b"back", codec::DEFAULT_PRIORITY).await.unwrap();
    assert_eq!(waiter.await.unwrap(), [b"back".to_vec()]);
}

/// javac + classpath for `tests/java/CuratorQueue.java`. Missing Java or
/// Curator jars fail the test (with how to install them) unless
/// `CORRAL_QUEUE_SKIP_CURATOR=1` asks for a skip: a skip must not pass
/// silently for a pass.
fn curator_or_skip(test: &str) -> Option<String> {
    static BUILT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let jars = ["curator-recipes", "curator-framework", "curator-client", "zookeeper", "zookeeper-jute", "guava", "slf4j-api", "slf4j-nop"];
        let mut cp = Vec::new();
        for j in jars {
            let p = std::path::Path::new("/usr/share/java").join(format!("{j}.jar"));
            if !p.exists() {
                return Err(format!("{} is missing", p.display()));
            }
            cp.push(p.display().to_string());
        }
        let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("curator-queue-driver");
        std::fs::create_dir_all(&out).unwrap();
        let src = common::workspace_root().join("queue/tests/java/CuratorQueue.java");
        let status = Command::new("javac").arg("-nowarn").arg("-d").arg(&out).arg("-cp").arg(cp.join(":")).arg(&src).status();
        match status {
            Ok(s) if s.success() => {},
            Ok(s) => return Err(format!("javac failed ({s})")),
            Err(e) => return Err(format!("no javac: {e}")),
        }
        cp.push(out.display().to_string());
        Ok(cp.join(":"))
    });
    match built {
        Ok(cp) => Some(cp.clone()),
        Err(why) if std::env::var_os("CORRAL_QUEUE_SKIP_CURATOR").is_some() => {
            eprintln!("SKIP {test}: {why} (CORRAL_QUEUE_SKIP_CURATOR is set)");
            None
        },
        Err(why) => panic!("{test} needs Java and Debian's Curator jars: {why}; run queue/tests/install-deps.sh, or set CORRAL_QUEUE_SKIP_CURATOR=1 to skip"),
    }
}

fn curator(cp: &str, args: &[&str]) -> String {
    let out = Command::new("java")
        .args(["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp, "CuratorQueue"])
        .args(args)
        .output()
        .expect("run java");
    assert!(out.status.success(), "Curator driver failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The reported bug: a Curator producer makes `/q` itself and puts 50
/// messages; `corral-queue take --layout curator` must read them.
#[tokio::test]
async fn curator_producer_our_consumer() {
    let Some(cp) = curator_or_skip("curator_producer_our_consumer") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("cur-in");
    let mut items = vec![b"cli-first".to_vec()];
    items.extend(payloads(49));
    let hexes: Vec<String> = items.iter().map(|p| hex(p)).collect();
    let mut args = vec!["put", hosts.as_str(), path.as_str()];
    args.extend(hexes.iter().map(String::as_str));
    curator(&cp, &args);
    let c = connect(hosts, SESSION).await;
    let (data, _) = c.get_data(&path).await.unwrap();
    assert!(!data.starts_with(b"corral"), "Curator made the node, not us: {:?}", String::from_utf8_lossy(&data));
    // What made the CLI refuse the queue before: no lock directory of ours.
    assert!(c.check_stat(&format!("{path}-locks")).await.unwrap().is_none());
    let out = cli(hosts, &["take", "--layout", "curator", "--timeout", "5s", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"cli-first\n");
    let q = LockQueue::curator(&c, &path, None, false).await.unwrap();
    assert_eq!(drain(&q).await, items[1..]);
}

#[tokio::test]
async fn our_producer_curator_consumer() {
    let Some(cp) = curator_or_skip("our_producer_curator_consumer") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("cur-out");
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::curator(&c, &path, None, true).await.unwrap();
    let items = payloads(30);
    for p in &items[..15] {
        q.put(p, codec::DEFAULT_PRIORITY).await.unwrap();
    }
    q.put_batch(&items[15..], codec::DEFAULT_PRIORITY).await.unwrap();
    let out = curator(&cp, &["take", hosts, &path, &items.len().to_string(), "20"]);
    assert_eq!(out.lines().map(unhex).collect::<Vec<_>>(), items);
    assert_eq!(q.counts().await.unwrap(), (0, 0));
}

/// Curator with a lock path of its own choosing (`.lockPath(L)`): our CLI
/// shares it with `--lock-path`, and Curator's lock-based consumer takes our
/// items through the same directory, leaving no lock behind.
#[tokio::test]
async fn curator_custom_lock_path_both_ways() {
    let Some(cp) = curator_or_skip("curator_custom_lock_path_both_ways") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("cur-lp");
    let locks = format!("{path}-custom-locks");
    curator(&cp, &["put", hosts, &path, &hex(b"from-curator")]);
    let out = cli(hosts, &["take", "--layout", "curator", "--lock-path", &locks, "--timeout", "5s", &path]);
    assert_eq!(out.stdout, b"from-curator\n", "{}", String::from_utf8_lossy(&out.stderr));
    let c = connect(hosts, SESSION).await;
    assert!(c.check_stat(&locks).await.unwrap().is_some(), "our locks went to Curator's lock path");
    assert!(c.check_stat(&format!("{path}-locks")).await.unwrap().is_none());
    let items = payloads(10);
    let q = LockQueue::curator(&c, &path, Some(&locks), false).await.unwrap();
    q.put_batch(&items, codec::DEFAULT_PRIORITY).await.unwrap();
    let out = curator(&cp, &["take", hosts, &path, &items.len().to_string(), "20", &locks]);
    assert_eq!(out.lines().map(unhex).collect::<Vec<_>>(), items);
    assert_eq!(q.counts().await.unwrap(), (0, 0));
    let err = cli(hosts, &["take", "--layout", "kazoo", "--lock-path", &locks, &path]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("--lock-path applies to --layout curator only"));
}

/// Curator `DistributedPriorityQueue`: its items carry the priority in the
/// name (`queue-` + `1`/`0` + 8 hex digits + sequence). We take them in
/// Curator's order (priority, then FIFO) and, on such a queue, put with a
/// priority Curator's priority consumer honours.
#[tokio::test]
async fn curator_priority_queue_both_ways() {
    let Some(cp) = curator_or_skip("curator_priority_queue_both_ways") else { return };
    let hosts = &Server::shared().hosts;
    let path = unique_path("cur-prio");
    let items = payloads(12);
    let prio = |i: usize| [7, -3, 0, 7, 200][i % 5];
    let args: Vec<String> = items.iter().enumerate().map(|(i, p)| format!("{}:{}", prio(i), hex(p))).collect();
    let mut argv = vec!["putprio", hosts.as_str(), path.as_str()];
    argv.extend(args.iter().map(String::as_str));
    curator(&cp, &argv);
    let mut expect: Vec<(i32, usize)> = (0..items.len()).map(|i| (prio(i), i)).collect();
    expect.sort();
    let expect: Vec<Vec<u8>> = expect.into_iter().map(|(_, i)| items[i].clone()).collect();
    let c = connect(hosts, SESSION).await;
    let q = LockQueue::curator(&c, &path, None, false).await.unwrap();
    // Released items keep their priority (and go behind their equals).
    let first = q.take(Some(Duration::from_secs(5))).await.unwrap().unwrap();
    q.release(&first).await.unwrap();
    let mut got = drain(&q).await;
    let back = got.iter().position(|p| *p == first.payloads[0]).unwrap();
    assert_eq!(back, 2, "a released item goes behind the two of equal priority");
    assert_eq!(got.remove(back), expect[0]);
    got.insert(0, expect[0].clone());
    assert_eq!(got, expect);
    // Back the other way: the node is still there (or reaped; put re-creates
    // it), and still a priority queue only if it holds priority items, so
    // leave one of Curator's in it.
    curator(&cp, &["putprio", hosts, &path, &format!("500:{}", hex(b"last"))]);
    let q = LockQueue::curator(&c, &path, None, false).await.unwrap();
    q.put(b"p9", 9).await.unwrap();
    q.put(b"p1", 1).await.unwrap();
    q.put_batch(&[b"p5a".to_vec(), b"p5b".to_vec()], 5).await.unwrap();
    let out = curator(&cp, &["takeprio", hosts, &path, "5", "5"]);
    assert_eq!(out.lines().map(unhex).collect::<Vec<_>>(), [&b"p1"[..], b"p5a", b"p5b", b"p9", b"last"]);
}
