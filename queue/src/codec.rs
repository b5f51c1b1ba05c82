//! Pure encodings: znode names, ordering, bucket math and data envelopes for
//! every layout. Nothing here does I/O or reads a clock, so proptest can cover
//! all of it (see `tests/proptest_codec.rs`).

use std::cmp::Ordering;

/// Lowest priority value a message may carry; lower values are delivered first
/// (the kazoo convention, which the interop layout has to follow anyway).
pub const MAX_PRIORITY: u16 = 999;
pub const DEFAULT_PRIORITY: u16 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

fn derr<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

// ---------------------------------------------------------------------------
// Native layout names
// ---------------------------------------------------------------------------

/// Lane directory name for a priority: `p100`. Three digits keep lexicographic
/// and numeric order identical.
pub fn lane_name(priority: u16) -> String {
    format!("p{priority:03}")
}

pub fn parse_lane(name: &str) -> Option<u16> {
    let digits = name.strip_prefix('p')?;
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u16 = digits.parse().ok()?;
    (p <= MAX_PRIORITY).then_some(p)
}

/// Bucket directory name. Twenty digits cover all of u64, so names sort
/// numerically without parsing.
pub fn bucket_name(bucket: u64) -> String {
    format!("b{bucket:020}")
}

pub fn parse_bucket(name: &str) -> Option<u64> {
    parse_fixed_u64(name.strip_prefix('b')?)
}

/// Item name inside a bucket: the global sequence number.
pub fn item_name(seq: u64) -> String {
    format!("{seq:020}")
}

pub fn parse_item(name: &str) -> Option<u64> {
    parse_fixed_u64(name)
}

fn parse_fixed_u64(s: &str) -> Option<u64> {
    if s.len() != 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Item name inside a bucket of a queue with sealed buckets: what the server
/// appends to the sequential create of `s` (`%010d` of the parent's counter).
pub fn sealed_item_name(suffix: u32) -> String {
    format!("s{suffix:010}")
}

pub fn parse_sealed_item(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('s')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A message's sequence number in a queue with sealed buckets: the bucket in
/// the high 32 bits, the server-assigned suffix in the low. Numeric order is
/// the order the server created the items in (see `Alloc::Sealed`).
pub fn sealed_seq(bucket: u64, suffix: u32) -> u64 {
    (bucket << 32) | u64::from(suffix)
}

pub fn sealed_parts(seq: u64) -> (u64, u32) {
    (seq >> 32, seq as u32)
}

/// Which bucket a sequence number falls into.
pub fn bucket_of(seq: u64, bucket_size: u64) -> u64 {
    seq / bucket_size.max(1)
}

/// First sequence number that is *not* in `bucket`. A bucket may be removed
/// once every sequence below this bound has been allocated: sequence numbers are
/// allocated in the same transaction that creates the item, so no later put
/// can ever target it again.
pub fn bucket_end(bucket: u64, bucket_size: u64) -> u64 {
    bucket.saturating_add(1).saturating_mul(bucket_size.max(1))
}

/// Identity of a native message, also the name of its claim and DLQ nodes:
/// `100-00000000000000000042`. Priority first so that a sorted DLQ listing is
/// in delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    pub priority: u16,
    pub seq: u64,
}

impl MsgId {
    pub fn name(&self) -> String {
        format!("{:03}-{:020}", self.priority, self.seq)
    }

    pub fn parse(name: &str) -> Option<MsgId> {
        let (p, s) = name.split_once('-')?;
        if p.len() != 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let priority: u16 = p.parse().ok()?;
        if priority > MAX_PRIORITY {
            return None;
        }
        Some(MsgId { priority, seq: parse_fixed_u64(s)? })
    }
}

impl std::fmt::Display for MsgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Number of directories idempotency keys are spread over, so that purging
/// never lists one huge directory.
pub const KEY_SHARDS: u32 = 64;

/// Znode-safe, injective encoding of an idempotency key: `k` + percent
/// encoding of everything outside `[A-Za-z0-9_-]`. The `k` prefix keeps `.`
/// and `..` (invalid znode names) from ever being produced.
pub fn key_node_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 1);
    out.push('k');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn parse_key_node_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix('k')?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = rest.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// FNV-1a; stable across processes and versions, unlike std's hasher.
pub fn key_shard(key: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in key.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h % KEY_SHARDS
}

