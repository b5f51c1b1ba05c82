//! One client connection: four-letter word or session. Frames in, decoded
//! and forwarded to the processor in order; replies and events out, in the
//! order the processor emitted them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use protocol::{ConnectRequest, DecodeError, ErrorCode, FrameCodec, Jute, Request, RequestHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;

use super::processor::{output_cost, Input, OutQueue, Output};
use crate::config::{Config, FOUR_LETTER_WORDS};

/// How long a new connection may take to send its first bytes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection the server closes may take to take its last
/// replies: a client that does not read them must not hold its task (and
/// its maxClientCnxns slot) forever.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    mut socket: S,
    addr: SocketAddr,
    conn_id: u64,
    slot: super::Slot,
    tls_ids: Vec<protocol::Id>,
    input: mpsc::Sender<Input>,
    cfg: Arc<Config>,
    shutdown: CancellationToken,
) {
    let mut first = [0u8; 4];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    // A four-letter word is recognised before any length check: as a length
    // its bytes would be far over any frame limit.
    if first.iter().all(u8::is_ascii_lowercase) {
        let word = std::str::from_utf8(&first).expect("ascii").to_owned();
        let text = if !FOUR_LETTER_WORDS.contains(&word.as_str()) {
            tracing::debug!(%addr, word, "unknown four-letter word");
            return;
        } else if !cfg.four_letter_words.contains(&word) {
            format!("{word} is not executed because it is not in the whitelist.\n")
        } else {
            let (tx, rx) = oneshot::channel();
            if input.send(Input::FourLetter { word, addr, reply: tx }).await.is_err() {
                return;
            }
            rx.await.unwrap_or_default()
        };
        // The connection is done with the server's state: its slot is free
        // before the client can see the end of the answer, so a client that
        // counts connections (mntr, then connect) does not race the release.
        drop(slot);
        let _ = socket.write_all(text.as_bytes()).await;
        let _ = socket.shutdown().await;
        return;
    }

    let mut parts = FramedParts::new::<bytes::Bytes>(socket, FrameCodec::new(cfg.max_frame_bytes));
    parts.read_buf = BytesMut::from(&first[..]);
    let mut framed = Framed::from_parts(parts);

    let connect = match tokio::time::timeout(HANDSHAKE_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(f))) => f,
        Ok(Some(Err(e))) => {
            tracing::info!(%addr, "closing connection: {e}");
            return;
        }
        _ => return,
    };
    let req = match ConnectRequest::from_bytes(&connect) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(%addr, "closing connection: malformed ConnectRequest: {e}");
            return;
        }
    };
    let (out, out_rx) = OutQueue::new();
    let (mut out_rx, state) = (out_rx.rx, out_rx.state);
    if input.send(Input::Connect { conn_id, addr, tls_ids, req, out }).await.is_err() {
        return;
    }

    let mut aborted = false;
    // Requests are read only once the connect is answered (the first
    // output is the ConnectResponse), as ZooKeeper stops reading a
    // connection until its session exists: before that the processor has no
    // session to give them to, and a request pipelined behind the
    // ConnectRequest (the Rust client's addauth) was dropped unanswered.
    let mut answered = false;
    loop {
        tokio::select! {
            frame = framed.next(), if answered => {
                let msg = match frame {
                    Some(Ok(f)) => match decode(conn_id, &f) {
                        Some(m) => m,
                        None => {
                            tracing::info!(%addr, "closing connection: request shorter than its header");
                            break;
                        }
                    },
                    Some(Err(e)) => {
                        tracing::info!(%addr, "closing connection: {e}");
                        break;
                    }
                    None => break,
                };
                if input.send(msg).await.is_err() {
                    break;
                }
            }
            out = out_rx.recv() => {
                // Write everything queued, then flush once.
                let write = async {
                    let (mut out, mut written, mut closing) = (out, 0, false);
                    loop {
                        match out {
                            Some(Output::Frame(b)) => {
                                let cost = output_cost(b.len());
                                if framed.feed(b).await.is_err() {
                                    closing = true;
                                    break;
                                }
                                written += cost;
                            }
                            Some(Output::Close) | None => {
                                closing = true;
                                break;
                            }
                        }
                        match out_rx.try_recv() {
                            Ok(o) => out = Some(o),
                            Err(_) => break,
                        }
                    }
                    (written, framed.flush().await.is_err() || closing)
                };
                // A write stuck on a client that does not read ends when the
                // processor drops the connection (at once over
                // maxOutputQueueBytes, after a grace period otherwise).
                let grace = async {
                    state.closed.cancelled().await;
                    tokio::time::sleep(CLOSE_FLUSH_TIMEOUT).await;
                };
                tokio::select! {
                    (written, closing) = write => {
                        answered = true;
                        state.bytes.fetch_sub(written, std::sync::atomic::Ordering::Relaxed);
                        if closing {
                            break;
                        }
                    }
                    _ = state.abort.cancelled() => {
                        aborted = true;
                        break;
                    }
                    _ = grace => {
                        tracing::info!(%addr, "closing connection: the client did not take its last replies within {CLOSE_FLUSH_TIMEOUT:?}");
                        aborted = true;
                        break;
                    }
                }
            }
            _ = state.abort.cancelled() => {
                aborted = true;
                break;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    if !aborted {
        // TLS sends close_notify here, which a client that does not read could block.
        let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, framed.get_mut().shutdown()).await;
    }
    let _ = input.send(Input::Closed { conn_id }).await;
    drop(slot);
}

/// Turns a frame into processor input; `None` if it cannot even carry a header.
fn decode(conn_id: u64, frame: &[u8]) -> Option<Input> {
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf).ok()?;
    Some(match Request::decode(header.r#type, buf) {
        Ok(req) => Input::Request { conn_id, xid: header.xid, req },
        // ZooKeeper answers an unknown opcode UNIMPLEMENTED and drops the connection.
        Err(DecodeError::UnknownOpCode(_)) => {
            Input::BadRequest { conn_id, xid: header.xid, err: ErrorCode::Unimplemented, close: true }
        }
        Err(_) => Input::BadRequest { conn_id, xid: header.xid, err: ErrorCode::MarshallingError, close: false },
    })
}
