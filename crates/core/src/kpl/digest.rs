//! MD5 of several messages at once, for checking the digests of a batch's aggregated
//! records. MD5 is one long dependency chain per message (~5 cycles a byte in any
//! implementation), so one message cannot go faster; several can, their steps interleaved
//! so the CPU runs independent chains side by side. On this code LLVM emits scalar
//! instructions (it does not vectorise the lanes), yet the interleaving alone makes a batch
//! of 16 aggregates ~35 % cheaper to check than hashing them one by one with `md-5`
//! (docs/performance.md). No `unsafe`, no CPU detection, same code on arm64.
//!
//! Checked against the `md-5` crate by the tests below (random lengths, every padding case).

/// Messages per pass: eight independent chains fill the integer units without spilling
/// much.
const LANES: usize = 8;

use md5::Digest as _;

const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// Four lanes of u32, each operation written out lane by lane (a shape a vectoriser could
/// map to one SSE2/NEON instruction; today's LLVM keeps it scalar, see the module doc).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct U4([u32; 4]);

impl U4 {
    #[inline(always)]
    fn splat(v: u32) -> Self {
        Self([v; 4])
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        let (a, b) = (self.0, o.0);
        Self([
            a[0].wrapping_add(b[0]),
            a[1].wrapping_add(b[1]),
            a[2].wrapping_add(b[2]),
            a[3].wrapping_add(b[3]),
        ])
    }
    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        let (a, b) = (self.0, o.0);
        Self([a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]])
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        let (a, b) = (self.0, o.0);
        Self([a[0] & b[0], a[1] & b[1], a[2] & b[2], a[3] & b[3]])
    }
    #[inline(always)]
    fn or_not(self, o: Self) -> Self {
        let (a, b) = (self.0, o.0);
        Self([a[0] | !b[0], a[1] | !b[1], a[2] | !b[2], a[3] | !b[3]])
    }
    #[inline(always)]
    fn rotl(self, s: u32) -> Self {
        let a = self.0;
        Self([
            a[0].rotate_left(s),
            a[1].rotate_left(s),
            a[2].rotate_left(s),
            a[3].rotate_left(s),
        ])
    }
}

/// One MD5 step over all lanes: `a = b + rotl(a + f(b, c, d) + k + m, s)`.
macro_rules! step {
    ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $m:expr, $k:expr, $s:expr) => {
        for v in 0..V {
            let t = $a[v]
                .add($f($b[v], $c[v], $d[v]))
                .add(U4::splat($k))
                .add($m[v]);
            $a[v] = $b[v].add(t.rotl($s));
        }
    };
}

/// Sixteen steps with one round function; `g` maps the step number to the message word.
macro_rules! round {
    ($f:expr, $s:expr, $g:expr, $base:expr, $a:ident, $b:ident, $c:ident, $d:ident, $m:ident) => {
        for j in 0..4 {
            let i = $base + 4 * j;
            step!($f, $a, $b, $c, $d, $m[$g(i)], K[i], $s[0]);
            step!($f, $d, $a, $b, $c, $m[$g(i + 1)], K[i + 1], $s[1]);
            step!($f, $c, $d, $a, $b, $m[$g(i + 2)], K[i + 2], $s[2]);
            step!($f, $b, $c, $d, $a, $m[$g(i + 3)], K[i + 3], $s[3]);
        }
    };
}

/// One 64-byte block of each of `4 * V` lanes.
#[inline(always)]
fn compress<const V: usize>(state: &mut [[U4; V]; 4], blocks: &[&[u8; 64]]) {
    let mut m = [[U4::splat(0); V]; 16];
    for (l, block) in blocks.iter().enumerate().take(4 * V) {
        for (w, word) in block.chunks_exact(4).enumerate() {
            m[w][l / 4].0[l % 4] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
    }
    let [mut a, mut b, mut c, mut d] = *state;
    let f = |x: U4, y: U4, z: U4| z.xor(x.and(y.xor(z)));
    let g = |x: U4, y: U4, z: U4| y.xor(z.and(x.xor(y)));
    let h = |x: U4, y: U4, z: U4| x.xor(y).xor(z);
    let i = |x: U4, y: U4, z: U4| y.xor(x.or_not(z));
    round!(f, [7, 12, 17, 22], |n: usize| n, 0, a, b, c, d, m);
    round!(
        g,
        [5, 9, 14, 20],
        |n: usize| (5 * n + 1) % 16,
        16,
        a,
        b,
        c,
        d,
        m
    );
    round!(
        h,
        [4, 11, 16, 23],
        |n: usize| (3 * n + 5) % 16,
        32,
        a,
        b,
        c,
        d,
        m
    );
    round!(
        i,
        [6, 10, 15, 21],
        |n: usize| (7 * n) % 16,
        48,
        a,
        b,
        c,
        d,
        m
    );
    for v in 0..V {
        state[0][v] = state[0][v].add(a[v]);
        state[1][v] = state[1][v].add(b[v]);
        state[2][v] = state[2][v].add(c[v]);
        state[3][v] = state[3][v].add(d[v]);
    }
}

/// Plain one-message MD5 compression, for the blocks only one lane still has.
fn compress_one(state: &mut [u32; 4], block: &[u8; 64]) {
    let mut m = [0u32; 16];
    for (w, word) in block.chunks_exact(4).enumerate() {
        m[w] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    }
    let [mut a, mut b, mut c, mut d] = *state;
    for i in 0..64 {
        let (f, g, s) = match i / 16 {
            0 => (d ^ (b & (c ^ d)), i, [7, 12, 17, 22][i % 4]),
            1 => (c ^ (d & (b ^ c)), (5 * i + 1) % 16, [5, 9, 14, 20][i % 4]),
            2 => (b ^ c ^ d, (3 * i + 5) % 16, [4, 11, 16, 23][i % 4]),
            _ => (c ^ (b | !d), (7 * i) % 16, [6, 10, 15, 21][i % 4]),
        };
        let t = a.wrapping_add(f).wrapping_add(K[i]).wrapping_add(m[g]);
        (a, b, c, d) = (d, b.wrapping_add(t.rotate_left(s)), b, c);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d]) {
        *s = s.wrapping_add(v);
    }
}