pub fn key_shard_name(shard: u32) -> String {
    format!("s{shard:02}")
}

// ---------------------------------------------------------------------------
// Native item envelope
// ---------------------------------------------------------------------------

const ITEM_MAGIC: &[u8; 3] = b"CQ1";
/// An item whose payload lives in a blob store: the same header, then a
/// [`BlobRef`] instead of the payload. Readers older than the claim-check
/// see an unknown magic and skip the item rather than deliver the reference
/// as if it were the payload.
const BLOB_ITEM_MAGIC: &[u8; 3] = b"CQ2";

/// Metadata stored in front of the payload of every native item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemHeader {
    /// Producer's wall clock at put time (ms since the Unix epoch).
    pub enqueued_ms: u64,
    /// Random per put request: lets a producer whose reply was lost tell its
    /// own items from another producer's.
    pub nonce: u64,
    /// Not deliverable before this wall-clock time (ms); 0 = immediately.
    pub not_before_ms: u64,
    /// Completed deliveries so far (incremented by each claim).
    pub attempts: u32,
    pub priority: u16,
    pub key: Option<String>,
    /// Claim-check: the payload is in a blob store, this says where.
    pub blob: Option<BlobRef>,
}

impl ItemHeader {
    /// Payload bytes the message carries, wherever they are stored: what the
    /// queue's byte counters and `max_bytes` count. `stored` is the payload
    /// found in the item (empty for a blob item).
    pub fn payload_size(&self, stored: &[u8]) -> u64 {
        self.blob.as_ref().map_or(stored.len() as u64, |b| b.size)
    }
}

/// Where a large payload went (claim-check): its key in the blob store, its
/// size and its SHA-256, checked on every read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub key: String,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Blob ids are 128 random bits in lowercase hex; only blobs named like this
/// are ever considered by the sweeper.
pub const BLOB_ID_LEN: usize = 32;

