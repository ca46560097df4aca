//! Hostile input for the KPL de-aggregator: arbitrary bytes, arbitrary bytes behind a
//! valid magic and digest (so the protobuf reader is reached), generated protobuf with
//! lying lengths, the checked-in corpus (`tests/corpus/kpl/`), and explicit adversarial
//! cases. Nothing may panic, and nothing may allocate more than in proportion to its input
//! (a varint claiming a 4 GB field allocates nothing).
//!
//! Longer run: `PROPTEST_CASES=100000 cargo test --release -p streamwatch-core --test hostile_kpl`.

mod common;

use common::{bounded, cases, corpus};
use md5::{Digest, Md5};
use proptest::prelude::*;
use streamwatch_core::kpl::{self, KplError, MAGIC, Payload};

#[global_allocator]
static ALLOC: common::Tracking = common::Tracking;

/// Magic + message + MD5(message): an aggregate the de-aggregator must open.
fn wrap(message: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(message);
    out.extend_from_slice(Md5::digest(message).as_slice());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The target: classify and de-aggregate, then check what came out really is inside the
/// input (sub-records borrow, never copy) and that a plain record is the input itself.
fn target(data: &[u8]) {
    let range = data.as_ptr_range();
    match bounded("deaggregate", data, kpl::deaggregate) {
        Ok(Payload::Plain(p)) => assert_eq!(p, data),
        Ok(Payload::Aggregated(subs)) => {
            // Every sub-record costs at least 4 bytes of protobuf (key + length + key + index).
            assert!(subs.len() <= data.len() / 4, "{} sub-records", subs.len());
            for s in subs {
                let r = s.data.as_ptr_range();
                assert!(s.data.is_empty() || (range.start <= r.start && r.end <= range.end));
            }
        }
        Err(e) => {
            // The error must describe the input, not echo it (it is logged).
            assert!(e.to_string().len() < 200, "{e}");
        }
    }
}

#[test]
fn corpus_replays_clean() {
    for (name, bytes) in corpus("kpl") {
        eprintln!("kpl corpus {name}");
        target(&bytes);
        target(&wrap(&bytes));
        if let Some(body) = bytes.strip_prefix(&MAGIC) {
            let body = &body[..body.len().saturating_sub(16)];
            target(&wrap(body));
        }
    }
}

#[test]
fn a_length_claiming_4_gib_allocates_nothing_of_that_size() {
    for field in [1u8, 2, 3] {
        let mut msg = vec![(field << 3) | 2];
        varint(&mut msg, 4 << 30);
        msg.extend_from_slice(b"short");
        let wrapped = wrap(&msg);
        let err = bounded("4 GiB table", &wrapped, kpl::deaggregate).unwrap_err();
        assert!(matches!(err, KplError::LengthOutOfBounds { .. }), "{err}");
    }
    // The same inside a sub-record's data and inside a tag.
    for inner in [vec![0x08, 0x00, 0x1a], vec![0x08, 0x00, 0x22]] {
        let mut rec = inner;
        varint(&mut rec, u64::MAX >> 1);
        let mut msg = vec![0x0a, 0x01, b'k', 0x1a];
        varint(&mut msg, rec.len() as u64);
        msg.extend_from_slice(&rec);
        let err = bounded("4 GiB nested", &wrap(&msg), kpl::deaggregate).unwrap_err();
        assert!(matches!(err, KplError::LengthOutOfBounds { .. }), "{err}");
    }
    // An index claiming 2^63 entries.
    let mut rec = vec![0x08];
    varint(&mut rec, 1 << 63);
    rec.extend_from_slice(&[0x1a, 0x00]);
    let mut msg = vec![0x0a, 0x01, b'k', 0x1a];
    varint(&mut msg, rec.len() as u64);
    msg.extend_from_slice(&rec);
    let err = bounded("huge index", &wrap(&msg), kpl::deaggregate).unwrap_err();
    assert!(matches!(err, KplError::IndexOutOfRange { .. }), "{err}");
}

#[test]
fn overlong_varints_and_unknown_wire_types_are_errors() {
    let mut long = vec![0x0a];
    long.extend_from_slice(&[0xff; 11]);
    assert!(matches!(
        kpl::deaggregate(&wrap(&long)),
        Err(KplError::VarintOverflow { .. })
    ));
    for wire in [3u8, 4, 6, 7] {
        let msg = [(9 << 3) | wire, 0x00];
        assert!(matches!(
            kpl::deaggregate(&wrap(&msg)),
            Err(KplError::UnsupportedWireType { .. })
        ));
    }
    assert!(matches!(
        kpl::deaggregate(&wrap(&[0x02, 0x00])),
        Err(KplError::FieldZero { .. })
    ));
}

#[test]
fn a_megabyte_of_tiny_records_stays_in_proportion() {
    // The most sub-records a 1 MiB Kinesis record can hold: 6 bytes each, all empty.
    let mut msg = vec![0x0a, 0x00];
    while msg.len() < kpl::KINESIS_MAX_RECORD_BYTES - 32 {
        msg.extend_from_slice(&[0x1a, 0x04, 0x08, 0x00, 0x1a, 0x00]);
    }
    let wrapped = wrap(&msg);
    let Ok(Payload::Aggregated(subs)) = bounded("tiny records", &wrapped, kpl::deaggregate) else {
        panic!("expected an aggregate");
    };
    assert_eq!(subs.len(), (msg.len() - 2) / 6);
    // And a megabyte of empty tags on one record.
    let mut rec = vec![0x08, 0x00, 0x1a, 0x00];
    while rec.len() < 1 << 20 {
        rec.extend_from_slice(&[0x22, 0x00]);
    }
    let mut msg = vec![0x0a, 0x00, 0x1a];
    varint(&mut msg, rec.len() as u64);
    msg.extend_from_slice(&rec);
    let wrapped = wrap(&msg);
    assert!(matches!(
        bounded("many tags", &wrapped, kpl::deaggregate),
        Ok(Payload::Aggregated(ref s)) if s.len() == 1
    ));
}

/// One protobuf field as a generator sees it: any field number and wire type, and a
/// length that may tell the truth or lie.
#[derive(Debug, Clone)]
enum Field {
    Varint(u8, u64),
    Bytes(u8, Vec<u8>),
    Lying(u8, u64, Vec<u8>),
    Nested(u8, Vec<Field>),
    Raw(Vec<u8>),
}

fn encode(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        match f {
            Field::Varint(n, v) => {
                varint(out, u64::from(*n) << 3);
                varint(out, *v);
            }
            Field::Bytes(n, b) => {
                varint(out, (u64::from(*n) << 3) | 2);
                varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Field::Lying(n, len, b) => {
                varint(out, (u64::from(*n) << 3) | 2);
                varint(out, *len);
                out.extend_from_slice(b);
            }
            Field::Nested(n, inner) => {
                let mut body = Vec::new();
                encode(inner, &mut body);
                varint(out, (u64::from(*n) << 3) | 2);
                varint(out, body.len() as u64);
                out.extend_from_slice(&body);
            }
            Field::Raw(b) => out.extend_from_slice(b),
        }
    }
}

fn field() -> impl Strategy<Value = Field> {
    let leaf = prop_oneof![
        (0u8..6, prop_oneof![0u64..4, any::<u64>()]).prop_map(|(n, v)| Field::Varint(n, v)),
        (0u8..6, prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(n, b)| Field::Bytes(n, b)),
        (
            0u8..6,
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(n, l, b)| Field::Lying(n, l, b)),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(Field::Raw),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        (1u8..5, prop::collection::vec(inner, 0..6)).prop_map(|(n, f)| Field::Nested(n, f))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        target(&data);
        target(&wrap(&data));
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&data);
        target(&with_magic);
    }

    #[test]
    fn generated_protobuf(fields in prop::collection::vec(field(), 0..12)) {
        let mut msg = Vec::new();
        encode(&fields, &mut msg);
        target(&wrap(&msg));
    }

    /// A valid aggregate with one byte changed and the digest recomputed: the decoder sees
    /// every near-miss of the real format.
    #[test]
    fn mutated_valid_aggregates(
        records in prop::collection::vec(("[a-z]{0,6}", prop::collection::vec(any::<u8>(), 0..40)), 1..8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut agg = kpl::Aggregator::default();
        for (pk, data) in &records {
            prop_assert!(agg.add(pk, None, data).unwrap().is_none());
        }
        let data = agg.finish().unwrap().data;
        let mut body = data[MAGIC.len()..data.len() - 16].to_vec();
        let i = at.index(body.len());
        body[i] = byte;
        target(&wrap(&body));
        body.truncate(i);
        target(&wrap(&body));
    }
}
