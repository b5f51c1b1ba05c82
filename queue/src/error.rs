use std::time::Duration;

pub use zookeeper_client::Error as ZkError;

/// Everything the queue library can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue path {path:?}: {reason}")]
    BadPath { path: String, reason: String },

    #[error("no queue at {0} (create it first, e.g. with a put)")]
    NotFound(String),

    #[error("{path} holds a {found} queue, not a {expected} queue")]
    WrongLayout { path: String, expected: &'static str, found: String },

    #[error("cannot reach ZooKeeper at {hosts}: {reason}")]
    Unreachable { hosts: String, reason: String },

    #[error("queue {path} is full: {items} items / {bytes} bytes pending, limits {max_items} items / {max_bytes} bytes")]
    Full { path: String, items: u64, bytes: u64, max_items: String, max_bytes: String },

    #[error("message of {size} bytes does not fit in one ZooKeeper request (limit {limit} bytes)")]
    TooLarge { size: usize, limit: usize },

    /// The consumer no longer owns the message: its lease was taken over or
    /// its session expired and someone else claimed it. The operation had no
    /// effect.
    #[error("claim on message {id} was lost; it may be redelivered to another consumer")]
    ClaimLost { id: String },

    /// A write was sent but the connection dropped before the reply; it may or
    /// may not have been applied. Puts with an idempotency key never report
    /// this (they are retried safely).
    #[error("outcome of {op} unknown after connection loss")]
    Indeterminate { op: &'static str },

    #[error("the {layout} layout does not support {what}")]
    Unsupported { layout: &'static str, what: &'static str },

    #[error("malformed {what} at {path}: {reason}")]
    Corrupt { what: &'static str, path: String, reason: String },

    /// Claim-check: a large payload's blob could not be stored, found, read
    /// or verified. `key` is the blob's key in the store (empty before one
    /// was chosen).
    #[error("blob {key:?}: {reason}")]
    Blob { key: String, fault: BlobFault, reason: String },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error("ZooKeeper session expired; reconnect and open the queue again")]
    SessionExpired,

    #[error("ZooKeeper error: {0}")]
    Zk(ZkError),
}

/// What went wrong with a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobFault {
    /// The item references a blob the store does not have.
    Missing,
    /// The blob's size or SHA-256 differs from the reference.
    Corrupt,
    /// The store failed (I/O, network, permissions).
    Store,
    /// The item's payload is in a blob store but this handle has none
    /// (`NativeQueue::with_blob_store`).
    NotConfigured,
}

impl From<ZkError> for QueueError {
    fn from(e: ZkError) -> Self {
        match e {
            ZkError::SessionExpired | ZkError::ClientClosed => QueueError::SessionExpired,
            e => QueueError::Zk(e),
        }
    }
}

impl From<zookeeper_client::MultiWriteError> for QueueError {
    fn from(e: zookeeper_client::MultiWriteError) -> Self {
        QueueError::from(ZkError::from(e))
    }
}

/// Requests in flight when a connection breaks fail with the I/O error
/// itself (`Custom`), not `ConnectionLoss`; both mean "outcome unknown,
/// session probably alive", so treat them alike.
pub(crate) fn normalize(e: ZkError) -> ZkError {
    match e {
        ZkError::Custom(_) => ZkError::ConnectionLoss,
        e => e,
    }
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// How long a blocking operation may wait.
pub(crate) fn deadline(timeout: Option<Duration>) -> Option<tokio::time::Instant> {
    timeout.map(|t| tokio::time::Instant::now() + t)
}
