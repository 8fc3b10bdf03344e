//! Keccak-f\[1600\] and legacy-padded Keccak-512 (spec/post.md §2.3), plus the one-iteration
//! HMAC/PBKDF2 that scrypt-jane builds on it (§2.4).
//!
//! This is the original Keccak submission's padding (0x01 .. 0x80), not SHA3's 0x06.

/// Rate of Keccak-512 in bytes (1600 - 2*512 bits).
pub const RATE: usize = 72;
/// Keccak-512 digest length in bytes.
pub const DIGEST: usize = 64;

const RC: [u64; 24] = [
    0x0000_0000_0000_0001,
    0x0000_0000_0000_8082,
    0x8000_0000_0000_808a,
    0x8000_0000_8000_8000,
    0x0000_0000_0000_808b,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8009,
    0x0000_0000_0000_008a,
    0x0000_0000_0000_0088,
    0x0000_0000_8000_8009,
    0x0000_0000_8000_000a,
    0x0000_0000_8000_808b,
    0x8000_0000_0000_008b,
    0x8000_0000_0000_8089,
    0x8000_0000_0000_8003,
    0x8000_0000_0000_8002,
    0x8000_0000_0000_0080,
    0x0000_0000_0000_800a,
    0x8000_0000_8000_000a,
    0x8000_0000_8000_8081,
    0x8000_0000_0000_8080,
    0x0000_0000_8000_0001,
    0x8000_0000_8000_8008,
];
const ROTC: [u32; 24] = [
    1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
];
const PILN: [usize; 24] = [
    10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
];

/// The Keccak-f\[1600\] permutation, 24 rounds.
pub fn keccak_f(st: &mut [u64; 25]) {
    for rc in RC {
        // theta
        let mut bc = [0u64; 5];
        for (i, b) in bc.iter_mut().enumerate() {
            *b = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
        }
        for i in 0..5 {
            let t = bc[(i + 4) % 5] ^ bc[(i + 1) % 5].rotate_left(1);
            for j in (0..25).step_by(5) {
                st[j + i] ^= t;
            }
        }
        // rho and pi
        let mut t = st[1];
        for i in 0..24 {
            let j = PILN[i];
            let tmp = st[j];
            st[j] = t.rotate_left(ROTC[i]);
            t = tmp;
        }
        // chi
        for j in (0..25).step_by(5) {
            let row = [st[j], st[j + 1], st[j + 2], st[j + 3], st[j + 4]];
            for i in 0..5 {
                st[j + i] = row[i] ^ (!row[(i + 1) % 5] & row[(i + 2) % 5]);
            }
        }
        // iota
        st[0] ^= rc;
    }
}

/// Incremental legacy Keccak-512.
#[derive(Clone)]
pub struct Keccak512 {
    state: [u64; 25],
    buf: [u8; RATE],
    len: usize,
}

impl Default for Keccak512 {
    fn default() -> Self {
        Self::new()
    }
}

impl Keccak512 {
    pub fn new() -> Self {
        Self {
            state: [0; 25],
            buf: [0; RATE],
            len: 0,
        }
    }

    fn absorb_block(state: &mut [u64; 25], block: &[u8; RATE]) {
        for (lane, chunk) in state.iter_mut().zip(block.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *lane ^= u64::from_le_bytes(b);
        }
        keccak_f(state);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (RATE - self.len).min(data.len());
            self.buf[self.len..self.len + take].copy_from_slice(&data[..take]);
            self.len += take;
            data = &data[take..];
            if self.len == RATE {
                Self::absorb_block(&mut self.state, &self.buf);
                self.len = 0;
            }
        }
    }

    pub fn finalize(mut self) -> [u8; DIGEST] {
        self.buf[self.len..].fill(0);
        self.buf[self.len] |= 0x01;
        self.buf[RATE - 1] |= 0x80;
        let block = self.buf;
        Self::absorb_block(&mut self.state, &block);
        let mut out = [0u8; DIGEST];
        for (chunk, lane) in out.chunks_exact_mut(8).zip(self.state.iter()) {
            chunk.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }

    pub fn digest(data: &[u8]) -> [u8; DIGEST] {
        let mut h = Self::new();
        h.update(data);
        h.finalize()
    }
}

/// HMAC-Keccak-512 keyed with a key of at most 72 bytes, with inner and outer pad states
/// absorbed once so they can be reused for several messages (as PBKDF2 does).
#[derive(Clone)]
pub struct HmacKeccak512 {
    inner: Keccak512,
    outer: Keccak512,
}

impl HmacKeccak512 {
    /// Keys longer than the block size would be hashed first; PoST passwords are exactly 72
    /// bytes, so only that path is needed, but the general rule is kept for the raw test vector.
    pub fn new(key: &[u8]) -> Self {
        let mut k = [0u8; RATE];
        if key.len() > RATE {
            k[..DIGEST].copy_from_slice(&Keccak512::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let mut ipad = [0x36u8; RATE];
        let mut opad = [0x5cu8; RATE];
        for i in 0..RATE {
            ipad[i] ^= k[i];
            opad[i] ^= k[i];
        }
        let mut inner = Keccak512::new();
        inner.update(&ipad);
        let mut outer = Keccak512::new();
        outer.update(&opad);
        Self { inner, outer }
    }

    /// HMAC over the concatenation of `parts`.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; DIGEST] {
        let mut inner = self.inner.clone();
        for p in parts {
            inner.update(p);
        }
        let ih = inner.finalize();
        let mut outer = self.outer.clone();
        outer.update(&ih);
        outer.finalize()
    }

    /// PBKDF2 with exactly one iteration: block i = HMAC(P, S || BE32(i)), truncated to `out`.
    pub fn pbkdf2_1(&self, salt: &[u8], out: &mut [u8]) {
        for (i, chunk) in out.chunks_mut(DIGEST).enumerate() {
            let ctr = (i as u32 + 1).to_be_bytes();
            let block = self.mac(&[salt, &ctr]);
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}
