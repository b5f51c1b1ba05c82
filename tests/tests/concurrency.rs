//! Many sessions at once: compare-and-set increments through versioned
//! setData from concurrent clients must neither lose nor duplicate an
//! update, and every client's sequential creates must be unique and dense.

use std::collections::BTreeSet;
use std::time::Duration;

use corral_tests::{connect, embedded, persistent};
use zookeeper_client::{Acls, CreateMode, Error};

const CLIENTS: usize = 16;
const INCREMENTS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_are_exact() {
    let server = embedded("").await;
    let hosts = server.connect_string();
    let setup = connect(&hosts, Duration::from_secs(10)).await;
    setup.create("/counter", b"0", &persistent()).await.unwrap();
    setup.create("/seq", b"", &persistent()).await.unwrap();

    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let hosts = hosts.clone();
        tasks.push(tokio::spawn(async move {
            let zk = connect(&hosts, Duration::from_secs(10)).await;
            let mut conflicts = 0usize;
            let mut names = Vec::new();
            for _ in 0..INCREMENTS {
                loop {
                    let (data, stat) = zk.get_data("/counter").await.unwrap();
                    let n: u64 = std::str::from_utf8(&data).unwrap().parse().unwrap();
                    match zk.set_data("/counter", (n + 1).to_string().as_bytes(), Some(stat.version)).await {
                        Ok(_) => break,
                        Err(Error::BadVersion) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                let seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
                let (_, s) = zk.create("/seq/n-", b"", &seq).await.unwrap();
                names.push(s.into_i64());
            }
            (conflicts, names)
        }));
    }
    let mut all = BTreeSet::new();
    let mut conflicts = 0;
    for t in tasks {
        let (c, names) = t.await.unwrap();
        conflicts += c;
        for n in names {
            assert!(all.insert(n), "sequence number {n} handed out twice");
        }
    }
    let (data, stat) = setup.get_data("/counter").await.unwrap();
    assert_eq!(std::str::from_utf8(&data).unwrap(), (CLIENTS * INCREMENTS).to_string());
    assert_eq!(stat.version as usize, CLIENTS * INCREMENTS);
    let expected: BTreeSet<i64> = (0..(CLIENTS * INCREMENTS) as i64).collect();
    assert_eq!(all, expected, "sequential suffixes are dense from 0");
    println!("{conflicts} CAS conflicts retried");
}
