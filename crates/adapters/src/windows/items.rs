//! The windows table's items, shared by the DynamoDB store and its embedded twin (which
//! keeps the very same items in memory, so it sizes writes as DynamoDB does).
//!
//! Layout (hash key `pk`, range key `sk`), per rule and window start `S` (µs, 20 digits):
//! * start: `pk = "<rule>#<S>"`, `sk = "s"`; `start`, `end`, `closed`, `ttl`, and while open
//!   `open_shard = "<rule>#open"` and `close_at` (µs), which list it in the sparse
//!   `open-windows` index (hash `open_shard`, range `close_at`, keys only) the closing
//!   queries instead of scanning. Closing removes both.
//! * chunk: `sk = "c#<shard>#<first sequence>#<last sequence>#<part>"`; `d` (binary: the
//!   keys, then per change its key's index, the reading's 64-bit identity, value, change
//!   time and a removed flag, little endian, 27 bytes), `ttl`.
//! * marker: `sk = "l#…"` (a late change) or `"f#…"` (a reading ahead of its record),
//!   see [`Mark::id`]; `ttl`.
//! * head: `pk = "<rule>"`, `sk = "#head"`; `last` (µs), `firing` (list of keys), `version`.
//! * shard progress (`streamwatch_core::progress`): `pk = "<rule>"`, `sk = <shard id>`, and
//!   `sk = "#listed"`; see `dynamodb.rs`.
//!
//! `ttl` (epoch seconds) is wall clock at the write plus the configured state lifetime.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use streamwatch_core::PortError;
use streamwatch_core::time::Micros;
use streamwatch_core::window::{
    Chunk, ChunkEntry, Entry, Head, WindowSpec, WindowState, merge_chunks,
};

pub type Item = HashMap<String, AttributeValue>;

pub const OPEN_INDEX: &str = "open-windows";
pub const HEAD: &str = "#head";
pub const START: &str = "s";
/// A chunk item's encoded changes stay under this many bytes (items are ≤ 400 KB).
pub const MAX_CHUNK_BYTES: usize = 350_000;
/// The most one change takes encoded (a key index, the identity, a tag, a value, a time).
const ENTRY_BYTES: usize = 5 + 8 + 1 + 10 + 10;
/// The encoding's version, its first byte.
const CHUNK_FORMAT: u8 = 2;

pub fn start_pk(rule: &str, start: Micros) -> String {
    format!("{rule}#{start:020}")
}

pub fn open_shard(rule: &str) -> String {
    format!("{rule}#open")
}

/// The window start a start/chunk/marker item's `pk` names.
pub fn start_of_pk(pk: &str) -> Option<Micros> {
    pk.rsplit_once('#')?.1.parse().ok()
}

pub fn chunk_sk(c: &Chunk) -> String {
    format!(
        "c#{}#{}#{}#{}",
        c.shard, c.first_sequence, c.last_sequence, c.part
    )
}

pub fn chunk_prefix(shard: &str) -> String {
    format!("c#{shard}#")
}

pub use crate::dynamo::{get_n, get_s, n, s};

pub fn get_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn corrupt(what: &str) -> PortError {
    PortError::permanent("windows.decode", format!("stored item has no valid {what}"))
}

/// Epoch seconds `ttl` from now.
pub fn expiry(ttl: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (now + ttl).as_secs()
}

fn keyed(pk: String, sk: String, ttl: Duration) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("sk".to_owned(), s(sk)),
        ("ttl".to_owned(), n(expiry(ttl))),
    ])
}

pub fn start_item(rule: &str, start: Micros, end: Micros, close_at: Micros, ttl: Duration) -> Item {
    let mut item = keyed(start_pk(rule, start), START.into(), ttl);
    item.insert("start".into(), n(start));
    item.insert("end".into(), n(end));
    item.insert("closed".into(), AttributeValue::Bool(false));
    item.insert("open_shard".into(), s(open_shard(rule)));
    item.insert("close_at".into(), n(close_at));
    item
}

pub fn mark_item(rule: &str, start: Micros, mark_id: String, ttl: Duration) -> Item {
    keyed(start_pk(rule, start), mark_id, ttl)
}

pub fn chunk_item(rule: &str, start: Micros, c: &Chunk, ttl: Duration) -> Item {
    let mut item = keyed(start_pk(rule, start), chunk_sk(c), ttl);
    item.insert("d".into(), AttributeValue::B(encode_chunk(c, start).into()));
    item
}

