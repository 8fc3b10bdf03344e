//! The SCALE codec as go-spacemesh uses it (go-scale): little-endian fixed-width integers,
//! compact integers (the two low bits of the first byte pick the mode), byte arrays raw,
//! variable-length byte strings and lists with a compact length prefix, options as a 0/1 byte.
//!
//! Compact integers: `0..=63` one byte `v << 2`; `..2^14` two bytes `(v << 2) | 0b01`; `..2^30`
//! four bytes `(v << 2) | 0b10`; larger: a byte `((n - 4) << 2) | 0b11`, then `v` in the `n`
//! (minimal, at least 4) little-endian bytes.

/// What is wrong with bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: needs {needed} more bytes, {left} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("{what}: compact integer not in its shortest form")]
    NonCanonical { what: &'static str },
    #[error("{what}: compact integer {value} does not fit")]
    TooLarge { what: &'static str, value: u128 },
    #[error("{what}: option tag {tag} is neither 0 nor 1")]
    BadOption { what: &'static str, tag: u8 },
    #[error("{what}: {len} items, at most {max} allowed")]
    TooLong { what: &'static str, len: u64, max: u64 },
    #[error("{left} bytes left over after the value")]
    TrailingBytes { left: usize },
}

/// Appends SCALE encodings to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn compact(&mut self, v: u64) -> &mut Self {
        encode_compact(&mut self.buf, u128::from(v));
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }

    /// A fixed-size array: its bytes, no length.
    pub fn array(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// A byte string: compact length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.compact(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// An option: 0, or 1 then the value written by `f`.
    pub fn option<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) -> &mut Self {
        match v {
            None => {
                self.buf.push(0);
            }
            Some(x) => {
                self.buf.push(1);
                f(self, x);
            }
        }
        self
    }

    /// A list: compact length, then each item written by `f`.
    pub fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.compact(items.len() as u64);
        for x in items {
            f(self, x);
        }
        self
    }
}

fn encode_compact(buf: &mut Vec<u8>, v: u128) {
    if v < 1 << 6 {
        buf.push((v as u8) << 2);
    } else if v < 1 << 14 {
        buf.extend_from_slice(&(((v as u16) << 2) | 0b01).to_le_bytes());
    } else if v < 1 << 30 {
        buf.extend_from_slice(&(((v as u32) << 2) | 0b10).to_le_bytes());
    } else {
        let bytes = v.to_le_bytes();
        let n = (16 - (v.leading_zeros() as usize) / 8).max(4);
        buf.push((((n - 4) as u8) << 2) | 0b11);
        buf.extend_from_slice(&bytes[..n]);
    }
}