pub fn is_blob_id(s: &str) -> bool {
    s.len() == BLOB_ID_LEN && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobRef {
    /// The blob's id: the last component of its key (`PREFIX/.../ID`), which
    /// also names its reference node `P/blobs/ID`. `None` for a key not made
    /// by this library.
    pub fn id(&self) -> Option<&str> {
        let last = self.key.rsplit('/').next()?;
        is_blob_id(last).then_some(last)
    }

    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encoded reference: size (u64), SHA-256 (32 bytes), key length (u16), key.
pub fn encode_blob_ref(r: &BlobRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.size.to_be_bytes());
    out.extend_from_slice(&r.sha256);
    out.extend_from_slice(&(r.key.len() as u16).to_be_bytes());
    out.extend_from_slice(r.key.as_bytes());
}

pub fn decode_blob_ref(data: &[u8]) -> Result<BlobRef, DecodeError> {
    if data.len() < 8 + 32 + 2 {
        return derr("truncated blob reference");
    }
    let size = u64::from_be_bytes(data[..8].try_into().unwrap());
    let sha256: [u8; 32] = data[8..40].try_into().unwrap();
    let klen = u16::from_be_bytes(data[40..42].try_into().unwrap()) as usize;
    let rest = &data[42..];
    if rest.len() != klen {
        return derr(if rest.len() < klen { "truncated blob key" } else { "trailing bytes after blob reference" });
    }
    let key = std::str::from_utf8(rest).map_err(|_| DecodeError("blob key is not UTF-8".into()))?;
    if key.is_empty() {
        return derr("empty blob key");
    }
    Ok(BlobRef { key: key.to_string(), size, sha256 })
}

/// Bytes a blob reference takes in an item (request size budgeting).
pub fn blob_ref_len(key_len: usize) -> usize {
    8 + 32 + 2 + key_len
}

/// Encodes an item. For a blob item (`h.blob` set) the reference is stored
/// instead of the payload and `payload` is ignored: the payload lives in the
/// blob store, whatever the caller holds in memory.
pub fn encode_item(h: &ItemHeader, payload: &[u8]) -> Vec<u8> {
    let key = h.key.as_deref().unwrap_or("").as_bytes();
    let body = if h.blob.is_some() { 0 } else { payload.len() };
    let mut out = Vec::with_capacity(item_overhead(h.key.as_deref()) + body + h.blob.as_ref().map_or(0, |b| blob_ref_len(b.key.len())));
    out.extend_from_slice(if h.blob.is_some() { BLOB_ITEM_MAGIC } else { ITEM_MAGIC });
    out.extend_from_slice(&h.enqueued_ms.to_be_bytes());
    out.extend_from_slice(&h.nonce.to_be_bytes());
    out.extend_from_slice(&h.not_before_ms.to_be_bytes());
    out.extend_from_slice(&h.attempts.to_be_bytes());
    out.extend_from_slice(&h.priority.to_be_bytes());
    out.push(h.key.is_some() as u8);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    match &h.blob {
        Some(r) => encode_blob_ref(r, &mut out),
        None => out.extend_from_slice(payload),
    }
    out
}

/// Bytes the envelope adds to a payload (used for request size budgeting).
pub fn item_overhead(key: Option<&str>) -> usize {
    3 + 8 + 8 + 8 + 4 + 2 + 1 + 2 + key.map_or(0, str::len)
}

/// Decodes an item into its header and the payload stored in it (empty for a
/// blob item, whose reference is in `header.blob`).
pub fn decode_item(data: &[u8]) -> Result<(ItemHeader, &[u8]), DecodeError> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
        if buf.len() < n {
            return derr("truncated item header");
        }
        let (a, b) = buf.split_at(n);
        *buf = b;
        Ok(a)
    }
    let mut buf = data;
    let is_blob = match take(&mut buf, 3)? {
        m if m == ITEM_MAGIC => false,
        m if m == BLOB_ITEM_MAGIC => true,
        _ => return derr("not a corral-queue item (bad magic)"),
    };
    let enqueued_ms = u64::from_be_bytes(take(&mut buf, 8)?.try_into().unwrap());
    let nonce = u64::from_be_bytes(take(&mut buf, 8)?.try_into().unwrap());
    let not_before_ms = u64::from_be_bytes(take(&mut buf, 8)?.try_into().unwrap());
    let attempts = u32::from_be_bytes(take(&mut buf, 4)?.try_into().unwrap());
    let priority = u16::from_be_bytes(take(&mut buf, 2)?.try_into().unwrap());
    let has_key = take(&mut buf, 1)?[0];
    let klen = u16::from_be_bytes(take(&mut buf, 2)?.try_into().unwrap()) as usize;
    let key_bytes = take(&mut buf, klen)?;
    let key = match has_key {
        0 => None,
        1 => Some(String::from_utf8(key_bytes.to_vec()).map_err(|_| DecodeError("key is not UTF-8".into()))?),
        _ => return derr("bad key flag"),
    };
    if is_blob {
        let blob = Some(decode_blob_ref(buf)?);
        return Ok((ItemHeader { enqueued_ms, nonce, not_before_ms, attempts, priority, key, blob }, &[]));
    }
    Ok((ItemHeader { enqueued_ms, nonce, not_before_ms, attempts, priority, key, blob: None }, buf))
}

/// Claim node data: who holds the message, until when, and under which token
/// (the item version the claim produced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimData {
    pub lease_until_ms: u64,
    pub token: i32,
    pub consumer: String,
}

pub fn encode_claim(c: &ClaimData) -> Vec<u8> {
    format!("{} {} {}", c.lease_until_ms, c.token, c.consumer).into_bytes()
}

pub fn decode_claim(data: &[u8]) -> Result<ClaimData, DecodeError> {
    let s = std::str::from_utf8(data).map_err(|_| DecodeError("claim is not UTF-8".into()))?;
    let mut it = s.splitn(3, ' ');
    let lease = it.next().and_then(|x| x.parse().ok());
    let token = it.next().and_then(|x| x.parse().ok());
    match (lease, token) {
        (Some(lease_until_ms), Some(token)) => {
            Ok(ClaimData { lease_until_ms, token, consumer: it.next().unwrap_or("").to_string() })
        },
        _ => derr(format!("malformed claim {s:?}")),
    }
}

/// Monotonic totals kept in counter znodes. `enq` holds items/bytes ever
/// enqueued; each `deq` shard holds items/bytes ever removed (acked or
/// dead-lettered), redeliveries and dead-letter count of removed messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub items: u64,
    pub bytes: u64,
    pub redeliveries: u64,
    pub dead: u64,
    /// Enqueue shards only: the nonce of the put that wrote it last, so a
    /// producer whose reply was lost can tell whether its put committed.
    pub last_put: u64,
}

