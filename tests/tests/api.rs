//! The client API end to end: a real corral server (embedded in the test
//! process: nothing here needs a separate one) and the stock Rust
//! `zookeeper-client` crate. Each test starts its own server.

use std::time::Duration;

use corral_tests::{connect, embedded, ephemeral, persistent};
use zookeeper_client::{Acls, AddWatchMode, CreateMode, Error, EventType, MultiWriteResult};

const T: Duration = Duration::from_secs(10);
/// Bound on waiting for any single event; never a synchronisation sleep.
const EVENT_WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn create_read_update_delete_with_zookeeper_stats() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;

    let (stat, _) = zk.create("/a", b"one", &persistent()).await.unwrap();
    assert_eq!((stat.version, stat.cversion, stat.num_children, stat.data_length), (0, 0, 0, 3));
    assert_eq!(stat.czxid, stat.mzxid);
    assert_eq!(stat.czxid, stat.pzxid);
    assert!(stat.ctime > 1_600_000_000_000, "ctime is wall-clock ms: {}", stat.ctime);

    let (data, got) = zk.get_data("/a").await.unwrap();
    assert_eq!(data, b"one");
    assert_eq!(got, stat);

    assert_eq!(zk.create("/a", b"", &persistent()).await.unwrap_err(), Error::NodeExists);
    assert_eq!(zk.create("/missing/child", b"", &persistent()).await.unwrap_err(), Error::NoNode);
    assert_eq!(zk.set_data("/a", b"x", Some(5)).await.unwrap_err(), Error::BadVersion);

    let s2 = zk.set_data("/a", b"two", Some(0)).await.unwrap();
    assert_eq!(s2.version, 1);
    assert!(s2.mzxid > stat.mzxid);
    assert_eq!(s2.czxid, stat.czxid);

    zk.create("/a/c1", b"", &persistent()).await.unwrap();
    zk.create("/a/c2", b"", &persistent()).await.unwrap();
    assert_eq!(zk.delete("/a", None).await.unwrap_err(), Error::NotEmpty);
    let (mut children, parent) = zk.get_children("/a").await.unwrap();
    children.sort();
    assert_eq!(children, vec!["c1", "c2"]);
    assert_eq!((parent.num_children, parent.cversion), (2, 2));

    zk.delete("/a/c1", None).await.unwrap();
    let parent = zk.check_stat("/a").await.unwrap().unwrap();
    // cversion counts child creates and deletes; pzxid moves with both.
    assert_eq!((parent.num_children, parent.cversion), (1, 3));
    assert_eq!(zk.delete("/a/c2", Some(3)).await.unwrap_err(), Error::BadVersion);
    zk.delete("/a/c2", Some(0)).await.unwrap();
    zk.delete("/a", None).await.unwrap();
    assert_eq!(zk.check_stat("/a").await.unwrap(), None);
    assert_eq!(zk.get_data("/a").await.unwrap_err(), Error::NoNode);
}

#[tokio::test]
async fn sequential_suffix_counts_creates_only() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    zk.create("/q", b"", &persistent()).await.unwrap();
    let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
    let (_, s0) = zk.create("/q/n-", b"", &seq).await.unwrap();
    assert_eq!(s0.into_i64(), 0);
    zk.delete("/q/n-0000000000", None).await.unwrap();
    let (_, s1) = zk.create("/q/n-", b"", &seq).await.unwrap();
    assert_eq!(s1.into_i64(), 1, "a delete does not advance the suffix");
    let parent = zk.check_stat("/q").await.unwrap().unwrap();
    assert_eq!(parent.cversion, 3);
    assert!(zk.check_stat("/q/n-0000000001").await.unwrap().is_some());
}

#[tokio::test]
async fn ephemerals_belong_to_their_session() {
    let server = embedded("").await;
    let owner = connect(&server.connect_string(), T).await;
    let other = connect(&server.connect_string(), T).await;
    let (stat, _) = owner.create("/e", b"", &ephemeral()).await.unwrap();
    assert_eq!(stat.ephemeral_owner, owner.session_id().0);
    assert_eq!(owner.create("/e/child", b"", &persistent()).await.unwrap_err(), Error::NoChildrenForEphemerals);
    assert_eq!(owner.list_ephemerals("/").await.unwrap(), vec!["/e"]);
    assert!(other.list_ephemerals("/").await.unwrap().is_empty());

    let deleted = other.check_and_watch_stat("/e").await.unwrap().1;
    drop(owner); // closes the session
    let ev = tokio::time::timeout(EVENT_WAIT, deleted.changed()).await.expect("NodeDeleted event");
    assert_eq!(ev.event_type, EventType::NodeDeleted);
    assert_eq!(other.check_stat("/e").await.unwrap(), None);
}

