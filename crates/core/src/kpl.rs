//! KPL (Kinesis Producer Library) record aggregation: the de-aggregator every consumer
//! runs on the hot path, and the aggregator the replay command and round-trip tests use.
//!
//! Wire format: magic `F3 89 9A C2`, a protobuf `AggregatedRecord`, then the 16-byte MD5
//! of the protobuf bytes. Sub-records borrow from the input: nothing is copied.

use md5::{Digest, Md5};

mod digest;

/// First four bytes of every KPL-aggregated Kinesis record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the trailing MD5 digest.
pub const DIGEST_LEN: usize = 16;
/// A Kinesis record's data blob may hold at most 1 MiB (partition key included).
pub const KINESIS_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One user record inside an aggregated Kinesis record, borrowed from the parent's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRecord<'a> {
    pub partition_key: &'a str,
    pub explicit_hash_key: Option<&'a str>,
    pub data: &'a [u8],
}

/// What a Kinesis record's data turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    /// Not aggregated (no magic, too short, or wrong digest): the data is the user record.
    Plain(&'a [u8]),
    /// Aggregated: the user records in order; their sub-sequence numbers are the indices.
    Aggregated(Vec<SubRecord<'a>>),
}

/// Why an aggregated record (right magic, right digest) could not be de-aggregated.
/// The whole parent record is then malformed: we never hand out a partial prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KplError {
    #[error("protobuf truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("protobuf varint longer than 64 bits at byte {offset}")]
    VarintOverflow { offset: usize },
    #[error(
        "protobuf field {field} at byte {offset} has wire type {wire_type}, expected {expected}"
    )]
    WireType {
        field: u64,
        wire_type: u8,
        expected: u8,
        offset: usize,
    },
    #[error(
        "protobuf wire type {wire_type} (groups are not part of the KPL format) at byte {offset}"
    )]
    UnsupportedWireType { wire_type: u8, offset: usize },
    #[error("protobuf length {len} at byte {offset} runs past the end of the message")]
    LengthOutOfBounds { len: u64, offset: usize },
    #[error("protobuf field number 0 at byte {offset}")]
    FieldZero { offset: usize },
    #[error("{table} entry {index} is not valid UTF-8")]
    InvalidUtf8 { table: &'static str, index: usize },
    #[error("sub-record {record}: missing required field {field}")]
    MissingField { record: usize, field: &'static str },
    #[error("sub-record {record}: {table} index {index} out of range (table has {len} entries)")]
    IndexOutOfRange {
        record: usize,
        table: &'static str,
        index: u64,
        len: usize,
    },
    #[error(
        "user record of {size} bytes does not fit in an aggregated record of at most {max} bytes"
    )]
    RecordTooLarge { size: usize, max: usize },
}

/// Classifies a Kinesis record's data and, if it is aggregated, de-aggregates it.
///
/// Mirrors the reference de-aggregators (`aws-kinesis-agg`): data without the magic, not
/// longer than magic + digest, or with a digest that does not match, is a plain record.
pub fn deaggregate(data: &[u8]) -> Result<Payload<'_>, KplError> {
    let Some((message, digest)) = split_candidate(data) else {
        return Ok(Payload::Plain(data));
    };
    deaggregate_checked(data, Md5::digest(message).as_slice() == digest)
}

/// The protobuf message and the trailing digest of data that may be aggregated (right magic,
/// long enough); None for data that can only be a plain record.
fn split_candidate(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = data.strip_prefix(&MAGIC)?;
    if rest.len() <= DIGEST_LEN {
        return None;
    }
    Some(rest.split_at(rest.len() - DIGEST_LEN))
}

/// Whether each record's data carries a matching KPL digest (None: not a candidate at all).
/// The digests of a batch are computed side by side ([`digest`]), which is what makes
/// de-aggregating a batch faster than checking its records one by one.
pub fn check_digests<'a>(datas: impl IntoIterator<Item = Option<&'a [u8]>>) -> Vec<Option<bool>> {
    let candidates: Vec<Option<(&[u8], &[u8])>> = datas
        .into_iter()
        .map(|d| d.and_then(split_candidate))
        .collect();
    let messages: Vec<&[u8]> = candidates.iter().flatten().map(|(m, _)| *m).collect();
    let mut digests = digest::md5_many(&messages).into_iter();
    candidates
        .iter()
        .map(|c| {
            let (_, expected) = (*c)?;
            digests.next().map(|d| d.as_slice() == expected)
        })
        .collect()
}