/// Reads SCALE values off a byte slice.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { left: self.buf.len() })
        }
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                left: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadOption { what, tag }),
        }
    }

    /// A compact integer that must fit in `max` (and be in its shortest form).
    pub fn compact_max(&mut self, max: u64, what: &'static str) -> Result<u64, DecodeError> {
        let first = self.u8(what)?;
        let v: u128 = match first & 0b11 {
            0b00 => u128::from(first >> 2),
            0b01 => {
                let b = self.u8(what)?;
                let v = u128::from(u16::from_le_bytes([first, b]) >> 2);
                if v < 1 << 6 {
                    return Err(DecodeError::NonCanonical { what });
                }
                v
            }
            0b10 => {
                let rest: [u8; 3] = self.array(what)?;
                let v = u128::from(u32::from_le_bytes([first, rest[0], rest[1], rest[2]]) >> 2);
                if v < 1 << 14 {
                    return Err(DecodeError::NonCanonical { what });
                }
                v
            }
            _ => {
                let n = usize::from(first >> 2) + 4;
                if n > 16 {
                    return Err(DecodeError::TooLarge {
                        what,
                        value: u128::MAX,
                    });
                }
                let bytes = self.take(n, what)?;
                let mut le = [0u8; 16];
                le[..n].copy_from_slice(bytes);
                let v = u128::from_le_bytes(le);
                if v < 1 << 30 || (n > 4 && bytes[n - 1] == 0) {
                    return Err(DecodeError::NonCanonical { what });
                }
                v
            }
        };
        if v > u128::from(max) {
            return Err(DecodeError::TooLarge { what, value: v });
        }
        Ok(v as u64)
    }

    pub fn compact(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.compact_max(u64::MAX, what)
    }

    /// A byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.compact(what)?;
        if len > max as u64 {
            return Err(DecodeError::TooLong {
                what,
                len,
                max: max as u64,
            });
        }
        self.take(len as usize, what)
    }

    /// A list of at most `max` items, each read by `f`.
    pub fn list<T>(
        &mut self,
        max: usize,
        what: &'static str,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.compact(what)?;
        if len > max as u64 {
            return Err(DecodeError::TooLong {
                what,
                len,
                max: max as u64,
            });
        }
        (0..len).map(|_| f(self)).collect()
    }

    /// An option: 0 (none) or 1 then the value read by `f`.
    pub fn option<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => f(self).map(Some),
            tag => Err(DecodeError::BadOption { what, tag }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_go_spacemesh_payload_vector_encodes() {
        // spec/devnet.md §5.3: {Nonce: 1543, GasPrice: 111222333} -> 1d 18 f6 78 84 1a.
        let mut e = Encoder::new();
        e.compact(1543).compact(111_222_333);
        assert_eq!(e.finish(), [0x1d, 0x18, 0xf6, 0x78, 0x84, 0x1a]);
        let mut d = Decoder::new(&[0x1d, 0x18, 0xf6, 0x78, 0x84, 0x1a]);
        assert_eq!(d.compact("nonce"), Ok(1543));
        assert_eq!(d.compact("gas price"), Ok(111_222_333));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn compact_modes_switch_at_their_bounds() {
        let enc = |v| {
            let mut e = Encoder::new();
            e.compact(v);
            e.finish()
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(63), [252]);
        assert_eq!(enc(64), [0x01, 0x01]);
        assert_eq!(enc((1 << 14) - 1), [0xfd, 0xff]);
        assert_eq!(enc(1 << 14), [0x02, 0x00, 0x01, 0x00]);
        assert_eq!(enc(1 << 30), [0x03, 0x00, 0x00, 0x00, 0x40]);
        assert_eq!(
            enc(u64::MAX),
            [0x13, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(
            Decoder::new(&[0x01]).compact("nonce"),
            Err(DecodeError::Truncated {
                what: "nonce",
                needed: 1,
                left: 0
            })
        );
        // 5 in the two-byte mode is not the shortest form.
        assert_eq!(
            Decoder::new(&[0x15, 0x00]).compact("n"),
            Err(DecodeError::NonCanonical { what: "n" })
        );
        assert_eq!(
            Decoder::new(&[0x02, 0x04]).option("o", |d| d.u8("x")),
            Err(DecodeError::BadOption { what: "o", tag: 2 })
        );
        assert!(matches!(
            Decoder::new(&[0x0c, 1, 2, 3]).bytes(2, "b"),
            Err(DecodeError::TooLong { len: 3, max: 2, .. })
        ));
        assert_eq!(
            Decoder::new(&[0x01, 0x01]).compact_max(10, "m"),
            Err(DecodeError::TooLarge { what: "m", value: 64 })
        );
    }

    proptest! {
        #[test]
        fn compact_round_trips(v: u64) {
            let mut e = Encoder::new();
            e.compact(v);
            let bytes = e.finish();
            let mut d = Decoder::new(&bytes);
            prop_assert_eq!(d.compact("v"), Ok(v));
            prop_assert_eq!(d.finish(), Ok(()));
        }

        #[test]
        fn lists_and_options_round_trip(items: Vec<u32>, opt: Option<u64>) {
            let mut e = Encoder::new();
            e.list(&items, |e, x| { e.u32(*x); });
            e.option(opt.as_ref(), |e, x| { e.u64(*x); });
            let bytes = e.finish();
            let mut d = Decoder::new(&bytes);
            prop_assert_eq!(d.list(usize::MAX, "items", |d| d.u32("item")), Ok(items));
            prop_assert_eq!(d.option("opt", |d| d.u64("x")), Ok(opt));
            prop_assert_eq!(d.finish(), Ok(()));
        }
    }
}