#[tokio::test]
async fn watches_fire_once_with_the_right_type() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    let writer = connect(&server.connect_string(), T).await;

    let (_, exists) = zk.check_and_watch_stat("/w").await.unwrap();
    writer.create("/w", b"", &persistent()).await.unwrap();
    assert_eq!(tokio::time::timeout(EVENT_WAIT, exists.changed()).await.unwrap().event_type, EventType::NodeCreated);

    let (_, _, data) = zk.get_and_watch_data("/w").await.unwrap();
    let (_, _, children) = zk.get_and_watch_children("/w").await.unwrap();
    writer.set_data("/w", b"1", None).await.unwrap();
    let ev = tokio::time::timeout(EVENT_WAIT, data.changed()).await.unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeDataChanged, "/w"));
    writer.create("/w/c", b"", &persistent()).await.unwrap();
    let ev = tokio::time::timeout(EVENT_WAIT, children.changed()).await.unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeChildrenChanged, "/w"));

    // The watch was one-shot: a second change is not delivered; a new watch
    // registered after it sees only later changes.
    writer.set_data("/w", b"2", None).await.unwrap();
    let (_, _, data) = zk.get_and_watch_data("/w").await.unwrap();
    writer.delete("/w/c", None).await.unwrap();
    writer.delete("/w", None).await.unwrap();
    assert_eq!(tokio::time::timeout(EVENT_WAIT, data.changed()).await.unwrap().event_type, EventType::NodeDeleted);
}

#[tokio::test]
async fn event_arrives_before_the_reply_that_observes_the_change() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    let writer = connect(&server.connect_string(), T).await;
    zk.create("/o", b"0", &persistent()).await.unwrap();
    for i in 1..20u32 {
        let (_, _, watch) = zk.get_and_watch_data("/o").await.unwrap();
        writer.set_data("/o", i.to_string().as_bytes(), None).await.unwrap();
        // Ask on the watching session; the event must already have been delivered.
        let (data, _) = zk.get_data("/o").await.unwrap();
        assert_eq!(data, i.to_string().as_bytes());
        let ev = tokio::time::timeout(Duration::from_millis(0), watch.changed()).await;
        assert!(ev.is_ok(), "round {i}: reply observing the change came before its event");
    }
}

#[tokio::test]
async fn persistent_and_recursive_watches() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    let writer = connect(&server.connect_string(), T).await;
    writer.create("/p", b"", &persistent()).await.unwrap();
    let mut recursive = zk.watch("/p", AddWatchMode::PersistentRecursive).await.unwrap();
    let mut persistent_w = zk.watch("/p", AddWatchMode::Persistent).await.unwrap();
    writer.create("/p/a", b"", &persistent()).await.unwrap();
    writer.create("/p/a/b", b"", &persistent()).await.unwrap();
    writer.set_data("/p/a/b", b"x", None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(EVENT_WAIT, recursive.changed()).await.unwrap();
        seen.push((ev.event_type, ev.path));
    }
    assert_eq!(
        seen,
        vec![
            (EventType::NodeCreated, "/p/a".to_string()),
            (EventType::NodeCreated, "/p/a/b".to_string()),
            (EventType::NodeDataChanged, "/p/a/b".to_string()),
        ]
    );
    let ev = tokio::time::timeout(EVENT_WAIT, persistent_w.changed()).await.unwrap();
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeChildrenChanged, "/p"));
}