/// [`deaggregate`] with the digest verdict already known (from [`check_digests`]).
pub fn deaggregate_checked(data: &[u8], digest_matches: bool) -> Result<Payload<'_>, KplError> {
    match split_candidate(data) {
        Some((message, _)) if digest_matches => decode_aggregated(message).map(Payload::Aggregated),
        _ => Ok(Payload::Plain(data)),
    }
}

/// Decodes the protobuf `AggregatedRecord` body (without magic and digest).
pub fn decode_aggregated(message: &[u8]) -> Result<Vec<SubRecord<'_>>, KplError> {
    struct RawRecord<'a> {
        pk_index: Option<u64>,
        ehk_index: Option<u64>,
        data: Option<&'a [u8]>,
    }
    let mut partition_keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut raw: Vec<RawRecord<'_>> = Vec::new();

    let mut reader = Reader::new(message);
    while let Some((field, wire, at)) = reader.key()? {
        match field {
            1 | 2 => {
                let bytes = reader.expect_bytes(field, wire, at)?;
                let (table, name) = if field == 1 {
                    (&mut partition_keys, "partition_key_table")
                } else {
                    (&mut hash_keys, "explicit_hash_key_table")
                };
                let text = std::str::from_utf8(bytes).map_err(|_| KplError::InvalidUtf8 {
                    table: name,
                    index: table.len(),
                })?;
                table.push(text);
            }
            3 => {
                let body = reader.expect_bytes(field, wire, at)?;
                let mut record = RawRecord {
                    pk_index: None,
                    ehk_index: None,
                    data: None,
                };
                let mut inner = Reader::nested(body, reader.base + at);
                while let Some((f, w, a)) = inner.key()? {
                    match f {
                        1 => record.pk_index = Some(inner.expect_varint(f, w, a)?),
                        2 => record.ehk_index = Some(inner.expect_varint(f, w, a)?),
                        3 => record.data = Some(inner.expect_bytes(f, w, a)?),
                        // Tags are accepted and ignored, but must still be well-formed.
                        4 => {
                            let tag = inner.expect_bytes(f, w, a)?;
                            let mut t = Reader::nested(tag, inner.base + a);
                            while let Some((_, tw, ta)) = t.key()? {
                                t.skip(tw, ta)?;
                            }
                        }
                        _ => inner.skip(w, a)?,
                    }
                }
                raw.push(record);
            }
            _ => reader.skip(wire, at)?,
        }
    }

    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let pk_index = r.pk_index.ok_or(KplError::MissingField {
                record: i,
                field: "partition_key_index",
            })?;
            let partition_key = lookup(&partition_keys, pk_index, i, "partition_key_table")?;
            let explicit_hash_key = match r.ehk_index {
                Some(idx) => Some(lookup(&hash_keys, idx, i, "explicit_hash_key_table")?),
                None => None,
            };
            let data = r.data.ok_or(KplError::MissingField {
                record: i,
                field: "data",
            })?;
            Ok(SubRecord {
                partition_key,
                explicit_hash_key,
                data,
            })
        })
        .collect()
}

fn lookup<'a>(
    table: &[&'a str],
    index: u64,
    record: usize,
    name: &'static str,
) -> Result<&'a str, KplError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| table.get(i).copied())
        .ok_or(KplError::IndexOutOfRange {
            record,
            table: name,
            index,
            len: table.len(),
        })
}

