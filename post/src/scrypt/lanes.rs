//! Portable multi-label ROMix: `L` labels at once in a word-sliced layout (word `k` of every
//! label side by side in one `[u32; L]`), written so the compiler vectorises each ChaCha step
//! into one SIMD operation for whatever the build target offers (SSE2 on baseline x86_64,
//! NEON on aarch64). No `unsafe`, no target-specific code.
//!
//! The scratch `V` is stored per label, row after row (see [`super::batch::LabelScratch`]):
//! entry `i` of lane `l` is chunk `i * L + l`, so the data-dependent reads of the second loop
//! touch two cache lines per label.

// Word k of lane l is `s[k][l]`: index loops say that more plainly than iterator chains.
#![allow(clippy::needless_range_loop)]

use super::portable::{AlignedChunk, Chunk};

/// One word of the sliced state: that word of each of the `L` labels.
type W<const L: usize> = [u32; L];

#[inline(always)]
fn add<const L: usize>(a: W<L>, b: W<L>) -> W<L> {
    let mut r = [0u32; L];
    for l in 0..L {
        r[l] = a[l].wrapping_add(b[l]);
    }
    r
}

#[inline(always)]
fn xor_rot<const L: usize>(a: W<L>, b: W<L>, s: u32) -> W<L> {
    let mut r = [0u32; L];
    for l in 0..L {
        r[l] = (a[l] ^ b[l]).rotate_left(s);
    }
    r
}

#[inline(always)]
fn xor<const L: usize>(a: W<L>, b: W<L>) -> W<L> {
    let mut r = [0u32; L];
    for l in 0..L {
        r[l] = a[l] ^ b[l];
    }
    r
}

#[inline(always)]
fn qr<const L: usize>(x: &mut [W<L>; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = add(x[a], x[b]);
    x[d] = xor_rot(x[d], x[a], 16);
    x[c] = add(x[c], x[d]);
    x[b] = xor_rot(x[b], x[c], 12);
    x[a] = add(x[a], x[b]);
    x[d] = xor_rot(x[d], x[a], 8);
    x[c] = add(x[c], x[d]);
    x[b] = xor_rot(x[b], x[c], 7);
}

/// ChaCha20/8 core on `L` blocks at once (spec §2.5).
#[inline(always)]
fn core<const L: usize>(w: &mut [W<L>; 16]) {
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
        w[i] = add(w[i], x[i]);
    }
}

/// BlockMix (r = 1) on `L` chunks at once.
#[inline(always)]
fn block_mix<const L: usize>(b: &mut [W<L>; 32]) {
    let mut y0 = [[0u32; L]; 16];
    for i in 0..16 {
        y0[i] = xor(b[i], b[16 + i]);
    }
    core(&mut y0);
    let mut y1 = [[0u32; L]; 16];
    for i in 0..16 {
        y1[i] = xor(y0[i], b[16 + i]);
    }
    core(&mut y1);
    b[..16].copy_from_slice(&y0);
    b[16..].copy_from_slice(&y1);
}

/// ROMix on `L` chunks at once. `x[l]` is the chunk of lane `l`, replaced by its result.
/// `v` needs at least `n * L` chunks; `n` must be a power of two.
pub fn romix_lanes<const L: usize>(x: &mut [Chunk; L], n: usize, v: &mut [AlignedChunk]) {
    assert!(n.is_power_of_two() && v.len() >= n * L, "bad ROMix scratch");
    let v = &mut v[..n * L];
    let mut s = [[0u32; L]; 32];
    for (l, c) in x.iter().enumerate() {
        for k in 0..32 {
            s[k][l] = c[k];
        }
    }
    for entry in v.chunks_exact_mut(L) {
        for (l, row) in entry.iter_mut().enumerate() {
            for k in 0..32 {
                row.0[k] = s[k][l];
            }
        }
        block_mix(&mut s);
    }
    let mask = n - 1;
    for _ in 0..n {
        for l in 0..L {
            let j = s[16][l] as usize & mask;
            let row = &v[j * L + l].0;
            for k in 0..32 {
                s[k][l] ^= row[k];
            }
        }
        block_mix(&mut s);
    }
    for (l, c) in x.iter_mut().enumerate() {
        for k in 0..32 {
            c[k] = s[k][l];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrypt::portable::romix;

    #[test]
    fn lanes_equal_scalar_romix() {
        for n in [2usize, 4, 16, 64] {
            let mut x = [[0u32; 32]; 4];
            for (l, c) in x.iter_mut().enumerate() {
                for (k, w) in c.iter_mut().enumerate() {
                    *w = (l as u32).wrapping_mul(0x9e37_79b9)
                        ^ (k as u32).wrapping_mul(0x85eb_ca6b)
                        ^ n as u32;
                }
            }
            let mut expect = x;
            let mut v1 = vec![[0u32; 32]; n];
            for c in expect.iter_mut() {
                romix(c, n, &mut v1);
            }
            let mut v = vec![AlignedChunk::default(); n * 4];
            romix_lanes(&mut x, n, &mut v);
            assert_eq!(x, expect, "n = {n}");
        }
    }
}