#[tokio::test]
async fn multi_is_all_or_nothing() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    zk.create("/m", b"", &persistent()).await.unwrap();

    let mut w = zk.new_multi_writer();
    w.add_create("/m/a", b"1", &persistent()).unwrap();
    w.add_set_data("/m", b"x", Some(0)).unwrap();
    w.add_check_version("/m", 1).unwrap();
    w.add_delete("/m/a", None).unwrap();
    let results = w.commit().await.unwrap();
    assert!(matches!(&results[0], MultiWriteResult::Create { path, .. } if path == "/m/a"));
    assert!(matches!(results[1], MultiWriteResult::SetData { .. }));
    assert!(matches!(results[2], MultiWriteResult::Check));
    assert!(matches!(results[3], MultiWriteResult::Delete));

    let mut w = zk.new_multi_writer();
    w.add_create("/m/b", b"", &persistent()).unwrap();
    w.add_delete("/m/nope", None).unwrap();
    w.add_create("/m/c", b"", &persistent()).unwrap();
    let err = w.commit().await.unwrap_err();
    assert!(
        matches!(err, zookeeper_client::MultiWriteError::OperationFailed { index: 1, source: Error::NoNode }),
        "{err:?}"
    );
    assert_eq!(zk.check_stat("/m/b").await.unwrap(), None, "nothing of a failed multi is applied");
    let (data, stat) = zk.get_data("/m").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (b"x".as_slice(), 1));
}

#[tokio::test]
async fn acls_digest_and_super() {
    let digest = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="; // super:test
    let server = embedded(&format!("zookeeper.DigestAuthenticationProvider.superDigest={digest}")).await;
    let alice = zookeeper_client::Client::connector()
        .with_session_timeout(T)
        .with_auth("digest", b"alice:secret")
        .connect(&server.connect_string())
        .await
        .unwrap();
    let anon = connect(&server.connect_string(), T).await;
    let creator = CreateMode::Persistent.with_acls(Acls::creator_all());
    alice.create("/private", b"s", &creator).await.unwrap();
    assert_eq!(anon.get_data("/private").await.unwrap_err(), Error::NoAuth);
    assert_eq!(anon.set_data("/private", b"x", None).await.unwrap_err(), Error::NoAuth);
    assert_eq!(alice.get_data("/private").await.unwrap().0, b"s");
    let (acl, _) = alice.get_acl("/private").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].scheme(), "digest");
    assert!(acl[0].id().starts_with("alice:"));
    assert_eq!(anon.create("/noacl", b"", &CreateMode::Persistent.with_acls(Acls::creator_all())).await.unwrap_err(), Error::InvalidAcl);

    let root = connect(&server.connect_string(), T).await;
    root.auth("digest", b"super:test").await.unwrap();
    assert_eq!(root.get_data("/private").await.unwrap().0, b"s");
    let users = root.list_auth_users().await.unwrap();
    assert!(users.iter().any(|u| u.scheme() == "super"), "{users:?}");
}

#[tokio::test]
async fn chroot_is_applied_by_the_client() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    zk.create("/app", b"", &persistent()).await.unwrap();
    let rooted = connect(&format!("{}/app", server.connect_string()), T).await;
    rooted.create("/x", b"in app", &persistent()).await.unwrap();
    assert_eq!(zk.get_data("/app/x").await.unwrap().0, b"in app");
    assert_eq!(rooted.list_children("/").await.unwrap(), vec!["x"]);
}

#[tokio::test]
async fn counts_sync_and_containers() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    zk.create("/c", b"", &persistent()).await.unwrap();
    zk.create("/c/1", b"", &persistent()).await.unwrap();
    zk.create("/c/1/2", b"", &persistent()).await.unwrap();
    assert_eq!(zk.count_descendants_number("/c").await.unwrap(), 2);
    zk.sync("/c").await.unwrap();

    let container = CreateMode::Container.with_acls(Acls::anyone_all());
    zk.create("/box", b"", &container).await.unwrap();
    zk.create("/box/item", b"", &persistent()).await.unwrap();
    let (_, gone) = zk.check_and_watch_stat("/box").await.unwrap();
    zk.delete("/box/item", None).await.unwrap();
    // The server removes the emptied container on its own (check interval 100 ms).
    let ev = tokio::time::timeout(EVENT_WAIT, gone.changed()).await.expect("container deleted");
    assert_eq!(ev.event_type, EventType::NodeDeleted);
}

#[tokio::test]
async fn ttl_nodes_expire_when_unmodified() {
    let server = embedded("").await;
    let zk = connect(&server.connect_string(), T).await;
    let ttl = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(300));
    let (stat, _) = zk.create("/ttl", b"", &ttl).await.unwrap();
    assert_eq!(stat.ephemeral_owner, 0, "TTL nodes show no owner, as in ZooKeeper");
    let (_, gone) = zk.check_and_watch_stat("/ttl").await.unwrap();
    let ev = tokio::time::timeout(EVENT_WAIT, gone.changed()).await.expect("TTL node deleted");
    assert_eq!(ev.event_type, EventType::NodeDeleted);
}
