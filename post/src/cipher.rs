//! The AES-128 ciphers of proving and verification (spec/post.md §4.5-4.6).
//!
//! - Group cipher of nonce group `g`: `Kg = BLAKE3(challenge || LE32(g) || LE64(pow))[0..16]`.
//!   One block encryption of a label serves the 16 nonces of the group: byte `n mod 16` of
//!   `AES_Kg(label)` is the label's `msb` for nonce `n`.
//! - Per-nonce ("lazy") cipher: `Kn = BLAKE3(challenge || LE32(g) || LE64(pow) || LE32(n))[0..16]`;
//!   `lsb = LE64(AES_Kn(label)[0..8]) & (2^56 - 1)`, only needed when `msb == Dmsb`.
//!
//! The `aes` crate picks AES-NI (x86) or the ARMv8 instructions at run time and encrypts 8
//! blocks at once when given several, which keeps the AES pipeline full.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128Enc, Block};

/// Nonces served by one group-cipher block encryption.
pub const NONCES_PER_GROUP: u32 = 16;
/// Blocks encrypted together: one 128-byte chunk of 8 labels.
pub const CHUNK_LABELS: usize = 8;
/// Bytes in one chunk of labels.
pub const CHUNK_SIZE: usize = CHUNK_LABELS * 16;
/// Mask of the low 56 bits.
pub const LSB_MASK: u64 = (1 << 56) - 1;

/// The AES key of nonce group `nonce_group`.
pub fn group_key(challenge: &[u8; 32], nonce_group: u32, pow: u64) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(challenge);
    h.update(&nonce_group.to_le_bytes());
    h.update(&pow.to_le_bytes());
    first16(h.finalize().as_bytes())
}

/// The AES key of the lazy cipher of `nonce` (whose group is `nonce_group`).
pub fn nonce_key(challenge: &[u8; 32], nonce_group: u32, pow: u64, nonce: u32) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(challenge);
    h.update(&nonce_group.to_le_bytes());
    h.update(&pow.to_le_bytes());
    h.update(&nonce.to_le_bytes());
    first16(h.finalize().as_bytes())
}

fn first16(b: &[u8; 32]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(&b[..16]);
    k
}

/// The group cipher of one nonce group.
#[derive(Clone)]
pub struct GroupCipher {
    aes: Aes128Enc,
    nonce_group: u32,
    pow: u64,
}

impl std::fmt::Debug for GroupCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCipher")
            .field("nonce_group", &self.nonce_group)
            .field("pow", &self.pow)
            .finish()
    }
}

impl GroupCipher {
    pub fn new(challenge: &[u8; 32], nonce_group: u32, pow: u64) -> Self {
        let key = group_key(challenge, nonce_group, pow);
        Self {
            aes: Aes128Enc::new(&key.into()),
            nonce_group,
            pow,
        }
    }

    pub fn nonce_group(&self) -> u32 {
        self.nonce_group
    }

    pub fn pow(&self) -> u64 {
        self.pow
    }

    /// `AES_Kg(label)`: byte `n mod 16` is the msb of nonce `n` of this group.
    pub fn encrypt_label(&self, label: &[u8; 16]) -> [u8; 16] {
        let mut b = Block::from(*label);
        self.aes.encrypt_block(&mut b);
        b.into()
    }

    /// The msb of `label` for `nonce` (which must belong to this group).
    pub fn msb(&self, label: &[u8; 16], nonce: u32) -> u8 {
        self.encrypt_label(label)[(nonce % NONCES_PER_GROUP) as usize]
    }

    /// Encrypt many blocks (8 at a time through the AES pipeline).
    #[inline]
    pub fn encrypt_blocks_b2b(&self, input: &[Block], out: &mut [Block]) {
        debug_assert_eq!(input.len(), out.len());
        // The lengths are equal by construction in every caller; a mismatch would only skip work.
        let _ = self.aes.encrypt_blocks_b2b(input, out);
    }
}

/// The per-nonce ("lazy") cipher.
#[derive(Clone)]
pub struct NonceCipher {
    aes: Aes128Enc,
    nonce: u32,
}

impl std::fmt::Debug for NonceCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCipher").field("nonce", &self.nonce).finish()
    }
}