/// Splits a chunk into parts whose encoding stays under [`MAX_CHUNK_BYTES`]; each part
/// names its own keys.
pub fn split_chunk(mut c: Chunk) -> Vec<Chunk> {
    if encoded_len(&c.keys, c.entries.len()) <= MAX_CHUNK_BYTES {
        return vec![c];
    }
    let entries = std::mem::take(&mut c.entries);
    let keys = std::mem::take(&mut c.keys);
    let mut parts: Vec<Chunk> = Vec::new();
    let mut part = Chunk {
        part: 0,
        ..c.clone()
    };
    let mut index: HashMap<u32, u32> = HashMap::new();
    let mut bytes = 6;
    for e in entries {
        let name = &keys[e.key as usize];
        let key_cost = if index.contains_key(&e.key) {
            0
        } else {
            2 + name.len()
        };
        if bytes + ENTRY_BYTES + key_cost > MAX_CHUNK_BYTES && !part.entries.is_empty() {
            let next = Chunk {
                part: part.part + 1,
                ..c.clone()
            };
            parts.push(std::mem::replace(&mut part, next));
            index.clear();
            bytes = 6;
        }
        let k = *index.entry(e.key).or_insert_with(|| {
            bytes += 3 + name.len();
            part.keys.push(name.clone());
            (part.keys.len() - 1) as u32
        });
        bytes += ENTRY_BYTES;
        part.entries.push(ChunkEntry { key: k, ..e });
    }
    parts.push(part);
    parts
}

