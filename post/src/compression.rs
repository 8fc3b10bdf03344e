//! Index compression of a proof (spec/post.md §4.8): index number `j` is written as its low `w`
//! bits at bit position `j·w` of a little-endian bit stream, `w = bitlength(numLabels)`
//! ([`crate::difficulty::required_bits`]).

/// Bytes taken by `count` indices of `bits` bits each: `ceil(count·bits / 8)`.
pub fn compressed_len(count: usize, bits: u32) -> usize {
    (count as u128 * u128::from(bits)).div_ceil(8) as usize
}

/// Pack the low `bits` bits of every index, in order, into a little-endian bit stream.
/// Bits of an index above `bits` are dropped; the unused high bits of the last byte are zero.
/// `bits` above 64 is treated as 64.
pub fn compress_indices(indices: &[u64], bits: u32) -> Vec<u8> {
    let bits = bits.min(64);
    let mut out = Vec::with_capacity(compressed_len(indices.len(), bits));
    if bits == 0 {
        return out;
    }
    let mask = low_mask(bits);
    // Pending bits, least significant first; at most 7 + 64 bits are ever held.
    let mut acc: u128 = 0;
    let mut held: u32 = 0;
    for &index in indices {
        acc |= u128::from(index & mask) << held;
        held += bits;
        while held >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        out.push(acc as u8);
    }
    out
}

/// Read back `floor(8·len / bits)` indices of `bits` bits each. Padding bits that do not make a
/// whole index are ignored. Yields nothing when `bits` is 0; `bits` above 64 is treated as 64.
pub fn decompress_indices(bytes: &[u8], bits: u32) -> DecompressIndices<'_> {
    let bits = bits.min(64);
    let remaining = if bits == 0 {
        0
    } else {
        bytes.len() * 8 / bits as usize
    };
    DecompressIndices {
        bytes,
        pos: 0,
        acc: 0,
        held: 0,
        bits,
        remaining,
    }
}

/// Iterator returned by [`decompress_indices`].
#[derive(Debug, Clone)]
pub struct DecompressIndices<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u128,
    held: u32,
    bits: u32,
    remaining: usize,
}

impl Iterator for DecompressIndices<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        while self.held < self.bits {
            // `remaining` was computed from the length, so the bytes cannot run out here.
            let byte = *self.bytes.get(self.pos)?;
            self.acc |= u128::from(byte) << self.held;
            self.held += 8;
            self.pos += 1;
        }
        let value = (self.acc as u64) & low_mask(self.bits);
        self.acc >>= self.bits;
        self.held -= self.bits;
        self.remaining -= 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for DecompressIndices<'_> {}

fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// True when every bit of `bytes` past the first `count·bits` bits is zero (the padding a
/// conforming prover writes).
pub fn padding_is_zero(bytes: &[u8], count: usize, bits: u32) -> bool {
    let used = count as u128 * u128::from(bits.min(64));
    bytes.iter().enumerate().all(|(i, &b)| {
        let start = i as u128 * 8;
        if start + 8 <= used {
            true
        } else if start >= used {
            b == 0
        } else {
            let keep = (used - start) as u32;
            b >> keep == 0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::difficulty::required_bits;
    use proptest::prelude::*;

    #[test]
    fn spec_7_4_vectors() {
        let idx = [0u64, 65525, 0, 65295];
        assert_eq!(compress_indices(&idx, 3), vec![0x28, 0x0e]);
        assert_eq!(hex::encode(compress_indices(&idx, 16)), "0000f5ff00000fff",);
        assert_eq!(
            decompress_indices(&[0x28, 0x0e], 3).collect::<Vec<_>>(),
            vec![0, 5, 0, 7, 0]
        );
        assert_eq!(
            decompress_indices(&hex::decode("0000f5ff00000fff").unwrap_or_default(), 16).collect::<Vec<_>>(),
            idx.to_vec()
        );
        assert_eq!(required_bits(9), 4);
        assert_eq!(required_bits(1 << 34), 35);
        assert_eq!(required_bits(u64::MAX), 64);
    }

    #[test]
    fn lengths() {
        assert_eq!(compressed_len(8, 1), 1);
        assert_eq!(compressed_len(10, 3), 4);
        assert_eq!(compressed_len(10, 8), 10);
        assert_eq!(compressed_len(37, 35), 162);
        assert_eq!(compressed_len(37, 13), 61);
        assert_eq!(compress_indices(&[1; 37], 35).len(), 162);
        assert_eq!(decompress_indices(&[0; 61], 13).len(), 37);
        assert_eq!(decompress_indices(&[0; 61], 0).len(), 0);
    }

    #[test]
    fn proof_small_pair_a_indices() {
        let bytes = hex::decode(
            "dc802a30870f41238a049a5813980264e08f0b024a7249350934f946f1e01e7e949eb094bdf259f86b86d53398c6\
             d62a5b95bb73ba0edd61bc9c77f600",
        )
        .unwrap_or_default();
        let got: Vec<u64> = decompress_indices(&bytes, 13).take(37).collect();
        assert_eq!(&got[..5], &[220, 340, 460, 543, 564]);
        assert_eq!(got[36], 3943);
        assert_eq!(compress_indices(&got, 13), bytes);
        assert!(padding_is_zero(&bytes, 37, 13));
        let mut flipped = bytes.clone();
        flipped[60] |= 0x80;
        assert!(!padding_is_zero(&flipped, 37, 13));
        assert_eq!(decompress_indices(&flipped, 13).take(37).collect::<Vec<_>>(), got);
    }

    #[test]
    fn full_width() {
        let idx = [u64::MAX, 0, 1 << 63, 12345];
        let c = compress_indices(&idx, 64);
        assert_eq!(c.len(), 32);
        assert_eq!(decompress_indices(&c, 64).collect::<Vec<_>>(), idx.to_vec());
    }

    proptest! {
        #[test]
        fn round_trip(bits in 1u32..=64, raw in prop::collection::vec(any::<u64>(), 0..64)) {
            let idx: Vec<u64> = raw.iter().map(|x| x & low_mask(bits)).collect();
            let c = compress_indices(&idx, bits);
            prop_assert_eq!(c.len(), compressed_len(idx.len(), bits));
            prop_assert!(padding_is_zero(&c, idx.len(), bits));
            let back: Vec<u64> = decompress_indices(&c, bits).take(idx.len()).collect();
            prop_assert_eq!(back, idx);
        }

        #[test]
        fn high_bits_are_dropped(bits in 1u32..64, raw in prop::collection::vec(any::<u64>(), 1..20)) {
            let c = compress_indices(&raw, bits);
            let back: Vec<u64> = decompress_indices(&c, bits).take(raw.len()).collect();
            let want: Vec<u64> = raw.iter().map(|x| x & low_mask(bits)).collect();
            prop_assert_eq!(back, want);
        }
    }
}
