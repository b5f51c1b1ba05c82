//! The limits on what one client can make the server hold: each is named in
//! zoo.cfg, refused with a closed connection and a log line naming it, and
//! reported by mntr beside its current use.

use std::io::Write;
use std::time::{Duration, Instant};

use corral_tests::{Corral, Raw};
use protocol::{Acl, CreateRequest, ExistsRequest, GetDataRequest, Id, Jute, Request, RequestHeader, SetWatches};

/// The value of one mntr key.
fn mntr(server: &Corral, key: &str) -> u64 {
    let out = server.four_letter("mntr");
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t')))
        .unwrap_or_else(|| panic!("no {key} in mntr:\n{out}"))
        .parse()
        .unwrap()
}

/// Polls mntr until `key` reads `want` (the server notices closes
/// asynchronously; there is nothing else to wait on from outside).
fn wait_mntr(server: &Corral, key: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = mntr(server, key);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{key} stayed {v}, expected {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exists_watch(path: &str) -> Request {
    Request::Exists(ExistsRequest { path: path.into(), watch: true })
}

fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

#[test]
fn max_watches_per_session_closes_the_connection_that_goes_over() {
    let server = Corral::start_with("maxWatchesPerSession=3");
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    // exists on a missing node registers a watch too (it fires on creation).
    for (xid, path) in [(1, "/a"), (2, "/b"), (3, "/c"), (4, "/a")] {
        let (h, _) = raw.call(xid, &exists_watch(path));
        assert_eq!(h.err, protocol::ErrorCode::NoNode.as_i32(), "{path}: within the limit (the same watch again costs nothing)");
    }
    assert_eq!(mntr(&server, "corral_use_max_watches_per_session"), 3);
    assert_eq!(mntr(&server, "corral_limit_max_watches_per_session"), 3);
    let mut v = Vec::new();
    RequestHeader { xid: 5, r#type: protocol::OpCode::Exists.as_i32() }.encode(&mut v);
    exists_watch("/d").encode_body(&mut v);
    raw.send_frame(&v).unwrap();
    assert!(raw.read_frame().is_none(), "the fourth watch closes the connection, unanswered");
    assert!(server.log().contains("maxWatchesPerSession"), "the log names the limit");
    wait_mntr(&server, "zk_watch_count", 0);

    // Another session is not affected, and the limit is per session.
    let mut other = Raw::connect(server.addr);
    other.handshake();
    for (xid, path) in [(1, "/a"), (2, "/b"), (3, "/c")] {
        assert_eq!(other.call(xid, &exists_watch(path)).0.err, protocol::ErrorCode::NoNode.as_i32());
    }
}

#[test]
fn max_set_watches_paths_bounds_one_request() {
    let server = Corral::start_with("maxSetWatchesPaths=4");
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    let sw = |n: usize| {
        Request::SetWatches(SetWatches {
            relative_zxid: 0,
            data_watches: vec!["/".into()],
            exist_watches: (1..n).map(|i| format!("/missing{i}")).collect(),
            child_watches: Vec::new(),
        })
    };
    let (h, _) = raw.call(1, &sw(4));
    assert_eq!(h.err, 0, "four paths are within the limit");
    assert_eq!(mntr(&server, "zk_watch_count"), 4);
    let mut v = Vec::new();
    RequestHeader { xid: 2, r#type: protocol::OpCode::SetWatches.as_i32() }.encode(&mut v);
    sw(5).encode_body(&mut v);
    raw.send_frame(&v).unwrap();
    assert!(raw.read_frame().is_none(), "five paths close the connection");
    assert!(server.log().contains("maxSetWatchesPaths"), "the log names the limit");
    assert_eq!(mntr(&server, "corral_use_max_set_watches_paths"), 5, "mntr reports the largest request seen");
    wait_mntr(&server, "zk_watch_count", 0);
}

#[test]
fn max_output_queue_bytes_disconnects_a_client_that_does_not_read() {
    const LIMIT: u64 = 1 << 20;
    let server = Corral::start_with(&format!("maxOutputQueueBytes={LIMIT}"));
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    let data = vec![7u8; 100_000];
    let create = Request::Create(CreateRequest { path: "/big".into(), data: Some(data), acl: open_acl(), flags: 0 });
    assert_eq!(raw.call(1, &create).0.err, 0);
    let get = Request::GetData(GetDataRequest { path: "/big".into(), watch: false });
    // A client that reads as it goes takes far more than the limit in all.
    for xid in 2..60 {
        assert_eq!(raw.call(xid, &get).0.err, 0, "a reader that keeps up is served");
    }
    assert_eq!(mntr(&server, "corral_limit_max_output_queue_bytes"), LIMIT);

    // One that stops reading: 30 MB of replies, far more than the socket
    // buffers hold, so the queue passes the limit.
    let mut frames = Vec::new();
    for xid in 100..400 {
        let mut f = Vec::new();
        RequestHeader { xid, r#type: protocol::OpCode::GetData.as_i32() }.encode(&mut f);
        get.encode_body(&mut f);
        frames.extend_from_slice(&(f.len() as u32).to_be_bytes());
        frames.extend_from_slice(&f);
    }
    raw.stream.write_all(&frames).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.log().contains("maxOutputQueueBytes") {
        assert!(Instant::now() < deadline, "never disconnected; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // It now gets what the socket held, then the end of the connection.
    let mut replies = 0;
    while raw.read_frame().is_some() {
        replies += 1;
    }
    assert!(replies < 300, "disconnected before every reply ({replies})");
    wait_mntr(&server, "corral_output_queue_bytes", 0);
    // The server serves others meanwhile.
    let mut other = Raw::connect(server.addr);
    other.handshake();
    assert_eq!(other.call(1, &get).0.err, 0);
}

#[test]
fn mntr_reports_each_limit_and_its_use() {
    let server = Corral::start_with("maxClientCnxns=7\nmaxCnxns=9");
    let mut a = Raw::connect(server.addr);
    a.handshake();
    a.call(1, &exists_watch("/x"));
    a.call(2, &exists_watch("/y"));
    let mut b = Raw::connect(server.addr);
    b.handshake();
    // The asking connection counts too.
    for (key, want) in [
        ("corral_limit_max_client_cnxns", 7),
        ("corral_use_max_client_cnxns", 3),
        ("corral_limit_max_cnxns", 9),
        ("corral_use_max_cnxns", 3),
        ("corral_limit_max_watches_per_session", 100_000),
        ("corral_use_max_watches_per_session", 2),
        ("corral_limit_max_set_watches_paths", 131_072),
        ("corral_limit_max_output_queue_bytes", 8 << 20),
        ("corral_output_queue_bytes", 0),
        ("corral_limit_session_pending_max", 10_000),
        ("corral_use_session_pending_max", 0),
        ("corral_limit_input_queue_max", 16_384),
        ("corral_limit_jute_maxbuffer", 1_048_575),
        ("zk_watch_count", 2),
        ("zk_num_alive_connections", 2),
    ] {
        assert_eq!(mntr(&server, key), want, "{key}");
    }
    drop((a, b));
    wait_mntr(&server, "corral_use_max_cnxns", 1);
    wait_mntr(&server, "zk_watch_count", 0);
}