/// A bounds-checked protobuf reader. Lengths are checked against the bytes actually
/// present before anything is sliced, so a varint claiming 4 GB allocates nothing.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` within the outermost message, for error positions.
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
        }
    }

    fn nested(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64, KplError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(KplError::Truncated {
                    offset: self.offset(),
                });
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(KplError::VarintOverflow { offset: start });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(KplError::VarintOverflow { offset: start })
    }

    /// Next field key as (field number, wire type, offset of the key), or None at the end.
    fn key(&mut self) -> Result<Option<(u64, u8, usize)>, KplError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(KplError::FieldZero {
                offset: self.base + at,
            });
        }
        Ok(Some((field, (key & 7) as u8, at)))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], KplError> {
        let remaining = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                let out = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(KplError::LengthOutOfBounds {
                len: n,
                offset: self.offset(),
            }),
        }
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], KplError> {
        let len = self.varint()?;
        self.take(len)
    }

    fn expect_bytes(&mut self, field: u64, wire: u8, at: usize) -> Result<&'a [u8], KplError> {
        self.check_wire(field, wire, 2, at)?;
        self.length_delimited()
    }

    fn expect_varint(&mut self, field: u64, wire: u8, at: usize) -> Result<u64, KplError> {
        self.check_wire(field, wire, 0, at)?;
        self.varint()
    }

    fn check_wire(&self, field: u64, wire: u8, expected: u8, at: usize) -> Result<(), KplError> {
        if wire == expected {
            Ok(())
        } else {
            Err(KplError::WireType {
                field,
                wire_type: wire,
                expected,
                offset: self.base + at,
            })
        }
    }

    /// Skips an unknown field, as protobuf parsers do.
    fn skip(&mut self, wire: u8, at: usize) -> Result<(), KplError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.length_delimited().map(drop),
            5 => self.take(4).map(drop),
            other => Err(KplError::UnsupportedWireType {
                wire_type: other,
                offset: self.base + at,
            }),
        }
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn bytes_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// One aggregated Kinesis record ready for PutRecords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatedRecord {
    /// The first user record's partition key (the KPL convention).
    pub partition_key: String,
    /// The first user record's explicit hash key, if it had one.
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    pub user_records: usize,
}

/// Packs user records into KPL aggregated records of at most `max_bytes` each
/// (data plus partition key, as Kinesis counts it).
#[derive(Debug)]
pub struct Aggregator {
    max_bytes: usize,
    partition_keys: Vec<String>,
    hash_keys: Vec<String>,
    records: Vec<u8>,
    user_records: usize,
    first: Option<(String, Option<String>)>,
    /// Encoded size of the message so far (tables + records), without magic and digest.
    message_len: usize,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new(KINESIS_MAX_RECORD_BYTES)
    }
}

