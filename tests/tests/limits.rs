//! The limits on what one client can make the server hold: each is named in
//! zoo.cfg, refused with a closed connection and a log line naming it, and
//! reported by mntr beside its current use.

use std::io::Write;
use std::time::{Duration, Instant};

use corral_tests::{Corral, Raw};
use protocol::{Acl, CreateRequest, ExistsRequest, GetDataRequest, Id, Jute, Request, RequestHeader, SetWatches};

/// The value of one mntr key; `None` if the mntr connection was refused
/// (its address at maxClientCnxns).
fn try_mntr(server: &Corral, key: &str) -> Option<u64> {
    let out = server.four_letter("mntr");
    if out.is_empty() {
        return None;
    }
    let v = out.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('\t')));
    Some(v.unwrap_or_else(|| panic!("no {key} in mntr:\n{out}")).parse().unwrap())
}

fn mntr(server: &Corral, key: &str) -> u64 {
    try_mntr(server, key).expect("mntr answered")
}

/// Polls mntr until `key` reads `want` (the server notices closes
/// asynchronously; there is nothing else to wait on from outside).
fn wait_mntr(server: &Corral, key: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = try_mntr(server, key);
        if v == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{key} stayed {v:?}, expected {want}");
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

/// How a test client goes away.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// close(): FIN (or RST when unread data is left, as the kernel does).
    Close,
    /// SO_LINGER 0: RST at once.
    Reset,
}

fn kill(stream: std::net::TcpStream, how: Kill) {
    if let Kill::Reset = how {
        stream.set_nonblocking(true).unwrap();
        let s = tokio::net::TcpStream::from_std(stream).unwrap();
        s.set_zero_linger().unwrap();
        drop(s);
    }
}

/// Every counter a connection adds to while it lives.
const COUNTERS: [&str; 6] = [
    "corral_use_max_cnxns",
    "corral_use_max_client_cnxns",
    "zk_num_alive_connections",
    "zk_watch_count",
    "corral_output_queue_bytes",
    "corral_use_session_pending_max",
];