fn encoded_len(keys: &[String], entries: usize) -> usize {
    6 + keys.iter().map(|k| 3 + k.len()).sum::<usize>() + entries * ENTRY_BYTES
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(bytes: &mut &[u8]) -> Result<u64, PortError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *take(bytes, 1)?.first().unwrap_or(&0);
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(corrupt("chunk number"))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

const DELETED: u8 = 1;
/// The value is a whole number, stored as a varint (wind speeds usually are).
const WHOLE: u8 = 2;

/// Version, keys (count, then front-coded UTF-8), then per change: its key's index, the
/// reading's identity (8 bytes), a tag (removed; whole-number value), the value (a zigzag
/// varint when whole, else 8 bytes), the change time as a zigzag varint from the window
/// start. Mostly 14–18 bytes a change; the old fixed layout took 27.
pub fn encode_chunk(c: &Chunk, start: Micros) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(&c.keys, c.entries.len()));
    out.push(CHUNK_FORMAT);
    // Keys front-coded (bytes shared with the previous key, then the rest): `device1234`
    // after `device1233` takes 3 bytes, not 11.
    put_varint(&mut out, c.keys.len() as u64);
    let mut previous: &[u8] = &[];
    for k in &c.keys {
        let k = k.as_bytes();
        let shared = k.iter().zip(previous).take_while(|(a, b)| a == b).count();
        put_varint(&mut out, shared as u64);
        put_varint(&mut out, (k.len() - shared) as u64);
        out.extend_from_slice(&k[shared..]);
        previous = k;
    }
    for e in &c.entries {
        put_varint(&mut out, u64::from(e.key));
        out.extend_from_slice(&e.id.to_le_bytes());
        let v = e.entry.value;
        let whole = v.fract() == 0.0 && v.abs() < 1e15 && !(v == 0.0 && v.is_sign_negative());
        out.push(if e.entry.deleted { DELETED } else { 0 } | if whole { WHOLE } else { 0 });
        if whole {
            put_varint(&mut out, zigzag(v as i64));
        } else {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        put_varint(&mut out, zigzag(e.entry.changed_micros.wrapping_sub(start)));
    }
    out
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], PortError> {
    if bytes.len() < n {
        return Err(corrupt("chunk"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn u64_at(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

pub fn decode_chunk(sk: &str, start: Micros, mut bytes: &[u8]) -> Result<Chunk, PortError> {
    let mut parts = sk
        .strip_prefix("c#")
        .ok_or_else(|| corrupt("chunk key"))?
        .split('#');
    let (Some(shard), Some(first), Some(last), Some(part), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().and_then(|p| p.parse().ok()),
        parts.next(),
    ) else {
        return Err(corrupt("chunk key"));
    };
    let mut c = Chunk {
        shard: shard.into(),
        first_sequence: first.into(),
        last_sequence: last.into(),
        part,
        ..Chunk::default()
    };
    if take(&mut bytes, 1)? != [CHUNK_FORMAT] {
        return Err(corrupt("chunk format"));
    }
    let nkeys = varint(&mut bytes)?;
    let mut previous: Vec<u8> = Vec::new();
    for _ in 0..nkeys {
        let shared = varint(&mut bytes)? as usize;
        let len = varint(&mut bytes)? as usize;
        if shared > previous.len() {
            return Err(corrupt("chunk key name"));
        }
        previous.truncate(shared);
        previous.extend_from_slice(take(&mut bytes, len)?);
        c.keys
            .push(String::from_utf8(previous.clone()).map_err(|_| corrupt("chunk key name"))?);
    }
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        if key as usize >= c.keys.len() {
            return Err(corrupt("chunk entry key"));
        }
        let id = u64_at(take(&mut bytes, 8)?);
        let tag = take(&mut bytes, 1)?[0];
        let value = if tag & WHOLE != 0 {
            unzigzag(varint(&mut bytes)?) as f64
        } else {
            f64::from_bits(u64_at(take(&mut bytes, 8)?))
        };
        let changed = unzigzag(varint(&mut bytes)?).wrapping_add(start);
        c.entries.push(ChunkEntry {
            key: key as u32,
            id,
            entry: Entry {
                value,
                changed_micros: changed,
                deleted: tag & DELETED != 0,
            },
        });
    }
    Ok(c)
}

pub fn chunk_from_item(item: &Item) -> Result<Chunk, PortError> {
    let sk = get_s(item, "sk").ok_or_else(|| corrupt("sk"))?;
    let start = get_s(item, "pk")
        .and_then(|p| start_of_pk(p))
        .ok_or_else(|| corrupt("pk"))?;
    let d = item.get("d").and_then(|v| v.as_b().ok());
    decode_chunk(sk, start, d.map_or(&[][..], |b| b.as_ref()))
}

pub fn head_item(rule: &str, head: &Head, ttl: Duration) -> Item {
    let mut item = keyed(rule.to_owned(), HEAD.into(), ttl);
    item.insert("version".into(), n(head.version + 1));
    item.insert(
        "firing".into(),
        AttributeValue::L(head.firing.iter().map(s).collect()),
    );
    if let Some(last) = head.last_closed {
        item.insert("last".into(), n(last));
    }
    item
}

pub fn head_from_item(item: &Item) -> Head {
    let firing = match item.get("firing") {
        Some(AttributeValue::L(l)) => l.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Default::default(),
    };
    Head {
        last_closed: get_n(item, "last"),
        firing,
        version: get_n(item, "version").unwrap_or(0),
    }
}

/// Every window the items hold (a table's scan, or the embedded store's items), merged from
/// their starts' chunks, in rule, key, start order; `closed` (and `settled`) as their start.
pub fn windows_from_items<'a>(all: impl IntoIterator<Item = &'a Item>) -> Vec<WindowState> {
    let mut starts: BTreeMap<&str, (&Item, Vec<Chunk>)> = BTreeMap::new();
    let mut chunks: Vec<(&str, Chunk)> = Vec::new();
    for item in all {
        let (Some(pk), Some(sk)) = (get_s(item, "pk"), get_s(item, "sk")) else {
            continue;
        };
        if sk == START {
            starts.insert(pk, (item, Vec::new()));
        } else if sk.starts_with("c#")
            && let Ok(c) = chunk_from_item(item)
        {
            chunks.push((pk, c));
        }
    }
    for (pk, c) in chunks {
        if let Some((_, list)) = starts.get_mut(pk) {
            list.push(c);
        }
    }
    let mut out = Vec::new();
    for (pk, (item, list)) in starts {
        let (Some((rule, _)), Some(start), Some(end)) = (
            pk.rsplit_once('#'),
            get_n::<Micros>(item, "start"),
            get_n::<Micros>(item, "end"),
        ) else {
            continue;
        };
        let spec = WindowSpec {
            size_micros: end - start,
            lateness_micros: 0,
        };
        let closed = get_bool(item, "closed") && !item.contains_key("open_shard");
        for mut w in merge_chunks(rule, &spec, start, &list) {
            w.closed = closed;
            w.settled = closed;
            out.push(w);
        }
    }
    out.sort_by(|a, b| (&a.rule, &a.key, a.start_micros).cmp(&(&b.rule, &b.key, b.start_micros)));
    out
}

/// An item's size as DynamoDB bills it: every attribute's name plus its value (strings and
/// binaries by length, numbers about one byte per two digits plus one, lists and maps 3
/// bytes plus 1 per element plus the elements).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(x) => x.len(),
        AttributeValue::N(x) => {
            let digits = x.bytes().filter(u8::is_ascii_digit).count();
            digits.div_ceil(2) + 1
        }
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        AttributeValue::Ss(l) | AttributeValue::Ns(l) => l.iter().map(String::len).sum(),
        _ => 0,
    }
}

/// Write units DynamoDB charges for writing `item`: one per started KB.
pub fn write_units(item: &Item) -> u64 {
    item_size(item).div_ceil(1024).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(keys: usize, per_key: usize) -> Chunk {
        let mut c = Chunk {
            shard: "shardId-000000000001".into(),
            first_sequence: "49590338271490256608559692538361571095921575989136588898".into(),
            last_sequence: "49590338271490256608559692538361571095921575989136588899".into(),
            ..Chunk::default()
        };
        for k in 0..keys {
            for i in 0..per_key {
                c.push(
                    &format!("device{k}"),
                    (k * 1000 + i) as u64,
                    Entry {
                        value: match i % 4 {
                            0 => i as f64 + 0.5,
                            1 => -(i as f64),
                            2 => 1e23,
                            _ => i as f64,
                        },
                        changed_micros: -(i as i64) * 1_000_003,
                        deleted: i % 7 == 0,
                    },
                );
            }
        }
        c
    }

    #[test]
    fn chunks_round_trip() {
        let c = chunk(3, 5);
        let item = chunk_item("w", 60_000_000, &c, Duration::from_secs(60));
        assert_eq!(chunk_from_item(&item).unwrap(), c);
        assert_eq!(start_of_pk(get_s(&item, "pk").unwrap()), Some(60_000_000));
        // Mostly 14-18 bytes a change plus the key names.
        assert!(item_size(&item) < 15 * 22 + 3 * 10 + 200);
    }

    #[test]
    fn keys_are_front_coded() {
        let c = chunk(500, 1);
        let names: usize = c.keys.iter().map(|k| k.len() + 1).sum();
        let keys_bytes = encode_chunk(&c, 0).len() - 500 * 18;
        assert!(
            keys_bytes * 2 < names,
            "{keys_bytes} bytes of keys for {names}"
        );
        assert_eq!(
            decode_chunk(&chunk_sk(&c), 0, &encode_chunk(&c, 0)).unwrap(),
            c
        );
    }

    #[test]
    fn big_chunks_split_under_the_item_limit_and_keep_every_entry() {
        let c = chunk(400, 50);
        let parts = split_chunk(c.clone());
        assert!(parts.len() > 1);
        let mut all = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert_eq!(p.part as usize, i);
            assert!(encode_chunk(p, 0).len() <= MAX_CHUNK_BYTES);
            for e in &p.entries {
                all.push((p.keys[e.key as usize].clone(), e.id, e.entry.value));
            }
        }
        let want: Vec<_> = c
            .entries
            .iter()
            .map(|e| (c.keys[e.key as usize].clone(), e.id, e.entry.value))
            .collect();
        assert_eq!(all, want);
    }

    #[test]
    fn corrupt_chunks_are_errors_not_panics() {
        assert!(decode_chunk("c#s#1#2#0", 0, &[CHUNK_FORMAT, 1, 9]).is_err());
        assert!(decode_chunk("c#s#1#2", 0, &[CHUNK_FORMAT, 0]).is_err());
        assert!(decode_chunk("c#s#1#2#0", 0, &[CHUNK_FORMAT, 0, 1]).is_err());
        assert!(
            decode_chunk("c#s#1#2#0", 0, &[1, 0]).is_err(),
            "another format"
        );
        assert!(decode_chunk("c#s#1#2#0", 0, &[CHUNK_FORMAT, 0xff, 0xff]).is_err());
        assert!(
            decode_chunk("c#s#1#2#0", 0, &[CHUNK_FORMAT, 1, 3, 1, b'a']).is_err(),
            "a key sharing more than the previous one has"
        );
    }
}