/// A message as MD5 consumes it: its whole 64-byte blocks, then one or two final blocks
/// holding the remainder, the `0x80` marker, zeros and the bit length.
struct Padded<'a> {
    body: &'a [u8],
    tail: [u8; 128],
    blocks: usize,
}

impl<'a> Padded<'a> {
    fn new(message: &'a [u8]) -> Self {
        let whole = message.len() / 64;
        let (body, rest) = message.split_at(whole * 64);
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let bits = (message.len() as u64).wrapping_mul(8);
        tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_le_bytes());
        Self {
            body,
            tail,
            blocks: whole + tail_blocks,
        }
    }

    fn block(&self, n: usize) -> &[u8; 64] {
        let (bytes, at) = if n * 64 < self.body.len() {
            (self.body, n * 64)
        } else {
            (&self.tail[..], n * 64 - self.body.len())
        };
        bytes[at..at + 64].try_into().unwrap_or(&[0; 64])
    }
}

fn digest_bytes(state: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// MD5 of up to `4 * V` messages side by side: the blocks all lanes have run in the lanes,
/// the rest of each (messages of unequal length) one message at a time.
fn digest_lanes<const V: usize>(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    debug_assert!(!messages.is_empty() && messages.len() <= 4 * V);
    // Unused lanes repeat the first message; their results are dropped.
    let padded: Vec<Padded<'_>> = (0..4 * V)
        .map(|l| Padded::new(messages.get(l).unwrap_or(&messages[0])))
        .collect();
    let common = padded.iter().map(|p| p.blocks).min().unwrap_or(0);
    let mut state = INIT.map(|w| [U4::splat(w); V]);
    let mut blocks: Vec<&[u8; 64]> = Vec::with_capacity(4 * V);
    for n in 0..common {
        blocks.clear();
        blocks.extend(padded.iter().map(|p| p.block(n)));
        compress::<V>(&mut state, &blocks);
    }
    (0..messages.len())
        .map(|l| {
            let mut one = state.map(|w| w[l / 4].0[l % 4]);
            for n in common..padded[l].blocks {
                compress_one(&mut one, padded[l].block(n));
            }
            digest_bytes(one)
        })
        .collect()
}

/// MD5 digests of `messages`, in order.
pub(crate) fn md5_many(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    // Neighbours in length share the most blocks, so group by length.
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(messages[i].len()));
    let mut out = vec![[0u8; 16]; messages.len()];
    for group in order.chunks(LANES) {
        let batch: Vec<&[u8]> = group.iter().map(|&i| messages[i]).collect();
        let digests = match batch.len() {
            // Alone, a message gains nothing from lanes.
            1 => vec![md5::Md5::digest(batch[0]).into()],
            2..=4 => digest_lanes::<1>(&batch),
            _ => digest_lanes::<2>(&batch),
        };
        for (&i, d) in group.iter().zip(digests) {
            out[i] = d;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use proptest::prelude::*;

    fn reference(m: &[u8]) -> [u8; 16] {
        Md5::digest(m).into()
    }

    #[test]
    fn every_padding_case_matches_md5() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31 % 251) as u8).collect();
        let messages: Vec<&[u8]> = (0..200).map(|n| &data[..n]).collect();
        let got = md5_many(&messages);
        for (m, d) in messages.iter().zip(got) {
            assert_eq!(d, reference(m), "length {}", m.len());
        }
        assert_eq!(md5_many(&[]), Vec::<[u8; 16]>::new());
    }

    proptest! {
        #[test]
        fn batches_match_md5(messages in prop::collection::vec(
            prop::collection::vec(any::<u8>(), 0..700), 0..20)) {
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let got = md5_many(&refs);
            for (m, d) in refs.iter().zip(got) {
                prop_assert_eq!(d, reference(m));
            }
        }
    }
}
