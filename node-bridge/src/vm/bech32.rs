//! BIP-173 bech32 (the original checksum constant 1, *not* bech32m), which go-spacemesh uses for
//! account addresses. Written here because no bech32 crate is available; checked against the
//! BIP-173 valid and invalid test vectors below.
//!
//! Rules kept from BIP-173: at most 90 characters; the HRP is 1..=83 characters in `0x21..=0x7e`;
//! the separator is the *last* `1`; the data part is at least 6 characters (the checksum);
//! a string is all lowercase or all uppercase, never mixed, and the checksum is computed over
//! the lowercase form.

/// The data-part alphabet: 5-bit value `v` is written `CHARSET[v]`.
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// Longest string BIP-173 allows.
pub const MAX_LEN: usize = 90;

/// Why a string is not valid bech32.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bech32Error {
    #[error("bech32 string is {len} characters, at most {MAX_LEN} allowed")]
    TooLong { len: usize },
    #[error("bech32 string has no separator '1'")]
    NoSeparator,
    #[error("bech32 human-readable part is empty")]
    EmptyHrp,
    #[error("bech32 human-readable part is {len} characters, at most 83 allowed")]
    HrpTooLong { len: usize },
    #[error("bech32 character {ch:?} at position {pos} is outside 0x21..=0x7e")]
    CharOutOfRange { ch: char, pos: usize },
    #[error("bech32 string mixes upper and lower case")]
    MixedCase,
    #[error("bech32 data character {ch:?} at position {pos} is not in the alphabet")]
    InvalidDataChar { ch: char, pos: usize },
    #[error("bech32 data part is {len} characters, shorter than the 6-character checksum")]
    TooShort { len: usize },
    #[error("bech32 checksum does not match")]
    BadChecksum,
    #[error("bech32 padding is not zero or longer than 4 bits")]
    BadPadding,
    #[error("bech32 data value {value} does not fit in 5 bits")]
    NotFiveBit { value: u8 },
}

fn polymod(values: impl IntoIterator<Item = u8>) -> u32 {
    const GEN: [u32; 5] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// The HRP expanded as the checksum sees it: high bits of each character, 0, low bits.
fn hrp_expand(hrp: &[u8]) -> impl Iterator<Item = u8> + '_ {
    hrp.iter()
        .map(|c| c >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.iter().map(|c| c & 31))
}

fn checksum(hrp: &[u8], data: &[u8]) -> [u8; 6] {
    let pm = polymod(hrp_expand(hrp).chain(data.iter().copied()).chain([0u8; 6])) ^ 1;
    let mut out = [0u8; 6];
    for (i, o) in out.iter_mut().enumerate() {
        *o = ((pm >> (5 * (5 - i))) & 31) as u8;
    }
    out
}

/// Writes `hrp` and 5-bit `data` as a bech32 string (lowercase). The HRP is lowercased first.
pub fn encode(hrp: &str, data: &[u8]) -> Result<String, Bech32Error> {
    validate_hrp(hrp)?;
    if let Some(&value) = data.iter().find(|&&v| v > 31) {
        return Err(Bech32Error::NotFiveBit { value });
    }
    let hrp = hrp.to_ascii_lowercase();
    let len = hrp.len() + 1 + data.len() + 6;
    if len > MAX_LEN {
        return Err(Bech32Error::TooLong { len });
    }
    let sum = checksum(hrp.as_bytes(), data);
    let mut s = String::with_capacity(len);
    s.push_str(&hrp);
    s.push('1');
    for &v in data.iter().chain(sum.iter()) {
        s.push(char::from(CHARSET[usize::from(v)]));
    }
    Ok(s)
}

fn validate_hrp(hrp: &str) -> Result<(), Bech32Error> {
    if hrp.is_empty() {
        return Err(Bech32Error::EmptyHrp);
    }
    if hrp.len() > 83 {
        return Err(Bech32Error::HrpTooLong { len: hrp.len() });
    }
    if let Some((pos, ch)) = hrp
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(*c, '\x21'..='\x7e'))
    {
        return Err(Bech32Error::CharOutOfRange { ch, pos });
    }
    let has_lower = hrp.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hrp.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(Bech32Error::MixedCase);
    }
    Ok(())
}

