//! Claim-check for large payloads: above a size threshold a payload is
//! written to a blob store (any [`object_store::ObjectStore`]: a local
//! directory, memory, or S3/GCS/Azure with the `aws`/`gcp`/`azure`
//! features) and the item holds a [`BlobRef`] (key, size, SHA-256). See
//! docs/queue.md, "Large payloads", for the protocol and its failure cases.
//!
//! Keys are `PREFIX/QUEUE-PATH/HH/ID`: `ID` is 128 random bits in hex (from
//! the OS), `HH` its first two digits (keeps local directories small), and
//! the queue path keeps queues that share a prefix from sweeping each
//! other's blobs.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use sha2::{Digest, Sha256};

use crate::codec::{self, BlobRef};
use crate::error::{BlobFault, QueueError, Result};

/// A queue handle's blob store: where payloads above `threshold` bytes go.
#[derive(Clone)]
pub struct BlobStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `PREFIX/QUEUE-PATH`: every blob of this queue is under it.
    pub(crate) base: Path,
    pub(crate) threshold: usize,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore").field("store", &self.store.to_string()).field("base", &self.base.as_ref()).field("threshold", &self.threshold).finish()
    }
}

fn fault(key: &str, fault: BlobFault, reason: impl Into<String>) -> QueueError {
    QueueError::Blob { key: key.into(), fault, reason: reason.into() }
}

fn store_error(key: &str, what: &str, e: object_store::Error) -> QueueError {
    match e {
        object_store::Error::NotFound { .. } => fault(key, BlobFault::Missing, "missing from the blob store"),
        e => fault(key, BlobFault::Store, format!("{what} failed: {e}")),
    }
}

impl BlobStore {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, prefix: &str, queue_path: &str, threshold: usize) -> BlobStore {
        // Each component is percent-encoded where the store needs it, so
        // any znode name is a valid key part.
        let parts = prefix.split('/').chain(queue_path.split('/')).filter(|p| !p.is_empty());
        BlobStore { store, base: Path::from_iter(parts), threshold }
    }

    /// Whether a payload of `len` bytes goes to the store.
    pub(crate) fn offloads(&self, len: usize) -> bool {
        len > self.threshold
    }

    /// Length of the keys this store makes (for request size budgeting).
    pub(crate) fn key_len(&self) -> usize {
        self.base.as_ref().len() + 1 + 2 + 1 + codec::BLOB_ID_LEN
    }

    pub(crate) fn path_of(&self, id: &str) -> Path {
        self.base.clone().join(&id[..2]).join(id)
    }

    /// Writes `payload` under a fresh random key (never overwriting) and
    /// returns its reference.
    pub(crate) async fn put(&self, payload: Vec<u8>) -> Result<BlobRef> {
        let sha256: [u8; 32] = Sha256::digest(&payload).into();
        let size = payload.len() as u64;
        let body = PutPayload::from(payload);
        let mut attempt = 0;
        loop {
            let mut raw = [0u8; 16];
            getrandom::getrandom(&mut raw).map_err(|e| fault("", BlobFault::Store, format!("no random source for a blob id: {e}")))?;
            let path = self.path_of(&codec::hex(&raw));
            let key = path.to_string();
            match self.store.put_opts(&path, body.clone(), PutMode::Create.into()).await {
                Ok(_) => return Ok(BlobRef { key, size, sha256 }),
                // 128 random bits do not collide; a store that says so twice
                // is broken.
                Err(object_store::Error::AlreadyExists { .. }) if attempt < 2 => attempt += 1,
                Err(e) => return Err(store_error(&key, "writing the blob", e)),
            }
        }
    }

    /// Reads a blob and checks its size and SHA-256 against the reference.
    pub(crate) async fn get(&self, r: &BlobRef) -> Result<Vec<u8>> {
        let path = Path::parse(&r.key).map_err(|e| fault(&r.key, BlobFault::Corrupt, format!("invalid blob key: {e}")))?;
        let res = self.store.get(&path).await.map_err(|e| store_error(&r.key, "reading the blob", e))?;
        let bytes = res.bytes().await.map_err(|e| store_error(&r.key, "reading the blob", e))?;
        if bytes.len() as u64 != r.size {
            return Err(fault(&r.key, BlobFault::Corrupt, format!("corrupt: {} bytes, the item says {}", bytes.len(), r.size)));
        }
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        if sha256 != r.sha256 {
            return Err(fault(&r.key, BlobFault::Corrupt, format!("corrupt: SHA-256 {} differs from the item's {}", codec::hex(&sha256), r.sha256_hex())));
        }
        Ok(Vec::from(bytes))
    }

    /// Deletes a blob; one already gone is fine.
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let path = Path::parse(key).map_err(|e| fault(key, BlobFault::Corrupt, format!("invalid blob key: {e}")))?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(key, "deleting the blob", e)),
        }
    }
}

/// What [`crate::NativeQueue::sweep_blobs`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Blobs listed under the queue's prefix.
    pub listed: u64,
    /// Orphans older than the grace period, deleted.
    pub deleted: u64,
    /// Kept: an item or dead letter references them.
    pub referenced: u64,
    /// Kept: younger than the grace period (a put may still be writing its
    /// item).
    pub young: u64,
    /// Kept: not named like our blobs (never touched).
    pub foreign: u64,
}