impl Aggregator {
    /// `max_bytes` bounds each aggregated record's data plus its partition key.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            partition_keys: Vec::new(),
            hash_keys: Vec::new(),
            records: Vec::new(),
            user_records: 0,
            first: None,
            message_len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.user_records
    }

    pub fn is_empty(&self) -> bool {
        self.user_records == 0
    }

    /// Size the aggregated record would have now, as Kinesis counts it.
    pub fn size(&self) -> usize {
        let pk = self.first.as_ref().map_or(0, |(pk, _)| pk.len());
        MAGIC.len() + self.message_len + DIGEST_LEN + pk
    }

    /// Adds a user record. When it does not fit beside the records already held, those are
    /// returned as a finished aggregated record and the new one starts the next.
    pub fn add(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        data: &[u8],
    ) -> Result<Option<AggregatedRecord>, KplError> {
        let alone = Self::added_len(&[], &[], partition_key, explicit_hash_key, data);
        let alone_total = MAGIC.len() + alone + DIGEST_LEN + partition_key.len();
        if alone_total > self.max_bytes {
            return Err(KplError::RecordTooLarge {
                size: alone_total,
                max: self.max_bytes,
            });
        }
        let grow = Self::added_len(
            &self.partition_keys,
            &self.hash_keys,
            partition_key,
            explicit_hash_key,
            data,
        );
        let flushed = if !self.is_empty() && self.size() + grow > self.max_bytes {
            self.finish()
        } else {
            None
        };
        self.push(partition_key, explicit_hash_key, data);
        Ok(flushed)
    }

    fn added_len(
        pks: &[String],
        ehks: &[String],
        pk: &str,
        ehk: Option<&str>,
        data: &[u8],
    ) -> usize {
        let pk_idx = pks.iter().position(|k| k == pk).unwrap_or(pks.len());
        let mut grow = 0;
        if pk_idx == pks.len() {
            grow += bytes_field_len(pk.len());
        }
        let mut record = 1 + varint_len(pk_idx as u64) + bytes_field_len(data.len());
        if let Some(ehk) = ehk {
            let idx = ehks.iter().position(|k| k == ehk).unwrap_or(ehks.len());
            if idx == ehks.len() {
                grow += bytes_field_len(ehk.len());
            }
            record += 1 + varint_len(idx as u64);
        }
        grow + bytes_field_len(record)
    }

    fn push(&mut self, pk: &str, ehk: Option<&str>, data: &[u8]) {
        self.message_len += Self::added_len(&self.partition_keys, &self.hash_keys, pk, ehk, data);
        let pk_idx = index_of(&mut self.partition_keys, pk);
        let ehk_idx = ehk.map(|e| index_of(&mut self.hash_keys, e));
        let mut record = Vec::with_capacity(data.len() + 16);
        put_varint(&mut record, 1 << 3);
        put_varint(&mut record, pk_idx);
        if let Some(idx) = ehk_idx {
            put_varint(&mut record, 2 << 3);
            put_varint(&mut record, idx);
        }
        put_bytes_field(&mut record, 3, data);
        put_bytes_field(&mut self.records, 3, &record);
        if self.first.is_none() {
            self.first = Some((pk.to_owned(), ehk.map(str::to_owned)));
        }
        self.user_records += 1;
    }

    /// Returns the records held so far as one aggregated record (None when empty).
    pub fn finish(&mut self) -> Option<AggregatedRecord> {
        let (partition_key, explicit_hash_key) = self.first.take()?;
        let mut data = Vec::with_capacity(MAGIC.len() + self.message_len + DIGEST_LEN);
        data.extend_from_slice(&MAGIC);
        for pk in self.partition_keys.drain(..) {
            put_bytes_field(&mut data, 1, pk.as_bytes());
        }
        for ehk in self.hash_keys.drain(..) {
            put_bytes_field(&mut data, 2, ehk.as_bytes());
        }
        data.append(&mut self.records);
        let digest = Md5::digest(&data[MAGIC.len()..]);
        data.extend_from_slice(digest.as_slice());
        let user_records = std::mem::take(&mut self.user_records);
        self.message_len = 0;
        Some(AggregatedRecord {
            partition_key,
            explicit_hash_key,
            data,
            user_records,
        })
    }
}

