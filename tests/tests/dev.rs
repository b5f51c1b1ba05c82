//! `corral dev`: a local ensemble in one process, for development.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_tests::{corral_bin, persistent};
use zookeeper_client as zk;

#[tokio::test]
async fn corral_dev_runs_an_ensemble_and_stops_cleanly_on_sigterm() {
    let mut child = Command::new(corral_bin())
        .args(["dev", "--nodes", "3", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start corral dev");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let hosts = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(line.starts_with("corral dev: 3 members; connect string "), "{line}");
    assert_eq!(hosts.split(',').count(), 3, "{hosts}");

    // Each member serves, and they replicate: a write through the first is read through the last.
    let members: Vec<&str> = hosts.split(',').collect();
    let first = zk::Client::connector().connect(members[0]).await.unwrap();
    first.create("/dev", b"v", &persistent()).await.unwrap();
    let last = zk::Client::connector().connect(members[2]).await.unwrap();
    last.sync("/dev").await.unwrap();
    assert_eq!(last.get_data("/dev").await.unwrap().0, b"v");
    drop((first, last));

    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("corral dev did not stop within 20 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
}
