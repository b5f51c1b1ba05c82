//! Bad input on the wire: oversized frames, malformed bodies, unknown
//! opcodes, garbage. Each gets a clear answer or a closed connection; the
//! server stays up and keeps serving others.

use std::io::Write;
use std::time::Duration;

use corral_tests::{connect, persistent, Corral, Raw};
use protocol::{ErrorCode, Jute, Request, RequestHeader};

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let server = Corral::start_with("jute.maxbuffer=4096");
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    // Claim a frame just over the limit; the server must not wait for the body.
    raw.stream.write_all(&4097u32.to_be_bytes()).unwrap();
    assert!(raw.read_frame().is_none(), "connection closed on an oversized frame");
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    zk.create("/still", b"", &persistent()).await.unwrap();
    assert!(server.log().contains("exceeds jute.maxbuffer"), "log names the limit");
}

#[tokio::test]
async fn malformed_body_and_unknown_opcode_get_error_codes() {
    let server = Corral::start();
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    // getData with a string length pointing past the end of the frame.
    let mut frame = Vec::new();
    RequestHeader { xid: 7, r#type: 4 }.encode(&mut frame);
    frame.extend_from_slice(&1000i32.to_be_bytes());
    frame.extend_from_slice(b"/x");
    raw.send_frame(&frame).unwrap();
    let reply = raw.read_frame().unwrap();
    let h = protocol::ReplyHeader::from_bytes(&reply).unwrap();
    assert_eq!((h.xid, h.err), (7, ErrorCode::MarshallingError.as_i32()));

    // The connection still works after a malformed body.
    let (h, _) = raw.call(9, &Request::Exists(protocol::ExistsRequest { path: "/".into(), watch: false }));
    assert_eq!((h.xid, h.err), (9, 0));
    // Invalid paths are BADARGUMENTS, as in ZooKeeper.
    for bad in ["", "noslash", "/a/", "/a//b", "/a/./b"] {
        let (h, _) = raw.call(10, &Request::Exists(protocol::ExistsRequest { path: bad.into(), watch: false }));
        assert_eq!(h.err, ErrorCode::BadArguments.as_i32(), "{bad:?}");
    }
    // An unknown opcode is answered UNIMPLEMENTED, then the connection is
    // closed, as ZooKeeper does.
    let mut frame = Vec::new();
    RequestHeader { xid: 8, r#type: 999 }.encode(&mut frame);
    raw.send_frame(&frame).unwrap();
    let h = protocol::ReplyHeader::from_bytes(&raw.read_frame().unwrap()).unwrap();
    assert_eq!((h.xid, h.err), (8, ErrorCode::Unimplemented.as_i32()));
    assert!(raw.read_frame().is_none());
}

#[tokio::test]
async fn garbage_and_truncated_handshakes_do_not_hurt_the_server() {
    let server = Corral::start();
    for garbage in [&b"\x00\x00\x00\x03abc"[..], b"\xff\xff\xff\xff", b"\x00\x00", b"GET / HTTP/1.1\r\n\r\n"] {
        let mut raw = Raw::connect(server.addr);
        let _ = raw.stream.write_all(garbage);
        let _ = raw.stream.shutdown(std::net::Shutdown::Write);
        assert!(raw.read_frame().is_none(), "{garbage:?} must not get a session");
    }
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    zk.create("/ok", b"", &persistent()).await.unwrap();
}

#[test]
fn four_letter_words() {
    let server = Corral::start();
    assert_eq!(server.four_letter("ruok"), "imok");
    assert_eq!(server.four_letter("isro"), "rw");
    let srvr = server.four_letter("srvr");
    assert!(srvr.starts_with("Zookeeper version: 3.8"), "{srvr}");
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    let mntr = server.four_letter("mntr");
    let znodes: usize = mntr
        .lines()
        .find_map(|l| l.strip_prefix("zk_znode_count\t"))
        .expect("zk_znode_count")
        .parse()
        .unwrap();
    assert_eq!(znodes, 4, "/, /zookeeper, /zookeeper/quota, /zookeeper/config");
    for (word, needle) in [
        ("stat", "Clients:"),
        ("conf", "tickTime=200"),
        ("envi", "Environment:"),
        ("wchs", "Total watches:0"),
        ("dump", "SessionTracker dump:"),
        ("srst", "Server stats reset."),
        ("crst", "Connection stats reset."),
    ] {
        let out = server.four_letter(word);
        assert!(out.contains(needle), "{word}: {out}");
    }
}

#[test]
fn four_letter_words_outside_the_whitelist_are_refused() {
    let server = Corral::start_with("4lw.commands.whitelist=ruok");
    assert_eq!(server.four_letter("ruok"), "imok");
    assert_eq!(server.four_letter("mntr"), "mntr is not executed because it is not in the whitelist.\n");
}

#[test]
fn command_line_usage_and_version() {
    let run = |args: &[&str]| std::process::Command::new(corral_tests::corral_bin()).args(args).output().unwrap();
    let v = run(&["--version"]);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("corral "));
    let bad = run(&["serve", "x", "y"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("usage: corral"));
    let missing = run(&["server", "/nonexistent/zoo.cfg"]);
    assert_eq!(missing.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/zoo.cfg: cannot read"));
    // Test-only bug switches: only named ones, only with a zoo.cfg.
    let unknown = run(&["server", "/nonexistent/zoo.cfg", "--unsafe-test-bug", "nonsense"]);
    assert_eq!(unknown.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown test bug"));
    let alone = run(&["--unsafe-test-bug", "lost-ack"]);
    assert_eq!(alone.status.code(), Some(64), "no bug switch on the embedded default");
}

#[test]
fn a_test_bug_is_announced_loudly() {
    let mut server = Corral::start_with("");
    server.restart_with_args(&["--unsafe-test-bug", "stale-read"]);
    assert!(server.log().contains("UNSAFE TEST BUG ON"), "{}", server.log());
    assert!(server.four_letter("ruok").contains("imok"));
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("corral-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("zoo.cfg");
    std::fs::write(&cfg, format!("dataDir={}\nclientPort=99999\n", dir.display())).unwrap();
    let out = std::process::Command::new(corral_tests::corral_bin()).arg("server").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2: clientPort", cfg.display())), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn max_client_cnxns_limits_connections_per_ip() {
    let server = Corral::start_with("maxClientCnxns=2");
    let (a, _b) = two_sessions_then_refused(&server);
    drop(a);
    // Once one closes, a new one is admitted (the server notices the close asynchronously).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = Raw::connect(server.addr);
        let req = protocol::ConnectRequest { time_out: 10_000, passwd: vec![0; 16], read_only: Some(false), ..Default::default() };
        let _ = d.send_frame(&req.to_bytes());
        if d.read_frame().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot never freed");
    }
}

#[test]
fn max_cnxns_limits_connections_in_all() {
    let server = Corral::start_with("maxClientCnxns=0\nmaxCnxns=2");
    let _held = two_sessions_then_refused(&server);
    assert!(server.log().contains("maxCnxns"), "the log names the limit");
}

/// Opens two sessions and checks that a third connection is refused (a
/// limit of two); returns the two, still open.
fn two_sessions_then_refused(server: &Corral) -> (Raw, Raw) {
    let mut a = Raw::connect(server.addr);
    let mut b = Raw::connect(server.addr);
    a.handshake();
    b.handshake();
    let mut c = Raw::connect(server.addr);
    let _ = c.stream.write_all(&[0, 0, 0, 1, 0]);
    assert!(c.read_frame().is_none(), "a third connection from 127.0.0.1 is refused");
    (a, b)
}

/// splitmix64, so a failing run replays from its printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[tokio::test]
async fn random_frames_after_the_handshake_never_take_the_server_down() {
    let server = Corral::start();
    let mut seed = 0x5eed_u64;
    for round in 0..200 {
        let mut raw = Raw::connect(server.addr);
        raw.handshake();
        // A valid-looking header with a random opcode from the real range,
        // then random body bytes.
        let len = (next(&mut seed) % 64) as usize;
        let op = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 100, 101, 103, 104, 105, 106, 107]
            [(next(&mut seed) % 27) as usize];
        let mut frame = Vec::new();
        RequestHeader { xid: round, r#type: op }.encode(&mut frame);
        frame.extend((0..len).map(|_| next(&mut seed) as u8));
        raw.send_frame(&frame).unwrap();
        // Either an answer with our xid (error code or not) or a closed connection.
        if let Some(reply) = raw.read_frame() {
            let h = protocol::ReplyHeader::from_bytes(&reply[..16.min(reply.len())]).ok();
            if let Some(h) = h {
                // Pings are answered on xid -2 whatever the client sent.
                let expected = if op == 11 { -2 } else { round };
                assert!(h.xid == expected || h.xid == -1, "round {round}: op {op} answered on xid {}", h.xid);
            }
        }
    }
    let zk = connect(&server.hosts(), Duration::from_secs(10)).await;
    zk.create("/alive", b"", &persistent()).await.unwrap();
    assert_eq!(server.four_letter("ruok"), "imok");
}

#[test]
fn sasl_without_a_jaas_file_is_auth_failed_and_closed() {
    let server = Corral::start();
    let mut raw = Raw::connect(server.addr);
    raw.handshake();
    let (h, body) = raw.call(3, &Request::Sasl(protocol::GetSaslRequest { token: Vec::new() }));
    assert_eq!((h.xid, h.err), (3, ErrorCode::AuthFailed.as_i32()));
    // A SetSASLResponse with a null token, as ZooKeeper sends with AUTHFAILED
    // (the Java client reads it).
    assert_eq!(body, (-1i32).to_be_bytes());
    assert!(raw.read_frame().is_none(), "then the connection is closed");
    assert!(server.log().contains("SASL is off"), "{}", server.log());
}

#[test]
fn a_request_pipelined_behind_the_connect_request_is_answered() {
    let server = Corral::start();
    for round in 0..20 {
        let mut raw = Raw::connect(server.addr);
        let req = protocol::ConnectRequest { time_out: 10_000, passwd: vec![0; 16], read_only: Some(false), ..Default::default() };
        let mut auth = Vec::new();
        RequestHeader { xid: -4, r#type: protocol::OpCode::Auth.as_i32() }.encode(&mut auth);
        Request::Auth(protocol::AuthPacket { r#type: 0, scheme: "digest".into(), auth: b"alice:secret".to_vec() }).encode_body(&mut auth);
        // Both in one write: the auth reaches the server before its session exists.
        let mut both = (req.to_bytes().len() as u32).to_be_bytes().to_vec();
        both.extend(req.to_bytes());
        both.extend((auth.len() as u32).to_be_bytes());
        both.extend(&auth);
        raw.stream.write_all(&both).unwrap();
        let resp = protocol::ConnectResponse::from_bytes(&raw.read_frame().expect("connect response")).unwrap();
        assert_ne!(resp.session_id, 0);
        let reply = raw.read_frame().unwrap_or_else(|| panic!("round {round}: the auth was not answered"));
        let h = protocol::ReplyHeader::from_bytes(&reply).unwrap();
        assert_eq!((h.xid, h.err), (-4, 0), "round {round}");
    }
}
