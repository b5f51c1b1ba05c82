//! Interop: real kazoo LockingQueue (Python) against our kazoo layout, and
//! Curator's documented DistributedQueue format against our curator layout.

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
    let script = format!(
        "import sys\nfrom kazoo.client import KazooClient\nzk = KazooClient(hosts=sys.argv[1])\nzk.start(timeout=15)\n\
         from kazoo.recipe.queue import LockingQueue\nq = LockingQueue(zk, sys.argv[2])\n{body}\nzk.stop()\n"
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
