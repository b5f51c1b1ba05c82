//! Sessions across connections, expiry and server restarts, with the stock
//! Rust client and, where it would hide the behaviour, the raw protocol.

use std::time::Duration;

use corral_tests::{connect, ephemeral, persistent, Corral, Raw};
use protocol::{ConnectRequest, ConnectResponse, Jute};
use zookeeper_client::{EventType, SessionState};

const T: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(20);

fn reconnect_raw(server: &Corral, session_id: i64, passwd: Vec<u8>) -> ConnectResponse {
    let mut raw = Raw::connect(server.addr);
    let req = ConnectRequest { time_out: 4000, session_id, passwd, read_only: Some(false), ..Default::default() };
    raw.send_frame(&req.to_bytes()).unwrap();
    ConnectResponse::from_bytes(&raw.read_frame().expect("connect response")).unwrap()
}

#[tokio::test]
async fn timeouts_are_negotiated_within_min_and_max() {
    // tickTime=200: min 400 ms, max 4000 ms.
    let server = Corral::start();
    let short = connect(&server.hosts(), Duration::from_millis(100)).await;
    assert_eq!(short.session_timeout(), Duration::from_millis(400));
    let long = connect(&server.hosts(), Duration::from_secs(60)).await;
    assert_eq!(long.session_timeout(), Duration::from_millis(4000));
    let mid = connect(&server.hosts(), Duration::from_millis(1234)).await;
    assert_eq!(mid.session_timeout(), Duration::from_millis(1234));
}

#[tokio::test]
async fn reconnect_needs_the_session_password() {
    let server = Corral::start();
    let mut raw = Raw::connect(server.addr);
    let first = raw.handshake();
    assert_ne!(first.session_id, 0);
    assert_eq!(first.passwd.len(), 16);

    let resumed = reconnect_raw(&server, first.session_id, first.passwd.clone());
    assert_eq!(resumed.session_id, first.session_id);
    assert!(resumed.time_out > 0);

    let mut wrong = first.passwd.clone();
    wrong[0] ^= 1;
    let refused = reconnect_raw(&server, first.session_id, wrong);
    assert_eq!((refused.time_out, refused.session_id), (0, 0), "a wrong password is answered as expired");
    let unknown = reconnect_raw(&server, 0x7777, first.passwd);
    assert_eq!(unknown.time_out, 0);
}

#[tokio::test]
async fn expiry_deletes_ephemerals_and_fires_watches() {
    let server = Corral::start();
    let watcher = connect(&server.hosts(), T).await;
    // A session that stops talking: raw, so no client pings keep it alive.
    let mut raw = Raw::connect(server.addr);
    let hs = {
        use protocol::{ConnectRequest, Jute};
        let req = ConnectRequest { time_out: 500, passwd: vec![0; 16], read_only: Some(false), ..Default::default() };
        raw.send_frame(&req.to_bytes()).unwrap();
        protocol::ConnectResponse::from_bytes(&raw.read_frame().unwrap()).unwrap()
    };
    assert_eq!(hs.time_out, 500);
    let create = protocol::Request::Create(protocol::CreateRequest {
        path: "/lease".into(),
        data: Some(vec![]),
        acl: vec![protocol::Acl { perms: 31, id: protocol::Id { scheme: "world".into(), id: "anyone".into() } }],
        flags: 1,
    });
    let (h, _) = raw.call(1, &create);
    assert_eq!(h.err, 0);
    let (stat, deleted) = watcher.check_and_watch_stat("/lease").await.unwrap();
    assert_eq!(stat.unwrap().ephemeral_owner, hs.session_id);
    let ev = tokio::time::timeout(WAIT, deleted.changed()).await.expect("expiry deletes the ephemeral");
    assert_eq!(ev.event_type, EventType::NodeDeleted);
    // The server closes the expired session's connection.
    assert!(raw.read_frame().is_none());
    let resumed = reconnect_raw(&server, hs.session_id, hs.passwd);
    assert_eq!(resumed.time_out, 0, "an expired session cannot be resumed");
}

#[tokio::test]
async fn a_live_session_is_not_expired() {
    let server = Corral::start();
    let zk = connect(&server.hosts(), Duration::from_millis(1000)).await;
    zk.create("/alive", b"", &ephemeral()).await.unwrap();
    let mut state = zk.state_watcher();
    // Six timeouts of client pings; the session must stay connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        if let Ok(s) = tokio::time::timeout(Duration::from_millis(500), state.changed()).await {
            panic!("session changed state to {s:?}");
        }
        assert!(zk.check_stat("/alive").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn sessions_and_ephemerals_survive_a_restart() {
    let mut server = Corral::start();
    let zk = connect(&server.hosts(), Duration::from_secs(4)).await;
    zk.create("/keep", b"v", &persistent()).await.unwrap();
    zk.create("/mine", b"", &ephemeral()).await.unwrap();
    let session = zk.session_id();
    let mut state = zk.state_watcher();
    server.kill();
    server.restart();
    // The client reconnects by itself within its timeout and keeps its session.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match zk.check_stat("/mine").await {
            Ok(Some(stat)) => {
                assert_eq!(stat.ephemeral_owner, session.0);
                break;
            }
            Ok(None) => panic!("ephemeral lost across restart"),
            Err(e) if tokio::time::Instant::now() < deadline => {
                // Connection loss while reconnecting: wait for the next state change.
                let _ = e;
                let _ = tokio::time::timeout(Duration::from_secs(2), state.changed()).await;
            }
            Err(e) => panic!("did not reconnect: {e}"),
        }
    }
    assert_eq!(zk.session_id(), session);
    assert_ne!(zk.state(), SessionState::Expired);
    assert_eq!(zk.get_data("/keep").await.unwrap().0, b"v");
}

#[tokio::test]
async fn close_session_deletes_ephemerals_at_once() {
    let server = Corral::start();
    let a = connect(&server.hosts(), T).await;
    let b = connect(&server.hosts(), T).await;
    a.create("/bye", b"", &ephemeral()).await.unwrap();
    let (_, w) = b.check_and_watch_stat("/bye").await.unwrap();
    drop(a);
    let ev = tokio::time::timeout(Duration::from_secs(2), w.changed()).await.expect("deleted on close, not on timeout");
    assert_eq!(ev.event_type, EventType::NodeDeleted);
    let dump = server.four_letter("dump");
    assert!(dump.contains("Sessions with Ephemerals (0)"), "{dump}");
}
