//! Portable (scalar) ChaCha20/8 BlockMix and ROMix for r = 1 (spec/post.md §2.5-2.6).
//! This is the oracle every faster path is compared with.

/// One 128-byte scrypt chunk (r = 1) as 32 little-endian words.
pub type Chunk = [u32; 32];

/// A [`Chunk`] aligned to its size, so that each one spans exactly two 64-byte cache lines; the
/// multi-label paths keep their scratch `V` in these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, align(128))]
pub struct AlignedChunk(pub Chunk);

#[inline(always)]
fn qr(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// scrypt-jane's ChaCha20/8 core: the block is the state, 8 rounds, feed-forward.
#[inline(always)]
pub fn chacha8_core(w: &mut [u32; 16]) {
    let mut x = *w;
    for _ in 0..4 {
        qr(&mut x, 0, 4, 8, 12);
        qr(&mut x, 1, 5, 9, 13);
        qr(&mut x, 2, 6, 10, 14);
        qr(&mut x, 3, 7, 11, 15);
        qr(&mut x, 0, 5, 10, 15);
        qr(&mut x, 1, 6, 11, 12);
        qr(&mut x, 2, 7, 8, 13);
        qr(&mut x, 3, 4, 9, 14);
    }
    for i in 0..16 {
        w[i] = w[i].wrapping_add(x[i]);
    }
}

/// BlockMix for r = 1: Y0 = core(B1 ^ B0), Y1 = core(Y0 ^ B1).
#[inline(always)]
pub fn block_mix(b: &mut Chunk) {
    let mut y0 = [0u32; 16];
    for i in 0..16 {
        y0[i] = b[i] ^ b[16 + i];
    }
    chacha8_core(&mut y0);
    let mut y1 = [0u32; 16];
    for i in 0..16 {
        y1[i] = y0[i] ^ b[16 + i];
    }
    chacha8_core(&mut y1);
    b[..16].copy_from_slice(&y0);
    b[16..].copy_from_slice(&y1);
}

/// ROMix with scratch `v` of at least `n` chunks; `n` must be a power of two.
pub fn romix(x: &mut Chunk, n: usize, v: &mut [Chunk]) {
    debug_assert!(n.is_power_of_two() && v.len() >= n);
    for slot in v.iter_mut().take(n) {
        *slot = *x;
        block_mix(x);
    }
    let mask = n - 1;
    for _ in 0..n {
        let j = x[16] as usize & mask;
        let vj = &v[j];
        for k in 0..32 {
            x[k] ^= vj[k];
        }
        block_mix(x);
    }
}

pub fn bytes_to_chunk(b: &[u8; 128]) -> Chunk {
    let mut c = [0u32; 32];
    for (w, s) in c.iter_mut().zip(b.chunks_exact(4)) {
        *w = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
    c
}

pub fn chunk_to_bytes(c: &Chunk) -> [u8; 128] {
    let mut b = [0u8; 128];
    for (s, w) in b.chunks_exact_mut(4).zip(c.iter()) {
        s.copy_from_slice(&w.to_le_bytes());
    }
    b
}