impl Counter {
    pub fn encode(&self) -> Vec<u8> {
        // Readers before `last_put` take the first four fields only.
        if self.last_put != 0 {
            return format!("{} {} {} {} {}", self.items, self.bytes, self.redeliveries, self.dead, self.last_put).into_bytes();
        }
        format!("{} {} {} {}", self.items, self.bytes, self.redeliveries, self.dead).into_bytes()
    }

    pub fn decode(data: &[u8]) -> Result<Counter, DecodeError> {
        let s = std::str::from_utf8(data).map_err(|_| DecodeError("counter is not UTF-8".into()))?;
        let v: Vec<u64> = s.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|_| DecodeError(format!("malformed counter {s:?}")))?;
        if v.len() < 2 {
            return derr(format!("malformed counter {s:?}"));
        }
        Ok(Counter { items: v[0], bytes: v[1], redeliveries: v.get(2).copied().unwrap_or(0), dead: v.get(3).copied().unwrap_or(0), last_put: v.get(4).copied().unwrap_or(0) })
    }

    pub fn add(&mut self, o: &Counter) {
        self.items += o.items;
        self.bytes += o.bytes;
        self.redeliveries += o.redeliveries;
        self.dead += o.dead;
    }
}

/// Whether adding `add_items`/`add_bytes` keeps the queue within bounds, given
/// `enq` (exact, version-checked at commit) and a possibly stale `deq` sum.
/// A stale `deq` is never larger than the true one, so the computed depth is an
/// upper bound and admission can never overshoot.
pub fn admits(enq: &Counter, deq: &Counter, add_items: u64, add_bytes: u64, max_items: Option<u64>, max_bytes: Option<u64>) -> bool {
    let items = enq.items.saturating_sub(deq.items);
    let bytes = enq.bytes.saturating_sub(deq.bytes);
    max_items.is_none_or(|m| items + add_items <= m) && max_bytes.is_none_or(|m| bytes + add_bytes <= m)
}

/// How a native queue orders its items and counts what was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alloc {
    /// `Sealed` for an unbounded queue, `Counter` for a bounded one (what
    /// `NativeQueue::create` stores; never stored itself).
    Auto,
    /// Layout native-v1: one counter `P/enq` holds the totals and the next
    /// sequence number, and every put is conditioned on its version. Exact
    /// bounds need that (a put must see every other put to know there is
    /// room), but producers on different sessions then take turns.
    Counter,
    /// Layout native-v2, unbounded queues: the server names items
    /// (sequential creates in the lane's open bucket), so producers never
    /// conflict over a sequence number. A full bucket is sealed (its data
    /// version goes 0 → 1) after the next one is created, and every put
    /// checks that its bucket is still at version 0, so no item can enter a
    /// bucket after any item of a later one: (bucket, suffix) order is
    /// commit order. Totals are kept in `shards` counters; a producer
    /// sticks to one, so producers rarely conflict there either.
    Sealed { shards: u32 },
}

/// Enqueue counter shards of a new unbounded queue.
pub const ENQ_SHARDS: u32 = 64;

/// Queue configuration as stored in `P/meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub max_items: Option<u64>,
    pub max_bytes: Option<u64>,
    /// Deliveries after which a message is dead-lettered instead; 0 = never.
    pub max_attempts: u32,
    pub bucket_size: u64,
    pub lease_ms: u64,
    pub deq_shards: u32,
    pub alloc: Alloc,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { max_items: None, max_bytes: None, max_attempts: 5, bucket_size: 1000, lease_ms: 30_000, deq_shards: 16, alloc: Alloc::Auto }
    }
}

impl Meta {
    /// The allocation `create` stores for these options.
    pub fn resolved(&self) -> Meta {
        let alloc = match self.alloc {
            Alloc::Auto if self.max_items.is_none() && self.max_bytes.is_none() => Alloc::Sealed { shards: ENQ_SHARDS },
            Alloc::Auto => Alloc::Counter,
            a => a,
        };
        Meta { alloc, ..self.clone() }
    }

    pub fn encode(&self) -> Vec<u8> {
        let opt = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
        // A v1 reader refuses a v2 meta (its layout line), rather than
        // putting into a queue whose items it would misname.
        let (layout, extra) = match self.alloc {
            Alloc::Sealed { shards } => ("native-v2", format!("enq_shards={shards}\n")),
            _ => ("native-v1", String::new()),
        };
        format!(
            "layout={layout}\nmax_items={}\nmax_bytes={}\nmax_attempts={}\nbucket_size={}\nlease_ms={}\ndeq_shards={}\n{extra}",
            opt(self.max_items),
            opt(self.max_bytes),
            self.max_attempts,
            self.bucket_size,
            self.lease_ms,
            self.deq_shards
        )
        .into_bytes()
    }