impl NonceCipher {
    pub fn new(challenge: &[u8; 32], nonce: u32, pow: u64) -> Self {
        let key = nonce_key(challenge, nonce / NONCES_PER_GROUP, pow, nonce);
        Self {
            aes: Aes128Enc::new(&key.into()),
            nonce,
        }
    }

    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    /// `LE64(AES_Kn(label)[0..8]) & (2^56 - 1)`.
    #[inline]
    pub fn lsb(&self, label: &[u8; 16]) -> u64 {
        let mut b = Block::from(*label);
        self.aes.encrypt_block(&mut b);
        let mut lo = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        u64::from_le_bytes(lo) & LSB_MASK
    }
}

/// The full 64-bit value `msb·2^56 + lsb` of `label` for `nonce` (spec §4.6); a label qualifies
/// for the nonce when this is below the proving difficulty D. For tests and slow paths.
pub fn label_value(challenge: &[u8; 32], nonce: u32, pow: u64, label: &[u8; 16]) -> u64 {
    let g = GroupCipher::new(challenge, nonce / NONCES_PER_GROUP, pow);
    let n = NonceCipher::new(challenge, nonce, pow);
    (u64::from(g.msb(label, nonce)) << 56) | n.lsb(label)
}

/// Whether `label` qualifies for `nonce` under threshold `difficulty` (spec §4.6).
pub fn qualifies(challenge: &[u8; 32], nonce: u32, pow: u64, label: &[u8; 16], difficulty: u64) -> bool {
    label_value(challenge, nonce, pow, label) < difficulty
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex16(s: &str) -> [u8; 16] {
        let v = hex::decode(s).expect("hex");
        v.try_into().expect("16 bytes")
    }

    #[test]
    fn keys_of_proof_small_pair_a() {
        // vectors/proof_small_pairA.json: nonce 8 (group 0), pow 18712.
        let challenge: [u8; 32] = *b"hello world, challenge me!!!!!!!";
        assert_eq!(
            group_key(&challenge, 0, 18712),
            hex16("4cdb98ce7c09d7318ed9bcafe766e665")
        );
        assert_eq!(
            nonce_key(&challenge, 0, 18712, 8),
            hex16("a80fdb4a5a16ff45861974e2fc0d0636")
        );
    }

    #[test]
    fn keys_of_vector_b() {
        // spec §7.6: challenge = bytes 0x40..0x5f, nonce 36 (group 2), pow 7.
        let mut challenge = [0u8; 32];
        for (i, b) in challenge.iter_mut().enumerate() {
            *b = 0x40 + i as u8;
        }
        assert_eq!(
            group_key(&challenge, 2, 7),
            hex16("faeacec673a5eea7f57ba96dc247681e")
        );
        assert_eq!(
            nonce_key(&challenge, 2, 7, 36),
            hex16("243bf2a85fe852ecca3a78d1e1d3bc75")
        );
    }

    #[test]
    fn fips197_aes128() {
        // FIPS-197 appendix C.1.
        let key = hex16("000102030405060708090a0b0c0d0e0f");
        let aes = Aes128Enc::new(&key.into());
        let mut b = Block::from(hex16("00112233445566778899aabbccddeeff"));
        aes.encrypt_block(&mut b);
        assert_eq!(hex::encode(b), "69c4e0d86a7b0430d8cdb78070b4c55a");
    }

    #[test]
    fn batch_equals_single() {
        let g = GroupCipher::new(&[7; 32], 3, 99);
        let input: Vec<Block> = (0..24u8).map(|i| Block::from([i; 16])).collect();
        let mut out = vec![Block::default(); 24];
        g.encrypt_blocks_b2b(&input, &mut out);
        for (i, o) in input.iter().zip(&out) {
            assert_eq!(g.encrypt_label(&(*i).into()), <[u8; 16]>::from(*o));
        }
    }

    #[test]
    fn value_splits_into_msb_and_lsb() {
        let label = [0x5a; 16];
        let v = label_value(&[1; 32], 37, 5, &label);
        let g = GroupCipher::new(&[1; 32], 2, 5);
        let n = NonceCipher::new(&[1; 32], 37, 5);
        assert_eq!((v >> 56) as u8, g.msb(&label, 37));
        assert_eq!(v & LSB_MASK, n.lsb(&label));
        assert!(qualifies(&[1; 32], 37, 5, &label, v + 1));
        assert!(!qualifies(&[1; 32], 37, 5, &label, v));
    }
}
