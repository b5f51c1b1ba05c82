//! `corral-jepsen serve` through a socket: the binary started on a free
//! port answers the index, a run's file, and refuses a path out of the
//! store however it is spelt on the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// Kills the server when the test ends, passing or not.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, target: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_the_store_and_nothing_outside_it() {
    let root = std::env::temp_dir().join(format!("corral-jepsen-serve-{}", std::process::id()));
    let run = root.join("store").join("set-corral").join("20260102T030405");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("results.json"), r#"{"valid": true, "ops": {"total": 3}, "nemesis": [], "command": "c"}"#).unwrap();
    std::fs::write(run.join("rate.svg"), "<svg/>").unwrap();
    std::fs::write(root.join("outside.txt"), "secret").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_corral-jepsen"))
        .args(["serve", "--port", "0", "--store", root.join("store").to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // The server says where it listens once it does: no wait to guess.
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _server = Server(child);
    let addr = line.trim().rsplit("http://").next().unwrap().trim_end_matches('/').to_owned();

    let index = get(&addr, "/");
    assert!(index.starts_with("HTTP/1.1 200 OK\r\n") && index.contains("<td class=\"valid\">valid</td>") && index.contains("/set-corral/20260102T030405/rate.svg"), "{index}");
    let svg = get(&addr, "/set-corral/20260102T030405/rate.svg");
    assert!(svg.contains("Content-Type: image/svg+xml\r\n") && svg.ends_with("<svg/>"), "{svg}");
    for bad in ["/../outside.txt", "/set-corral/../../outside.txt", "/%2e%2e/outside.txt", "/%2e%2e%2foutside.txt"] {
        let r = get(&addr, bad);
        assert!(r.starts_with("HTTP/1.1 403 Forbidden\r\n") && !r.contains("secret"), "{bad}: {r}");
    }
    assert!(get(&addr, "/set-corral/nope").starts_with("HTTP/1.1 404 "));
    let _ = std::fs::remove_dir_all(&root);
}
