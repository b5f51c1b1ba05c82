//! Claim-check for large payloads: payloads above a threshold go to a blob
//! store (here a local directory), the item holds a reference. Runs against
//! the shared server like tests/native.rs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{connect, unique_path, Server};
use corral_queue::object_store::local::LocalFileSystem;
use corral_queue::object_store::{self, ObjectStore, ObjectStoreExt};
use corral_queue::{BlobFault, Message, Meta, NackOutcome, NativeQueue, PutOutcome, QueueError};

const SESSION: Duration = Duration::from_secs(10);
const THRESHOLD: usize = 64 * 1024;
const PREFIX: &str = "blobs";

/// A queue whose handle keeps payloads above 64 KiB in `dir`.
async fn queue(meta: Meta, dir: &Path) -> NativeQueue {
    let c = connect(&Server::shared().hosts, SESSION).await;
    let q = NativeQueue::create(&c, &unique_path("q"), meta).await.unwrap();
    q.with_blob_store(local(dir), PREFIX, THRESHOLD)
}

fn local(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

/// 2 MiB, over ZooKeeper's 1 MiB jute.maxbuffer, every byte value present.
fn big_payload(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..2 << 20).map(|_| rng.u8(..)).collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

async fn refs(q: &NativeQueue) -> Vec<String> {
    q.client().list_children(&format!("{}/blobs", q.path())).await.unwrap()
}

#[tokio::test]
async fn payload_over_jute_maxbuffer_round_trips_through_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(Meta::default(), dir.path()).await;
    let big = big_payload(1);
    // Without a blob store the same payload is refused before anything is sent.
    let plain = NativeQueue::open(q.client(), q.path()).await.unwrap();
    assert!(matches!(plain.put(Message::new(big.clone())).await, Err(QueueError::TooLarge { .. })));

    assert!(matches!(q.put(Message::new(big.clone())).await.unwrap(), PutOutcome::Enqueued(_)));
    q.put(Message::new("small stays inline")).await.unwrap();
    let stored = files(dir.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::metadata(&stored[0]).unwrap().len(), big.len() as u64);
    assert_eq!(refs(&q).await.len(), 1);
    // Byte counters count the payload wherever it lives.
    assert_eq!(q.stats().await.unwrap().bytes, big.len() as u64 + 18);

    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert!(d.payload == big, "payload differs after the round trip");
    let r = d.blob().expect("a blob reference").clone();
    assert_eq!(r.size, big.len() as u64);
    assert!(r.key.starts_with(&format!("{PREFIX}{}/", q.path())), "{}", r.key);
    q.ack(&d).await.unwrap();
    assert!(files(dir.path()).is_empty(), "blob left after ack");
    assert!(refs(&q).await.is_empty());

    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert_eq!((d.payload.as_slice(), d.blob().is_none()), (&b"small stays inline"[..], true));
    q.ack(&d).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.bytes), (0, 0));
}

#[tokio::test]
async fn nack_and_dead_letter_keep_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(Meta { max_attempts: 2, ..Meta::default() }, dir.path()).await;
    let big = big_payload(2);
    q.put(Message::new(big.clone())).await.unwrap();

    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert_eq!(q.nack(&d, Duration::ZERO).await.unwrap(), NackOutcome::Requeued);
    assert_eq!(files(dir.path()).len(), 1, "nack must keep the blob");
    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert!(d.payload == big && d.attempt == 2);
    assert_eq!(q.nack(&d, Duration::ZERO).await.unwrap(), NackOutcome::DeadLettered);
    assert_eq!(files(dir.path()).len(), 1, "the dead letter must keep the blob");
    assert_eq!(refs(&q).await.len(), 1);

    let dl = q.dlq(10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert!(dl[0].payload == big && dl[0].blob.is_some() && dl[0].blob_error.is_none());
    // The sweeper never takes a dead letter's blob, however old.
    let swept = q.sweep_blobs(Duration::ZERO).await.unwrap();
    assert_eq!((swept.deleted, swept.referenced), (0, 1));

    assert_eq!(q.requeue_dead_letters(10).await.unwrap(), 1);
    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert!(d.payload == big);
    q.ack(&d).await.unwrap();
    assert!(files(dir.path()).is_empty());
    assert_eq!(q.stats().await.unwrap().bytes, 0);
}

