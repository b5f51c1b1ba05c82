//! The core must stay deterministic: no clock, randomness, I/O or async in
//! any file of `server/src/core` (parsing an IP address is fine; sockets
//! are not). This test keeps the boundary from eroding.

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
