//! The jute serialization primitives and the `records!` macro.
//!
//! Jute is ZooKeeper's record format: big-endian `int`/`long`, one-byte
//! `boolean`, length-prefixed `ustring`/`buffer`/`vector` where a length of -1
//! means null. Decoding never panics and never allocates more than the input
//! could hold: every length is checked against the bytes that remain first.

use bytes::{Buf, BufMut};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record truncated: needed {needed} more bytes, {remaining} remain")]
    UnexpectedEof { needed: usize, remaining: usize },
    #[error("invalid length {0}")]
    InvalidLength(i32),
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}

/// A value with a jute encoding.
pub trait Jute: Sized {
    /// Appends the encoding of `self` to `buf`.
    fn encode(&self, buf: &mut impl BufMut);
    /// Decodes one value from the front of `buf`, advancing it.
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError>;
    /// The number of bytes `encode` writes.
    fn encoded_len(&self) -> usize;

    /// Encodes into a fresh vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }

    /// Decodes a value that must span all of `bytes`.
    fn from_bytes(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        let v = Self::decode(&mut bytes)?;
        if !bytes.is_empty() {
            return Err(DecodeError::TrailingBytes(bytes.len()));
        }
        Ok(v)
    }
}

fn need(buf: &[u8], n: usize) -> Result<(), DecodeError> {
    if buf.len() < n {
        Err(DecodeError::UnexpectedEof { needed: n, remaining: buf.len() })
    } else {
        Ok(())
    }
}

/// Reads a jute length prefix: `None` for null (-1), an error for other negatives.
fn decode_len(buf: &mut &[u8]) -> Result<Option<usize>, DecodeError> {
    match i32::decode(buf)? {
        -1 => Ok(None),
        n if n < 0 => Err(DecodeError::InvalidLength(n)),
        n => Ok(Some(n as usize)),
    }
}

impl Jute for i32 {
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_i32(*self)
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        need(buf, 4)?;
        Ok(buf.get_i32())
    }
    fn encoded_len(&self) -> usize {
        4
    }
}

impl Jute for i64 {
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_i64(*self)
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        need(buf, 8)?;
        Ok(buf.get_i64())
    }
    fn encoded_len(&self) -> usize {
        8
    }
}

impl Jute for bool {
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(*self as u8)
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        need(buf, 1)?;
        // Java's DataInput.readBoolean: any non-zero byte is true.
        Ok(buf.get_u8() != 0)
    }
    fn encoded_len(&self) -> usize {
        1
    }
}

/// `ustring`. A null string decodes as empty: no ZooKeeper request gives null
/// a meaning distinct from "" for strings.
impl Jute for String {
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_i32(self.len() as i32);
        buf.put_slice(self.as_bytes());
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let Some(len) = decode_len(buf)? else { return Ok(String::new()) };
        need(buf, len)?;
        let s = std::str::from_utf8(&buf[..len]).map_err(|_| DecodeError::InvalidUtf8)?.to_owned();
        buf.advance(len);
        Ok(s)
    }
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
}

/// `buffer` where null and empty are the same (passwords, auth tokens).
impl Jute for Vec<u8> {
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_i32(self.len() as i32);
        buf.put_slice(self);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(Option::<Vec<u8>>::decode(buf)?.unwrap_or_default())
    }
    fn encoded_len(&self) -> usize {
        4 + self.len()
    }
}

/// `buffer` where null is kept distinct (znode data: a Java client may store null).
impl Jute for Option<Vec<u8>> {
    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            None => buf.put_i32(-1),
            Some(v) => v.encode(buf),
        }
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let Some(len) = decode_len(buf)? else { return Ok(None) };
        need(buf, len)?;
        let v = buf[..len].to_vec();
        buf.advance(len);
        Ok(Some(v))
    }
    fn encoded_len(&self) -> usize {
        4 + self.as_ref().map_or(0, |v| v.len())
    }
}

/// Marker for element types of jute `vector`s (a `Vec<u8>` is a `buffer`, not a vector).
pub trait VectorElement: Jute {}
impl VectorElement for String {}

impl<T: VectorElement> Jute for Vec<T> {
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_i32(self.len() as i32);
        for item in self {
            item.encode(buf);
        }
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let Some(count) = decode_len(buf)? else { return Ok(Vec::new()) };
        // Every element takes at least one byte, so a count beyond the
        // remaining bytes is a lie; refuse it before allocating.
        need(buf, count)?;
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            v.push(T::decode(buf)?);
        }
        Ok(v)
    }
    fn encoded_len(&self) -> usize {
        4 + self.iter().map(Jute::encoded_len).sum::<usize>()
    }
}

/// Declares jute records: the struct, its codec, its length and (for tests) a
/// proptest `Arbitrary`. Fields are declared in `zookeeper.jute`'s order, which
/// is the wire order.
#[macro_export]
macro_rules! records {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident { $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),+ $(,)? }
    )*) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty ),+ }

        impl $crate::jute::Jute for $name {
            fn encode(&self, buf: &mut impl ::bytes::BufMut) {
                $( $crate::jute::Jute::encode(&self.$field, buf); )+
            }
            fn decode(buf: &mut &[u8]) -> Result<Self, $crate::jute::DecodeError> {
                Ok($name { $( $field: <$ty as $crate::jute::Jute>::decode(buf)? ),+ })
            }
            fn encoded_len(&self) -> usize {
                0 $( + $crate::jute::Jute::encoded_len(&self.$field) )+
            }
        }

        impl $crate::jute::VectorElement for $name {}

        #[cfg(any(test, feature = "arbitrary"))]
        impl ::proptest::arbitrary::Arbitrary for $name {
            type Parameters = ();
            type Strategy = ::proptest::strategy::BoxedStrategy<Self>;
            fn arbitrary_with(_: ()) -> Self::Strategy {
                use ::proptest::prelude::*;
                ( $( any::<$ty>(), )+ )
                    .prop_map(|( $($field,)+ )| $name { $($field),+ })
                    .boxed()
            }
        }
    )*};
}

