//! Typed multi transactions. Each op of a multi is added with its role, and a
//! failed commit names the role of the op the server refused, so a new op in
//! a transaction cannot silently change what a failure at some index means
//! (the index arithmetic this replaces broke exactly that way when ops were
//! conditional).

use zookeeper_client::{Client, CreateOptions, MultiWriteError, MultiWriteResult, MultiWriter};

use crate::error::{normalize, QueueError, ZkError};

/// A multi under construction; `R` says what each op is for.
pub(crate) struct Plan<'c, R> {
    writer: MultiWriter<'c>,
    roles: Vec<R>,
}

/// Why a plan did not commit.
#[derive(Debug)]
pub(crate) enum Failed<R> {
    /// The server refused the op with this role; nothing of the multi applied.
    Op { role: R, source: ZkError },
    /// The request itself failed; `ConnectionLoss` (normalised) means the
    /// multi may or may not have committed.
    Request(ZkError),
}

impl<'c, R: Copy + std::fmt::Debug> Plan<'c, R> {
    pub(crate) fn new(client: &'c Client) -> Self {
        Plan { writer: client.new_multi_writer(), roles: Vec::new() }
    }

    pub(crate) fn create(&mut self, role: R, path: &str, data: &[u8], options: &CreateOptions<'_>) -> Result<(), QueueError> {
        self.writer.add_create(path, data, options)?;
        self.roles.push(role);
        Ok(())
    }

    pub(crate) fn set_data(&mut self, role: R, path: &str, data: &[u8], version: Option<i32>) -> Result<(), QueueError> {
        self.writer.add_set_data(path, data, version)?;
        self.roles.push(role);
        Ok(())
    }

    pub(crate) fn delete(&mut self, role: R, path: &str, version: Option<i32>) -> Result<(), QueueError> {
        self.writer.add_delete(path, version)?;
        self.roles.push(role);
        Ok(())
    }

    pub(crate) fn check(&mut self, role: R, path: &str, version: i32) -> Result<(), QueueError> {
        self.writer.add_check_version(path, version)?;
        self.roles.push(role);
        Ok(())
    }

    /// Sends the multi. Each op's result comes with its role.
    pub(crate) async fn commit(mut self) -> Result<Vec<(R, MultiWriteResult)>, Failed<R>> {
        match self.writer.commit().await {
            Ok(results) if results.len() == self.roles.len() => Ok(self.roles.into_iter().zip(results).collect()),
            Ok(results) => Err(Failed::Request(ZkError::UnexpectedError(format!("{} results for a multi of {} ops", results.len(), self.roles.len())))),
            Err(MultiWriteError::RequestFailed { source }) => Err(Failed::Request(normalize(source))),
            Err(MultiWriteError::OperationFailed { index, source }) => match self.roles.get(index) {
                Some(&role) => Err(Failed::Op { role, source }),
                // Not an answer to what we sent: treat the outcome as unknown.
                None => Err(Failed::Request(ZkError::UnexpectedError(format!("multi of {} ops failed at op {index}", self.roles.len())))),
            },
        }
    }
}

impl<R> From<Failed<R>> for QueueError {
    fn from(f: Failed<R>) -> Self {
        match f {
            Failed::Op { source, .. } | Failed::Request(source) => source.into(),
        }
    }
}
