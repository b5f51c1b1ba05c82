//! The core and the replica driver must stay deterministic: no clock,
//! randomness, I/O or async in any file of `server/src/core` or
//! `server/src/replica` (parsing an IP address is fine; sockets are not).
//! The simulator depends on it. This test keeps the boundary from eroding.

#[test]
fn core_does_no_io_and_reads_no_clock() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let forbidden = [
        "tokio", "sled::", "raft::", "TcpStream", "TcpListener", "UdpSocket", "std::fs", "std::io", "Instant::now", "SystemTime", "thread_rng",
        "rand::", "std::thread", "std::sync::Mutex", "std::env",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{} names `{word}`: the core must stay free of I/O, clocks and randomness", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 9, "expected the core's modules, found {checked}");
}

#[test]
fn replica_does_no_io_and_reads_no_clock() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/replica");
    // The replica drives raft-rs, so `raft::` is allowed here, and nothing else of the list.
    let forbidden = [
        "tokio", "sled::", "TcpStream", "TcpListener", "UdpSocket", "std::fs", "std::io", "Instant::now", "SystemTime", "thread_rng",
        "rand::", "std::thread", "std::sync::Mutex", "std::env", "crate::net", "crate::store",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{} names `{word}`: the replica driver must stay free of I/O, clocks and randomness", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 2, "expected the replica's modules, found {checked}");
}