/// Reads a bech32 string: the lowercase HRP and the 5-bit data values (checksum removed).
pub fn decode(s: &str) -> Result<(String, Vec<u8>), Bech32Error> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(Bech32Error::TooLong { len: chars.len() });
    }
    if let Some((pos, &ch)) = chars
        .iter()
        .enumerate()
        .find(|(_, c)| !matches!(**c, '\x21'..='\x7e'))
    {
        return Err(Bech32Error::CharOutOfRange { ch, pos });
    }
    // Every character is now ASCII, so byte and char positions agree.
    let has_lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = s.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(Bech32Error::MixedCase);
    }
    let lower = s.to_ascii_lowercase();
    let sep = lower.rfind('1').ok_or(Bech32Error::NoSeparator)?;
    let (hrp, rest) = lower.split_at(sep);
    let data_part = &rest[1..];
    if hrp.is_empty() {
        return Err(Bech32Error::EmptyHrp);
    }
    if hrp.len() > 83 {
        return Err(Bech32Error::HrpTooLong { len: hrp.len() });
    }
    let mut data = Vec::with_capacity(data_part.len());
    for (i, b) in data_part.bytes().enumerate() {
        match CHARSET.iter().position(|&c| c == b) {
            Some(v) => data.push(v as u8),
            None => {
                return Err(Bech32Error::InvalidDataChar {
                    ch: char::from(b),
                    pos: sep + 1 + i,
                })
            }
        }
    }
    if data.len() < 6 {
        return Err(Bech32Error::TooShort { len: data.len() });
    }
    if polymod(hrp_expand(hrp.as_bytes()).chain(data.iter().copied())) != 1 {
        return Err(Bech32Error::BadChecksum);
    }
    data.truncate(data.len() - 6);
    Ok((hrp.to_string(), data))
}

/// Regroups 8-bit bytes into 5-bit values, zero-padding the last group.
pub fn bytes_to_five_bit(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((bytes.len() * 8).div_ceil(5));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (5 - bits)) & 31) as u8);
    }
    out
}

/// Regroups 5-bit values into bytes; the leftover padding must be under 5 bits and all zero.
pub fn five_bit_to_bytes(data: &[u8]) -> Result<Vec<u8>, Bech32Error> {
    let mut out = Vec::with_capacity(data.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &v in data {
        if v > 31 {
            return Err(Bech32Error::NotFiveBit { value: v });
        }
        acc = ((acc << 5) | u32::from(v)) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    if bits >= 5 || (acc & ((1 << bits) - 1)) != 0 {
        return Err(Bech32Error::BadPadding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// BIP-173 "valid checksum" vectors.
    const VALID: &[&str] = &[
        "A12UEL5L",
        "a12uel5l",
        "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        "?1ezyfcl",
    ];

    #[test]
    fn bip173_valid_vectors_decode_and_re_encode() {
        // "11", 82 × 'q', "c8247j": exactly 90 characters.
        let long = format!("11{}c8247j", "q".repeat(82));
        for s in VALID.iter().copied().chain([long.as_str()]) {
            let (hrp, data) = decode(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            let again = encode(&hrp, &data).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(again, s.to_ascii_lowercase(), "{s}");
        }
    }

    #[test]
    fn bip173_invalid_vectors_are_rejected_for_the_stated_reason() {
        use Bech32Error::*;
        let cases: &[(&str, Bech32Error)] = &[
            ("\x201nwldj5", CharOutOfRange { ch: ' ', pos: 0 }),
            ("\x7f1axkwrx", CharOutOfRange { ch: '\x7f', pos: 0 }),
            ("\u{80}1eym55h", CharOutOfRange { ch: '\u{80}', pos: 0 }),
            (
                "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
                TooLong { len: 91 },
            ),
            ("pzry9x0s0muk", NoSeparator),
            ("1pzry9x0s0muk", EmptyHrp),
            ("x1b4n0q5v", InvalidDataChar { ch: 'b', pos: 2 }),
            ("li1dgmt3", TooShort { len: 5 }),
            ("de1lg7wt\u{ff}", CharOutOfRange { ch: '\u{ff}', pos: 8 }),
            ("A1G7SGD8", BadChecksum),
            ("10a06t8", EmptyHrp),
            ("1qzzfhee", EmptyHrp),
        ];
        for (s, want) in cases {
            assert_eq!(decode(s).as_ref(), Err(want), "{s:?}");
        }
    }

    #[test]
    fn mixed_case_and_a_flipped_character_are_rejected() {
        assert_eq!(decode("A12uEL5L"), Err(Bech32Error::MixedCase));
        assert_eq!(decode("a12uel5m"), Err(Bech32Error::BadChecksum));
    }

    #[test]
    fn padding_must_be_short_and_zero() {
        // 8 bits need two 5-bit groups with 2 zero padding bits.
        assert_eq!(bytes_to_five_bit(&[0xff]), [31, 28]);
        assert_eq!(five_bit_to_bytes(&[31, 28]), Ok(vec![0xff]));
        assert_eq!(five_bit_to_bytes(&[31, 29]), Err(Bech32Error::BadPadding));
        // Three groups carry 15 bits: one byte plus 7 bits of padding, too many.
        assert_eq!(five_bit_to_bytes(&[31, 28, 0]), Err(Bech32Error::BadPadding));
    }

    proptest! {
        #[test]
        fn bytes_round_trip_through_five_bit(bytes: Vec<u8>) {
            let five = bytes_to_five_bit(&bytes);
            prop_assert_eq!(five_bit_to_bytes(&five), Ok(bytes));
        }

        #[test]
        fn encode_decode_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let five = bytes_to_five_bit(&bytes);
            let s = encode("sm", &five).expect("fits in 90 characters");
            prop_assert_eq!(decode(&s), Ok(("sm".to_string(), five)));
        }
    }
}