/// A connection the server closes in order (here after closeSession) while
/// its client neither reads nor closes is dropped after CLOSE_FLUSH_TIMEOUT
/// (5 s), instead of holding its task and its maxClientCnxns slot.
#[test]
fn a_closed_connection_whose_client_does_not_read_is_dropped() {
    let server = Corral::start_with(&format!("maxOutputQueueBytes={}", 256 << 20));
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    let create = Request::Create(CreateRequest { path: "/big".into(), data: Some(vec![1; 100_000]), acl: open_acl(), flags: 0 });
    assert_eq!(raw.call(1, &create).0.err, 0);
    let mut asks = Vec::new();
    for xid in 2..300 {
        let mut f = Vec::new();
        RequestHeader { xid, r#type: protocol::OpCode::GetData.as_i32() }.encode(&mut f);
        Request::GetData(GetDataRequest { path: "/big".into(), watch: false }).encode_body(&mut f);
        asks.extend((f.len() as u32).to_be_bytes());
        asks.extend(f);
    }
    let mut close = Vec::new();
    RequestHeader { xid: 300, r#type: protocol::OpCode::CloseSession.as_i32() }.encode(&mut close);
    asks.extend((close.len() as u32).to_be_bytes());
    asks.extend(close);
    raw.stream.write_all(&asks).unwrap();
    let started = Instant::now();
    wait_mntr(&server, "zk_num_alive_connections", 0);
    // The session is closed; its connection's task still tries to write.
    assert_eq!(mntr(&server, "corral_use_max_client_cnxns"), 2, "the stuck connection and mntr's");
    let deadline = Instant::now() + Duration::from_secs(15);
    while try_mntr(&server, "corral_use_max_client_cnxns") != Some(1) {
        assert!(Instant::now() < deadline, "the connection was never dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_secs(4), "dropped after the grace period, not before");
    assert!(server.log().contains("did not take its last replies"), "logged");
    drop(raw);
}

/// Connections killed by their client in every state a connection task can
/// be in, by close and by reset, leave nothing behind: the counters return
/// to their baseline and the address gets its whole maxClientCnxns again.
#[tokio::test]
async fn killed_connections_leave_no_slot_count_or_watch_behind() {
    const MAX: usize = 9;
    let dir = std::env::temp_dir().join(format!("corral-leaks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jks = dir.join("server.jks");
    let keytool = std::process::Command::new("keytool")
        .args(["-genkeypair", "-alias", "corral", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=127.0.0.1", "-validity", "2"])
        .args(["-storetype", "JKS", "-storepass", "storepw", "-keypass", "storepw", "-keystore"])
        .arg(&jks)
        .output()
        .expect("keytool");
    assert!(keytool.status.success(), "{}", String::from_utf8_lossy(&keytool.stderr));
    // Output queue limit far above what the slow reader below queues: it
    // must be killed by its client with its queue full, not by the limit.
    let server = Corral::start_with(&format!(
        "maxClientCnxns={MAX}\nmaxOutputQueueBytes={}\nsecureClientPort=0\nssl.keyStore.location={}\nssl.keyStore.password=storepw\nssl.clientAuth=none",
        256 << 20,
        jks.display()
    ));
    let secure: std::net::SocketAddr = server.stdout_line("corral listening (TLS) on ").expect("TLS listener").parse().unwrap();
    {
        let mut raw = Raw::connect(server.addr);
        raw.handshake();
        let create = Request::Create(CreateRequest { path: "/big".into(), data: Some(vec![1; 100_000]), acl: open_acl(), flags: 0 });
        assert_eq!(raw.call(1, &create).0.err, 0);
    }
    wait_mntr(&server, "corral_use_max_cnxns", 1);
    let baseline: Vec<u64> = COUNTERS.iter().map(|k| mntr(&server, k)).collect();
    assert_eq!(baseline, [1, 1, 0, 0, 0, 0], "only the asking connection");

    let frame = |xid: i32, req: &Request| {
        let mut f = Vec::new();
        RequestHeader { xid, r#type: req.op_code().as_i32() }.encode(&mut f);
        req.encode_body(&mut f);
        let mut v = (f.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&f);
        v
    };
    for how in [Kill::Close, Kill::Reset] {
        let mut victims: Vec<(&str, std::net::TcpStream)> = Vec::new();
        // TCP connected, nothing sent: the task waits for its first bytes.
        victims.push(("idle", std::net::TcpStream::connect(server.addr).unwrap()));
        // Half a ConnectRequest: the task waits for the rest of the frame.
        let mut half = std::net::TcpStream::connect(server.addr).unwrap();
        half.write_all(&[0, 0, 0, 44, 0, 0, 0, 0, 0, 0]).unwrap();
        victims.push(("half a ConnectRequest", half));
        // A whole ConnectRequest and a request behind it, nothing read:
        // killed while the connect is (or was just) being answered.
        let mut connecting = std::net::TcpStream::connect(server.addr).unwrap();
        let connect = protocol::ConnectRequest { time_out: 10_000, passwd: vec![0; 16], read_only: Some(false), ..Default::default() }.to_bytes();
        let mut bytes = (connect.len() as u32).to_be_bytes().to_vec();
        bytes.extend(connect);
        bytes.extend(frame(1, &exists_watch("/c")));
        connecting.write_all(&bytes).unwrap();
        victims.push(("connect sent, unread", connecting));
        // Half a TLS ClientHello: the task is in the TLS handshake.
        let mut tls = std::net::TcpStream::connect(secure).unwrap();
        tls.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03]).unwrap();
        victims.push(("mid-TLS-handshake", tls));
        // A session with requests in flight, unread.
        let mut busy = Raw::connect(server.addr);
        busy.handshake();
        let mut burst = Vec::new();
        for xid in 1..200 {
            let req = Request::Create(CreateRequest { path: "/n-".into(), data: None, acl: open_acl(), flags: 2 });
            burst.extend(frame(xid, &req));
            burst.extend(frame(1000 + xid, &Request::Exists(ExistsRequest { path: "/".into(), watch: false })));
        }
        busy.stream.write_all(&burst).unwrap();
        victims.push(("requests in flight", busy.stream));
        // A session holding watches.
        let mut watching = Raw::connect(server.addr);
        watching.handshake();
        watching.call(1, &exists_watch("/w1"));
        watching.call(2, &Request::GetData(GetDataRequest { path: "/big".into(), watch: true }));
        victims.push(("watches registered", watching.stream));
        // A slow reader: 30 MB of replies asked for, none read; killed once
        // the server holds some of them queued.
        let mut slow = Raw::connect(server.addr);
        slow.handshake();
        let mut asks = Vec::new();
        for xid in 1..300 {
            asks.extend(frame(xid, &Request::GetData(GetDataRequest { path: "/big".into(), watch: false })));
        }
        slow.stream.write_all(&asks).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while mntr(&server, "corral_output_queue_bytes") == 0 {
            assert!(Instant::now() < deadline, "the slow reader's output never queued");
            std::thread::sleep(Duration::from_millis(10));
        }
        victims.push(("slow reader, output queued", slow.stream));
        assert_eq!(victims.len() + 1, MAX - 1, "every state held at once, beside the mntr connection");
        assert_eq!(mntr(&server, "corral_use_max_client_cnxns"), MAX as u64 - 1);
        assert!(mntr(&server, "zk_watch_count") >= 2);
        for (what, stream) in victims {
            eprintln!("{how:?}: {what}");
            kill(stream, how);
        }
        for (key, want) in COUNTERS.iter().zip(&baseline) {
            wait_mntr(&server, key, *want);
        }
        // The address gets its whole maxClientCnxns, and no more.
        let mut full: Vec<Raw> = (0..MAX).map(|_| Raw::connect(server.addr)).collect();
        for r in &mut full {
            assert_ne!(r.handshake().session_id, 0);
        }
        let mut over = Raw::connect(server.addr);
        let _ = over.stream.write_all(&[0, 0, 0, 1, 0]);
        assert!(over.read_frame().is_none(), "{how:?}: maxClientCnxns + 1 is refused");
        drop(full);
        drop(over);
        wait_mntr(&server, "corral_use_max_cnxns", 1);
    }
    assert!(!server.log().contains("panicked"));
    std::fs::remove_dir_all(&dir).unwrap();
}
