//! Property tests for the pure encodings: names must round-trip, sort in
//! delivery order as plain strings where the layout relies on that, and
//! envelopes must decode to what was encoded.

use std::cmp::Ordering;

use corral_queue::codec::*;
use proptest::prelude::*;

fn prio() -> impl Strategy<Value = u16> {
    0..=MAX_PRIORITY
}

proptest! {
    // Integration-test files have no lib.rs beside them for proptest's
    // default regression file; failures print their minimal input instead.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn native_names_roundtrip(p in prio(), seq in any::<u64>(), bucket in any::<u64>()) {
        prop_assert_eq!(parse_lane(&lane_name(p)), Some(p));
        prop_assert_eq!(parse_bucket(&bucket_name(bucket)), Some(bucket));
        prop_assert_eq!(parse_item(&item_name(seq)), Some(seq));
        let id = MsgId { priority: p, seq };
        prop_assert_eq!(MsgId::parse(&id.name()), Some(id));
    }

    /// Consumers and the DLQ listing sort names as strings; that must agree
    /// with (priority, sequence) order.
    #[test]
    fn native_string_order_is_delivery_order(a in (prio(), any::<u64>()), b in (prio(), any::<u64>())) {
        let (ia, ib) = (MsgId { priority: a.0, seq: a.1 }, MsgId { priority: b.0, seq: b.1 });
        prop_assert_eq!(ia.name().cmp(&ib.name()), ia.cmp(&ib));
        prop_assert_eq!(lane_name(a.0).cmp(&lane_name(b.0)), a.0.cmp(&b.0));
        prop_assert_eq!(item_name(a.1).cmp(&item_name(b.1)), a.1.cmp(&b.1));
        prop_assert_eq!(bucket_name(a.1).cmp(&bucket_name(b.1)), a.1.cmp(&b.1));
    }

    #[test]
    fn buckets_partition_sequences(seq in 0u64..u64::MAX / 2, size in 1u64..100_000) {
        let b = bucket_of(seq, size);
        prop_assert!(seq < bucket_end(b, size));
        prop_assert!(b == 0 || seq >= bucket_end(b - 1, size));
        // Monotone: a later sequence never lands in an earlier bucket.
        prop_assert!(bucket_of(seq + 1, size) >= b);
    }

    #[test]
    fn key_encoding_is_injective_and_znode_safe(a in ".{0,40}", b in ".{0,40}") {
        let (na, nb) = (key_node_name(&a), key_node_name(&b));
        prop_assert!(!na.contains('/') && na != "." && na != ".." && !na.is_empty());
        prop_assert_eq!(parse_key_node_name(&na), Some(a.clone()));
        prop_assert_eq!(na == nb, a == b);
        prop_assert!(key_shard(&a) < KEY_SHARDS);
    }

    #[test]
    fn item_envelope_roundtrip(enq in any::<u64>(), nonce in any::<u64>(), nb in any::<u64>(), att in any::<u32>(), p in prio(),
                               key in proptest::option::of(".{0,30}"), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let h = ItemHeader { enqueued_ms: enq, nonce, not_before_ms: nb, attempts: att, priority: p, key: key.clone(), blob: None };
        let data = encode_item(&h, &payload);
        prop_assert_eq!(data.len(), item_overhead(key.as_deref()) + payload.len());
        let (h2, p2) = decode_item(&data).unwrap();
        prop_assert_eq!(h2, h);
        prop_assert_eq!(p2, &payload[..]);
    }

    #[test]
    fn blob_items_roundtrip_and_never_carry_the_payload(att in any::<u32>(), p in prio(), key in proptest::option::of(".{0,30}"),
                                                         blob_key in ".{1,200}", size in any::<u64>(), sha in any::<[u8; 32]>(),
                                                         payload in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..400) {
        let r = BlobRef { key: blob_key.clone(), size, sha256: sha };
        let h = ItemHeader { enqueued_ms: 1, nonce: 2, not_before_ms: 3, attempts: att, priority: p, key: key.clone(), blob: Some(r) };
        let data = encode_item(&h, &payload);
        prop_assert_eq!(data.len(), item_overhead(key.as_deref()) + blob_ref_len(blob_key.len()));
        let (h2, stored) = decode_item(&data).unwrap();
        prop_assert!(stored.is_empty());
        prop_assert_eq!(h2.payload_size(stored), size);
        prop_assert_eq!(h2, h);
        // Any truncation is an error, never a shorter key or a payload.
        if cut < data.len() {
            prop_assert!(decode_item(&data[..cut]).is_err());
        }
    }

    #[test]
    fn truncated_items_are_rejected_not_misread(payload in proptest::collection::vec(any::<u8>(), 0..50), cut in 0usize..40) {
        let h = ItemHeader { enqueued_ms: 1, nonce: 9, not_before_ms: 2, attempts: 3, priority: 4, key: Some("k".into()), blob: None };
        let data = encode_item(&h, &payload);
        prop_assert!(decode_item(&data[..cut.min(data.len())]).is_err() || cut >= item_overhead(Some("k")));
    }

    #[test]
    fn counters_and_claims_roundtrip(i in any::<u64>(), b in any::<u64>(), r in any::<u64>(), d in any::<u64>(), last in any::<u64>(),
                                     lease in any::<u64>(), token in any::<i32>(), who in "[a-z0-9 -]{0,20}") {
        let c = Counter { items: i, bytes: b, redeliveries: r, dead: d, last_put: last };
        prop_assert_eq!(Counter::decode(&c.encode()).unwrap(), c);
        // What a reader that knows four fields makes of it.
        let four: Vec<u64> = String::from_utf8(c.encode()).unwrap().split(' ').take(4).map(|x| x.parse().unwrap()).collect();
        prop_assert_eq!(four, vec![i, b, r, d]);
        let cl = ClaimData { lease_until_ms: lease, token, consumer: who };
        prop_assert_eq!(decode_claim(&encode_claim(&cl)).unwrap(), cl);
    }

    /// Admission never lets depth exceed the bound, whatever the staleness of
    /// the deq total (stale = smaller than the true value).
    #[test]
    fn admission_never_overshoots(enq in 0u64..1000, true_deq in 0u64..1000, lag in 0u64..1000,
                                  add in 1u64..50, max in 0u64..1000) {
        prop_assume!(true_deq <= enq);
        let stale = true_deq.saturating_sub(lag);
        let e = Counter { items: enq, bytes: enq, ..Counter::default() };
        let d = Counter { items: stale, bytes: stale, ..Counter::default() };
        if admits(&e, &d, add, add, Some(max), None) {
            prop_assert!(enq - true_deq + add <= max);
        }
        if admits(&e, &d, add, add, None, Some(max)) {
            prop_assert!(enq - true_deq + add <= max);
        }
    }

    #[test]
    fn kazoo_names_roundtrip_and_order(pa in prio(), pb in prio(), sa in any::<i32>(), sb in any::<i32>()) {
        let (a, b) = (kazoo_entry_name(pa, sa), kazoo_entry_name(pb, sb));
        prop_assert_eq!(parse_kazoo_entry(&a), Some((pa, sa)));
        let expect = pa.cmp(&pb).then((sa as u32).cmp(&(sb as u32)));
        prop_assert_eq!(kazoo_order(&a, &b), expect);
        // Before the counter wraps, kazoo's plain string sort agrees with us.
        if sa >= 0 && sb >= 0 {
            prop_assert_eq!(a.cmp(&b), expect);
        }
    }

    /// Curator DistributedPriorityQueue names: ours parse back, order by
    /// (signed priority, sequence), and agree with the plain string sort
    /// Curator itself uses until the sequence wraps.
    #[test]
    fn curator_priority_names_roundtrip_and_order(pa in any::<i32>(), pb in any::<i32>(), sa in any::<i32>(), sb in any::<i32>()) {
        let a = format!("{}{}", curator_priority_prefix(pa), format_zk_seq(sa));
        let b = format!("{}{}", curator_priority_prefix(pb), format_zk_seq(sb));
        prop_assert_eq!(parse_curator_priority_item(&a), Some((pa, sa)));
        prop_assert_eq!(parse_curator_item(&a), None);
        let expect = pa.cmp(&pb).then((sa as u32).cmp(&(sb as u32)));
        prop_assert_eq!(curator_order(&a, &b), expect);
        if sa >= 0 && sb >= 0 {
            prop_assert_eq!(a.cmp(&b), expect);
        }
    }

    /// Sequence wrap: ZooKeeper's counter goes 2147483647 -> -2147483648; the
    /// wrapped names must sort after the pre-wrap ones.
    #[test]
    fn zk_sequence_wrap_orders_after(before in 0i32..=i32::MAX, after in i32::MIN..0) {
        prop_assert_eq!(zk_seq_order(before, after), Ordering::Less);
        let (a, b) = (format!("queue-{}", format_zk_seq(before)), format!("queue-{}", format_zk_seq(after)));
        prop_assert_eq!(parse_curator_item(&b), Some(after));
        prop_assert_eq!(curator_order(&a, &b), Ordering::Less);
        prop_assert_eq!(kazoo_order(&kazoo_entry_name(7, before), &kazoo_entry_name(7, after)), Ordering::Less);
    }

    #[test]
    fn curator_envelope_roundtrip(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..6)) {
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        let data = encode_curator(&refs);
        prop_assert_eq!(&data[..4], &[0, 1, 0, 1]);
        prop_assert_eq!(*data.last().unwrap(), 2u8);
        prop_assert_eq!(decode_curator(&data).unwrap(), items);
    }

    #[test]
    fn curator_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_curator(&data);
        let _ = decode_item(&data);
        let _ = Meta::decode(&data);
    }

    #[test]
    fn chunks_cover_in_order_within_budget(sizes in proptest::collection::vec(1usize..500, 0..200), budget in 500usize..3000, max in 1usize..50) {
        let chunks = chunk_by_budget(&sizes, budget, max);
        let mut next = 0;
        for c in &chunks {
            prop_assert_eq!(c.start, next);
            prop_assert!(c.end > c.start && c.len() <= max);
            prop_assert!(sizes[c.clone()].iter().sum::<usize>() <= budget);
            next = c.end;
        }
        prop_assert_eq!(next, sizes.len());
    }

    #[test]
    fn meta_roundtrip(mi in proptest::option::of(any::<u64>()), mb in proptest::option::of(any::<u64>()), att in any::<u32>(),
                      bs in 1u64..1_000_000, lease in any::<u64>(), shards in 1u32..256, enq in proptest::option::of(1u32..=256)) {
        let alloc = enq.map_or(Alloc::Counter, |shards| Alloc::Sealed { shards });
        let m = Meta { max_items: mi, max_bytes: mb, max_attempts: att, bucket_size: bs, lease_ms: lease, deq_shards: shards, alloc };
        prop_assert_eq!(Meta::decode(&m.encode()).unwrap(), m);
    }

    /// A sealed queue's sequence numbers order by (bucket, server suffix),
    /// and its item names round-trip.
    #[test]
    fn sealed_seq_orders_by_bucket_then_suffix(b1 in 0u64..1 << 31, s1 in 0u32..i32::MAX as u32, b2 in 0u64..1 << 31, s2 in 0u32..i32::MAX as u32) {
        let (a, b) = (sealed_seq(b1, s1), sealed_seq(b2, s2));
        prop_assert_eq!(a.cmp(&b), (b1, s1).cmp(&(b2, s2)));
        prop_assert_eq!(sealed_parts(a), (b1, s1));
        prop_assert_eq!(parse_sealed_item(&sealed_item_name(s1)), Some(s1));
    }
}
