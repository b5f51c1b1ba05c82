//! ZooKeeper's client wire protocol: jute records, opcodes, error codes and
//! the length-prefixed frame codec.
//!
//! Pure data and functions, no I/O: the server, the tests and tools build on
//! it. Names follow `zookeeper.jute` (snake_cased) so a reader holding that
//! file finds everything.
//!
//! A client frame is `RequestHeader` + body, decoded with [`Request::decode`];
//! a server frame is `ReplyHeader` + [`Response`] (or header only, for an
//! error). The first frame of a connection is a [`ConnectRequest`].

pub mod codes;
pub mod connect;
pub mod frame;
pub mod jute;
pub mod records;
pub mod request;

pub use codes::{AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType};
pub use connect::{ConnectRequest, ConnectResponse};
pub use frame::{FrameCodec, FrameError, DEFAULT_MAX_FRAME_BYTES};
pub use jute::{DecodeError, Jute};
pub use records::*;
pub use request::{MultiOp, MultiRequest, MultiResponse, OpResult, Request, Response};