    pub fn decode(data: &[u8]) -> Result<Meta, DecodeError> {
        let s = std::str::from_utf8(data).map_err(|_| DecodeError("meta is not UTF-8".into()))?;
        let mut m = Meta { alloc: Alloc::Counter, ..Meta::default() };
        let mut layout = None;
        let mut enq_shards = None;
        for line in s.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let num = |v: &str| v.parse::<u64>().map_err(|_| DecodeError(format!("bad {k} value {v:?}")));
            let opt = |v: &str| if v == "none" { Ok(None) } else { num(v).map(Some) };
            match k {
                "layout" => layout = Some(v.to_string()),
                "enq_shards" => enq_shards = Some((num(v)? as u32).clamp(1, 256)),
                "max_items" => m.max_items = opt(v)?,
                "max_bytes" => m.max_bytes = opt(v)?,
                "max_attempts" => m.max_attempts = num(v)? as u32,
                "bucket_size" => m.bucket_size = num(v)?.max(1),
                "lease_ms" => m.lease_ms = num(v)?,
                "deq_shards" => m.deq_shards = (num(v)? as u32).max(1),
                _ => {},
            }
        }
        match layout.as_deref() {
            Some("native-v1") => m.alloc = Alloc::Counter,
            Some("native-v2") => m.alloc = Alloc::Sealed { shards: enq_shards.ok_or_else(|| DecodeError("native-v2 meta without enq_shards".into()))? },
            _ => return derr("meta does not describe a native-v1 or native-v2 queue"),
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------------------
// ZooKeeper sequence numbers (kazoo and Curator layouts)
// ---------------------------------------------------------------------------

/// Parses the suffix ZooKeeper appends to sequential nodes. The server formats
/// a signed 32-bit counter with `%010d`, so after 2^31-1 creations it wraps to
/// `-2147483648` (11 characters).
pub fn parse_zk_seq(s: &str) -> Option<i32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !s.starts_with('-') && s.len() != 10 {
        return None;
    }
    s.parse().ok()
}

pub fn format_zk_seq(seq: i32) -> String {
    format!("{seq:010}")
}

/// Creation order of two ZooKeeper sequence numbers, treating the counter as
/// unsigned 32-bit so that wrapped (negative) values sort after 2^31-1. A full
/// 2^32 wrap is indistinguishable and not handled.
pub fn zk_seq_order(a: i32, b: i32) -> Ordering {
    (a as u32).cmp(&(b as u32))
}

// ---------------------------------------------------------------------------
// kazoo LockingQueue layout
// ---------------------------------------------------------------------------

/// `entry-100-0000000042`: what kazoo's LockingQueue.put creates (the server
/// appends the sequence to the `entry-100-` prefix).
pub fn kazoo_entry_prefix(priority: u16) -> String {
    format!("entry-{priority:03}-")
}

pub fn kazoo_entry_name(priority: u16, seq: i32) -> String {
    format!("{}{}", kazoo_entry_prefix(priority), format_zk_seq(seq))
}

pub fn parse_kazoo_entry(name: &str) -> Option<(u16, i32)> {
    let rest = name.strip_prefix("entry-")?;
    let (p, s) = rest.split_once('-').map(|(p, _)| (p, &rest[p.len() + 1..]))?;
    if p.len() != 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((p.parse().ok()?, parse_zk_seq(s)?))
}

/// Delivery order of kazoo entries: priority, then creation order. kazoo itself
/// sorts names as strings, which agrees except after a sequence wrap.
pub fn kazoo_order(a: &str, b: &str) -> Ordering {
    match (parse_kazoo_entry(a), parse_kazoo_entry(b)) {
        (Some((pa, sa)), Some((pb, sb))) => pa.cmp(&pb).then(zk_seq_order(sa, sb)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

// ---------------------------------------------------------------------------
// Curator DistributedQueue layout
// ---------------------------------------------------------------------------

pub const CURATOR_PREFIX: &str = "queue-";
const CURATOR_VERSION: i32 = 0x0001_0001;
const CURATOR_ITEM: u8 = 0x01;
const CURATOR_EOF: u8 = 0x02;

pub fn parse_curator_item(name: &str) -> Option<i32> {
    parse_zk_seq(name.strip_prefix(CURATOR_PREFIX)?)
}

/// Curator `DistributedPriorityQueue` item: `queue-` then the priority as
/// `1`/`0` (non-negative/negative) and 8 hex digits of its two's complement,
/// then the sequence. Returns (priority, sequence).
pub fn parse_curator_priority_item(name: &str) -> Option<(i32, i32)> {
    let rest = name.strip_prefix(CURATOR_PREFIX)?;
    // The sequence is ZooKeeper's %010d: 10 characters, 11 once it wraps
    // negative; parse_zk_seq checks it.
    if rest.len() < 19 || !rest.is_char_boundary(9) {
        return None;
    }
    let (sign, hex) = (&rest[..1], &rest[1..9]);
    if !hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        return None;
    }
    let priority = u32::from_str_radix(hex, 16).ok()? as i32;
    if (sign == "1") != (priority >= 0) || !(sign == "0" || sign == "1") {
        return None;
    }
    Some((priority, parse_zk_seq(&rest[9..])?))
}

/// Curator's `priorityToString`: the name part before the sequence.
pub fn curator_priority_prefix(priority: i32) -> String {
    format!("{CURATOR_PREFIX}{}{:08X}", if priority >= 0 { "1" } else { "0" }, priority as u32)
}

/// Delivery order of Curator items: Curator sorts names as strings, which is
/// (priority, sequence) for priority items; we agree except after a sequence
/// wrap, which we order by creation like the other layouts.
pub fn curator_order(a: &str, b: &str) -> Ordering {
    if let (Some((pa, sa)), Some((pb, sb))) = (parse_curator_priority_item(a), parse_curator_priority_item(b)) {
        return pa.cmp(&pb).then(zk_seq_order(sa, sb));
    }
    match (parse_curator_item(a), parse_curator_item(b)) {
        (Some(sa), Some(sb)) => zk_seq_order(sa, sb),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Curator's `ItemSerializer` envelope: big-endian int version 0x00010001,
/// then per item the byte 0x01, a big-endian int length and the bytes, then
/// the byte 0x02. Item bytes are whatever the Java side's `QueueSerializer`
/// produced; we treat them as opaque.
pub fn encode_curator(items: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + items.iter().map(|i| 5 + i.len()).sum::<usize>());
    out.extend_from_slice(&CURATOR_VERSION.to_be_bytes());
    for item in items {
        out.push(CURATOR_ITEM);
        out.extend_from_slice(&(item.len() as i32).to_be_bytes());
        out.extend_from_slice(item);
    }
    out.push(CURATOR_EOF);
    out
}

pub fn decode_curator(data: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    if data.len() < 5 {
        return derr("curator envelope too short");
    }
    let version = i32::from_be_bytes(data[..4].try_into().unwrap());
    if version != CURATOR_VERSION {
        return derr(format!("unknown curator envelope version {version:#x}"));
    }
    let mut items = Vec::new();
    let mut buf = &data[4..];
    loop {
        let Some((&op, rest)) = buf.split_first() else { return derr("curator envelope lacks EOF") };
        buf = rest;
        match op {
            CURATOR_EOF => break,
            CURATOR_ITEM => {
                if buf.len() < 4 {
                    return derr("truncated curator item length");
                }
                let len = i32::from_be_bytes(buf[..4].try_into().unwrap());
                buf = &buf[4..];
                if len < 0 || buf.len() < len as usize {
                    return derr("truncated curator item");
                }
                items.push(buf[..len as usize].to_vec());
                buf = &buf[len as usize..];
            },
            other => return derr(format!("unknown curator opcode {other:#x}")),
        }
    }
    if !buf.is_empty() {
        return derr("trailing bytes after curator EOF");
    }
    Ok(items)
}

// ---------------------------------------------------------------------------
// Request size budgeting
// ---------------------------------------------------------------------------

/// Bytes of item data a consumer asks for in one multi-read (an estimate:
/// items are sized by the largest one seen; a reply may exceed it once).
pub const READ_BUDGET: usize = 256 * 1024;

/// ZooKeeper's default `jute.maxbuffer` is 0xfffff bytes; requests above it
/// are rejected and the connection is dropped. We stay well under it.
pub const JUTE_MAX_BUFFER: usize = 0xfffff;
pub const REQUEST_BUDGET: usize = 768 * 1024;
/// Per-operation framing in a multi request (headers, path length, ACL).
pub const OP_OVERHEAD: usize = 64;

/// Splits `sizes` (estimated bytes per item, each already including its
/// framing) into consecutive chunks whose sums stay within `budget` and whose
/// lengths stay within `max_items`. An item larger than the budget gets a chunk
/// of its own (the caller rejects it separately).
pub fn chunk_by_budget(sizes: &[usize], budget: usize, max_items: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = 0;
    for (i, &s) in sizes.iter().enumerate() {
        if i > start && (sum + s > budget || i - start >= max_items) {
            out.push(start..i);
            start = i;
            sum = 0;
        }
        sum += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Validates a queue path: absolute, no trailing slash, no empty, `.` or `..`
/// components, not the root, and not under `/zookeeper`.
pub fn validate_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if path == "/" {
        return Err("the root cannot be a queue".into());
    }
    if path.ends_with('/') {
        return Err("must not end with '/'".into());
    }
    for comp in path[1..].split('/') {
        if comp.is_empty() {
            return Err("empty path component".into());
        }
        if comp == "." || comp == ".." {
            return Err("'.' and '..' are not allowed".into());
        }
        if comp.chars().any(|c| c == '\0' || c.is_control()) {
            return Err("control characters are not allowed".into());
        }
    }
    if path == "/zookeeper" || path.starts_with("/zookeeper/") {
        return Err("/zookeeper is reserved".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curator_envelope_is_byte_exact() {
        // "hi" serialized by ItemSerializer with a byte-array QueueSerializer.
        let expect = [0x00, 0x01, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x02, b'h', b'i', 0x02];
        assert_eq!(encode_curator(&[b"hi"]), expect);
        assert_eq!(decode_curator(&expect).unwrap(), vec![b"hi".to_vec()]);
    }

    fn blob_header(key: &str) -> ItemHeader {
        let r = BlobRef { key: key.into(), size: 2 << 20, sha256: std::array::from_fn(|i| i as u8 * 7) };
        ItemHeader { enqueued_ms: 5, nonce: 6, not_before_ms: 7, attempts: 2, priority: 3, key: Some("k".into()), blob: Some(r) }
    }

    #[test]
    fn blob_reference_roundtrips_and_ignores_the_payload() {
        let h = blob_header("blobs/q/jobs/ab/ab0123456789abcdef0123456789abcd");
        let data = encode_item(&h, b"the payload lives elsewhere");
        assert_eq!(&data[..3], b"CQ2");
        assert_eq!(data.len(), item_overhead(Some("k")) + blob_ref_len(h.blob.as_ref().unwrap().key.len()));
        let (h2, stored) = decode_item(&data).unwrap();
        assert_eq!(h2, h);
        assert!(stored.is_empty());
        assert_eq!(h2.payload_size(stored), 2 << 20);
        assert_eq!(h2.blob.as_ref().unwrap().id(), Some("ab0123456789abcdef0123456789abcd"));
        // An inline item is unchanged: CQ1, payload after the header.
        let inline = ItemHeader { blob: None, ..h };
        let data = encode_item(&inline, b"xyz");
        assert_eq!(&data[..3], b"CQ1");
        assert_eq!(decode_item(&data).unwrap(), (inline, &b"xyz"[..]));
    }

    #[test]
    fn damaged_blob_references_are_rejected() {
        let data = encode_item(&blob_header("p/0123456789abcdef0123456789abcdef"), b"");
        for cut in 0..data.len() {
            assert!(decode_item(&data[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_item(&longer).is_err());
        let empty_key = encode_item(&blob_header(""), b"");
        assert!(decode_item(&empty_key).is_err());
        // Keys not made by us have no id: the sweeper never touches them.
        assert_eq!(blob_header("p/not-ours").blob.unwrap().id(), None);
        assert_eq!(blob_header("p/0123456789ABCDEF0123456789ABCDEF").blob.unwrap().id(), None);
    }

    #[test]
    fn chunking_respects_budget() {
        let r = chunk_by_budget(&[10, 10, 10, 50, 5], 30, 100);
        assert_eq!(r, vec![0..3, 3..4, 4..5]);
        assert_eq!(chunk_by_budget(&[1; 5], 100, 2), vec![0..2, 2..4, 4..5]);
    }
}
