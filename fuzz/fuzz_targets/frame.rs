//! The client frame codec (protocol/src/frame.rs): arbitrary bytes, fed in
//! arbitrary chunks, never panic, and every frame respects the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::FrameCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    // First byte: the chunk size the socket delivers (1..=256); the rest is the stream.
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = chunk as usize + 1;
    for max in [64, 1024, protocol::DEFAULT_MAX_FRAME_BYTES] {
        let mut codec = FrameCodec::new(max);
        let mut buf = BytesMut::new();
        let mut body = 0;
        'stream: for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        assert!(frame.len() <= max);
                        body += 4 + frame.len();
                    }
                    Ok(None) => break,
                    Err(_) => break 'stream,
                }
            }
        }
        assert!(body <= stream.len());
    }
});