#[tokio::test]
async fn corrupt_or_missing_blob_gives_a_clear_error_then_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(Meta { max_attempts: 2, ..Meta::default() }, dir.path()).await;
    q.put(Message::new(big_payload(3))).await.unwrap();
    let file = files(dir.path()).remove(0);

    // Same length, one byte flipped: only the checksum can tell.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[12345] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    match q.take(Some(Duration::from_secs(10))).await {
        Err(QueueError::Blob { fault: BlobFault::Corrupt, reason, .. }) => assert!(reason.contains("SHA-256"), "{reason}"),
        other => panic!("expected a corrupt-blob error, got {other:?}"),
    }
    // A handle without the store says so instead of delivering a reference.
    let plain = NativeQueue::open(q.client(), q.path()).await.unwrap();
    match plain.take(Some(Duration::from_secs(10))).await {
        Err(QueueError::Blob { fault: BlobFault::NotConfigured, .. }) => {},
        other => panic!("expected NotConfigured, got {other:?}"),
    }
    // That was the second failed delivery: the message is now a dead letter
    // and still references its blob; a missing blob is reported as such.
    std::fs::remove_file(&file).unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.depth, s.dlq), (0, 1));
    let dl = q.dlq(10).await.unwrap();
    assert!(dl[0].payload.is_empty() && dl[0].blob_error.as_deref().is_some_and(|e| e.contains("missing")), "{dl:?}");
    assert_eq!(q.requeue_dead_letters(10).await.unwrap(), 1);
    match q.take(Some(Duration::from_secs(10))).await {
        Err(e @ QueueError::Blob { fault: BlobFault::Missing, .. }) => assert!(e.to_string().contains("missing from the blob store"), "{e}"),
        other => panic!("expected a missing-blob error, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicate_keyed_put_leaves_no_second_blob() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(Meta::default(), dir.path()).await;
    let first = q.put(Message::new(big_payload(4)).key("img-1")).await.unwrap();
    let PutOutcome::Enqueued(id) = first else { panic!("{first:?}") };
    match q.put(Message::new(big_payload(5)).key("img-1")).await.unwrap() {
        PutOutcome::Duplicate { original, .. } => assert_eq!(original, Some(id)),
        other => panic!("{other:?}"),
    }
    assert_eq!(files(dir.path()).len(), 1, "the duplicate's blob must be deleted");
    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert!(d.payload == big_payload(4));
    q.ack(&d).await.unwrap();
}

#[tokio::test]
async fn sweeper_deletes_old_orphans_and_keeps_referenced_and_young_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path());
    let q = queue(Meta::default(), dir.path()).await;
    let big = big_payload(6);
    q.put(Message::new(big.clone())).await.unwrap();
    let referenced = files(dir.path()).remove(0);
    // Orphans as a crash between blob write and item commit (or between an
    // ack and its blob delete) leaves them, plus an object that is not ours.
    let base = format!("{PREFIX}{}", q.path());
    let put = |name: String| {
        let store = store.clone();
        async move { store.put(&object_store::path::Path::parse(&name).unwrap(), vec![7u8; 100].into()).await.unwrap() }
    };
    let (old_id, young_id) = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210");
    put(format!("{base}/01/{old_id}")).await;
    put(format!("{base}/fe/{young_id}")).await;
    put(format!("{base}/notes.txt")).await;
    let on_disk = |rel: String| dir.path().join(rel);
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for f in [on_disk(format!("{base}/01/{old_id}")), on_disk(format!("{base}/notes.txt")), referenced.clone()] {
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(two_hours_ago).unwrap();
    }

    let r = q.sweep_blobs(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((r.listed, r.deleted, r.referenced, r.young, r.foreign), (4, 1, 1, 1, 1), "{r:?}");
    assert!(!on_disk(format!("{base}/01/{old_id}")).exists());
    assert!(on_disk(format!("{base}/fe/{young_id}")).exists() && on_disk(format!("{base}/notes.txt")).exists() && referenced.exists());

    // The referenced blob is still intact and delivered.
    let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
    assert!(d.payload == big);
    q.ack(&d).await.unwrap();
    // With no grace every orphan goes; foreign objects never do.
    let r = q.sweep_blobs(Duration::ZERO).await.unwrap();
    assert_eq!((r.deleted, r.foreign), (1, 1), "{r:?}");
    assert_eq!(files(dir.path()), vec![on_disk(format!("{base}/notes.txt"))]);
}

#[tokio::test]
async fn batches_mix_inline_and_blob_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(Meta::default(), dir.path()).await;
    let msgs: Vec<Vec<u8>> = (0..12).map(|i| if i % 3 == 0 { vec![i as u8; 300 * 1024] } else { format!("m{i}").into_bytes() }).collect();
    let out = q.put_batch(msgs.iter().cloned().map(Message::new).collect()).await.unwrap();
    assert_eq!(out.len(), 12);
    assert_eq!(files(dir.path()).len(), 4);
    let mut ds = Vec::new();
    for m in &msgs {
        let d = q.take(Some(Duration::from_secs(10))).await.unwrap().unwrap();
        assert!(&d.payload == m);
        ds.push(d);
    }
    assert!(q.ack_batch(&ds).await.unwrap().iter().all(Result::is_ok));
    assert!(files(dir.path()).is_empty());
    assert!(refs(&q).await.is_empty());
    assert_eq!(q.stats().await.unwrap().bytes, 0);
}
