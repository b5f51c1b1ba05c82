//! What the embedding tests share: the stock client, as applications use it.
#![allow(dead_code)]

use std::time::Duration;

use zookeeper_client as zk;

pub fn persistent() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

pub fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

pub async fn connect(hosts: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .connect(hosts)
        .await
        .unwrap_or_else(|e| panic!("connect to {hosts}: {e}"))
}

/// Retries `op` while the ensemble fails over (a client's own retry loop),
/// for at most 30 s.
pub async fn until_ok<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, zk::Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(v) => return v,
            // The client's own backoff between attempts.
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

