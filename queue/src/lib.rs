//! corral-queue: a work queue over any ZooKeeper-protocol server.
//!
//! Three layouts share one API surface ([`Queue`]):
//! * [`native`]: priorities, delays, leases, fenced acks, DLQ, idempotent
//!   producers, exact bounds, flat cost at millions of pending items;
//! * [`kazoo`]: kazoo's `LockingQueue` node layout, for Python interop;
//! * [`curator`]: Curator's `DistributedQueue` layout, for Java interop.
//!
//! See docs/queue.md for guarantees and failure behaviour.

pub mod codec;
pub mod curator;
pub mod error;
pub mod kazoo;
pub mod native;

use std::time::Duration;

pub use codec::{Meta, MsgId};
pub use error::{QueueError, Result};
pub use native::{DeadLetter, Delivery, Message, NackOutcome, NativeQueue, PutOutcome, Stats};
use zookeeper_client::Client;

/// Connects to `hosts` (a ZooKeeper connect string, optionally with chroot),
/// mapping failure to a clear [`QueueError::Unreachable`].
pub async fn connect(hosts: &str, session_timeout: Duration) -> Result<Client> {
    let connector = Client::connector().with_session_timeout(session_timeout).with_connection_timeout(Duration::from_secs(5));
    match tokio::time::timeout(Duration::from_secs(15), connector.connect(hosts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(QueueError::Unreachable { hosts: hosts.into(), reason: e.to_string() }),
        Err(_) => Err(QueueError::Unreachable { hosts: hosts.into(), reason: "timed out after 15s".into() }),
    }
}

/// Guesses which layout lives at `path` from its data and children.
pub async fn detect_layout(client: &Client, path: &str) -> Result<String> {
    let (data, _) = match client.get_data(path).await {
        Ok(x) => x,
        Err(zookeeper_client::Error::NoNode) => return Err(QueueError::NotFound(path.into())),
        Err(e) => return Err(e.into()),
    };
    if data.starts_with(b"corral-queue native") {
        return Ok("native".into());
    }
    let children = client.list_children(path).await?;
    if children.iter().any(|c| c == "entries") && children.iter().any(|c| c == "taken") {
        return Ok("kazoo".into());
    }
    if children.iter().any(|c| c.starts_with(codec::CURATOR_PREFIX)) {
        return Ok("curator".into());
    }
    Ok(if children.is_empty() { "empty node".into() } else { "unrecognised".into() })
}