fn index_of(table: &mut Vec<String>, key: &str) -> u64 {
    match table.iter().position(|k| k == key) {
        Some(i) => i as u64,
        None => {
            table.push(key.to_owned());
            (table.len() - 1) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wrap(message: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(message);
        out.extend_from_slice(Md5::digest(message).as_slice());
        out
    }

    #[test]
    fn plain_when_no_magic_or_too_short_or_bad_digest() {
        assert_eq!(deaggregate(b"{}").unwrap(), Payload::Plain(b"{}"));
        assert_eq!(deaggregate(&[]).unwrap(), Payload::Plain(&[]));
        let magic_only = [0xF3, 0x89, 0x9A, 0xC2, 1, 2];
        assert_eq!(
            deaggregate(&magic_only).unwrap(),
            Payload::Plain(&magic_only)
        );
        let mut agg = Aggregator::default();
        agg.add("k", None, b"hello").unwrap();
        let mut data = agg.finish().unwrap().data;
        let last = data.len() - 1;
        data[last] ^= 0xff;
        assert_eq!(deaggregate(&data).unwrap(), Payload::Plain(&data[..]));
    }

    #[test]
    fn broken_body_with_good_digest_is_an_error_not_a_partial_result() {
        // pk table ["a"], one good record, then a record pointing at pk index 7.
        let mut msg = Vec::new();
        put_bytes_field(&mut msg, 1, b"a");
        put_bytes_field(&mut msg, 3, &[0x08, 0x00, 0x1a, 0x01, b'x']);
        put_bytes_field(&mut msg, 3, &[0x08, 0x07, 0x1a, 0x01, b'y']);
        let err = deaggregate(&wrap(&msg)).unwrap_err();
        assert!(matches!(
            err,
            KplError::IndexOutOfRange {
                record: 1,
                index: 7,
                ..
            }
        ));
        // Truncated length claiming 4 GiB.
        let mut msg = vec![0x0a];
        put_varint(&mut msg, 4 << 30);
        msg.push(b'a');
        assert!(matches!(
            deaggregate(&wrap(&msg)),
            Err(KplError::LengthOutOfBounds { .. })
        ));
        // Missing data.
        let mut msg = Vec::new();
        put_bytes_field(&mut msg, 1, b"a");
        put_bytes_field(&mut msg, 3, &[0x08, 0x00]);
        assert!(matches!(
            deaggregate(&wrap(&msg)),
            Err(KplError::MissingField { field: "data", .. })
        ));
    }

    #[test]
    fn tags_and_unknown_fields_are_ignored() {
        let mut rec = vec![0x08, 0x00];
        put_bytes_field(&mut rec, 3, b"payload");
        let mut tag = Vec::new();
        put_bytes_field(&mut tag, 1, b"key");
        put_bytes_field(&mut tag, 2, b"value");
        put_bytes_field(&mut rec, 4, &tag);
        rec.extend_from_slice(&[0x28, 0x05]); // unknown field 5, varint
        let mut msg = Vec::new();
        put_bytes_field(&mut msg, 1, b"pk");
        put_bytes_field(&mut msg, 3, &rec);
        let wrapped = wrap(&msg);
        let Payload::Aggregated(records) = deaggregate(&wrapped).unwrap() else {
            panic!("expected aggregated");
        };
        assert_eq!(
            records,
            vec![SubRecord {
                partition_key: "pk",
                explicit_hash_key: None,
                data: b"payload"
            }]
        );
    }

    #[test]
    fn aggregator_splits_at_the_size_limit() {
        let mut agg = Aggregator::new(1000);
        let mut outputs = Vec::new();
        for i in 0..50 {
            if let Some(out) = agg.add(&format!("key-{i}"), None, &[b'x'; 90]).unwrap() {
                outputs.push(out);
            }
        }
        outputs.extend(agg.finish());
        assert!(outputs.len() > 1);
        let mut total = 0;
        for out in &outputs {
            assert!(out.data.len() + out.partition_key.len() <= 1000);
            let Payload::Aggregated(records) = deaggregate(&out.data).unwrap() else {
                panic!("not aggregated");
            };
            assert_eq!(records.len(), out.user_records);
            assert_eq!(records[0].partition_key, out.partition_key);
            total += records.len();
        }
        assert_eq!(total, 50);
        assert!(matches!(
            Aggregator::new(100).add("k", None, &[0; 200]),
            Err(KplError::RecordTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(records in prop::collection::vec(
            ("[a-zé]{0,12}", prop::option::of("[0-9]{1,39}"), prop::collection::vec(any::<u8>(), 0..300)),
            1..40,
        ), max in 2_000usize..20_000) {
            let mut agg = Aggregator::new(max);
            let mut outputs = Vec::new();
            for (pk, ehk, data) in &records {
                outputs.extend(agg.add(pk, ehk.as_deref(), data).unwrap());
            }
            outputs.extend(agg.finish());
            let mut decoded = Vec::new();
            for out in &outputs {
                prop_assert!(out.data.len() + out.partition_key.len() <= max);
                match deaggregate(&out.data).unwrap() {
                    Payload::Aggregated(subs) => decoded.extend(subs.into_iter().map(|s| {
                        (s.partition_key.to_owned(), s.explicit_hash_key.map(str::to_owned), s.data.to_vec())
                    })),
                    Payload::Plain(_) => prop_assert!(false, "aggregator output read as plain"),
                }
            }
            prop_assert_eq!(decoded, records);
        }

        #[test]
        fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = deaggregate(&body);
            let _ = deaggregate(&wrap(&body));
            let _ = decode_aggregated(&body);
        }
    }
}
