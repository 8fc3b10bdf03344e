//! The go-spacemesh identity key file form (node.md §3.1): the hex of the 64-byte ed25519 private
//! key, 32-byte seed ‖ 32-byte public key, exactly 128 hex characters, no newline.

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use super::error::{IoStep, KeyHexError, KeystoreError};
use super::fsutil::{ensure_private_dir, io_err, write_private_atomic};

/// Length of the key text.
pub(crate) const KEY_HEX_LEN: usize = 128;
/// Files larger than this are not read at all.
pub(crate) const MAX_KEY_FILE_LEN: u64 = 4096;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses the key text. One trailing `\n` (or `\r\n`) is tolerated. Checks the length, the digits,
/// and that the public half is the public key of the seed.
pub(crate) fn parse_key_hex(text: &[u8]) -> Result<SigningKey, KeyHexError> {
    let text = text
        .strip_suffix(b"\r\n")
        .or_else(|| text.strip_suffix(b"\n"))
        .unwrap_or(text);
    if text.len() != KEY_HEX_LEN {
        return Err(KeyHexError::WrongLength { found: text.len() });
    }
    let mut bytes = Zeroizing::new([0u8; 64]);
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(KeyHexError::NotHex { index: 2 * i })?;
        let lo = hex_value(pair[1]).ok_or(KeyHexError::NotHex { index: 2 * i + 1 })?;
        bytes[i] = (hi << 4) | lo;
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bytes[..32]);
    let key = SigningKey::from_bytes(&seed);
    if key.verifying_key().as_bytes()[..] != bytes[32..] {
        return Err(KeyHexError::PublicKeyMismatch);
    }
    Ok(key)
}

/// Formats `key` as the 128 lowercase hex characters of seed ‖ public key, without reallocating
/// (so no unzeroed copy is left behind).
pub(crate) fn format_key_hex(key: &SigningKey) -> Zeroizing<String> {
    let bytes = Zeroizing::new(key.to_keypair_bytes());
    let mut out = Zeroizing::new(String::with_capacity(KEY_HEX_LEN));
    for b in bytes.iter() {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Reads one go-spacemesh `*.key` file.
pub(crate) fn read_key_file(path: &Path) -> Result<SigningKey, KeystoreError> {
    let len = fs::metadata(path)
        .map_err(io_err(IoStep::ReadImportFile, path))?
        .len();
    if len > MAX_KEY_FILE_LEN {
        return Err(KeystoreError::InvalidKeyFile {
            path: path.to_path_buf(),
            source: KeyHexError::WrongLength {
                found: usize::try_from(len).unwrap_or(usize::MAX),
            },
        });
    }
    let text = Zeroizing::new(fs::read(path).map_err(io_err(IoStep::ReadImportFile, path))?);
    parse_key_hex(&text).map_err(|source| KeystoreError::InvalidKeyFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes an exported key (the text returned by
/// [`Keystore::export_key_hex`](super::Keystore::export_key_hex)) as `identities_dir/file_name`, the
/// form a go-spacemesh node loads: 128 hex characters without newline, file mode 0600, directory
/// 0700 (created if missing), written atomically. `file_name` must be a plain `NAME.key`; an
/// existing file is never replaced. The text is checked before anything is written. Returns the
/// path written.
pub fn write_key_file(
    identities_dir: &Path,
    file_name: &str,
    key_hex: &str,
) -> Result<PathBuf, KeystoreError> {
    let plain = !file_name.is_empty()
        && !file_name.starts_with('.')
        && !file_name.contains(['/', '\\', '\0'])
        && file_name.len() > ".key".len()
        && file_name.ends_with(".key");
    if !plain {
        return Err(KeystoreError::InvalidKeyFileName {
            name: file_name.to_owned(),
        });
    }
    let key = parse_key_hex(key_hex.as_bytes()).map_err(KeystoreError::InvalidKeyHex)?;
    let text = format_key_hex(&key);
    ensure_private_dir(identities_dir)?;
    let path = identities_dir.join(file_name);
    if fs::symlink_metadata(&path).is_ok() {
        return Err(KeystoreError::KeyFileExists { path });
    }
    write_private_atomic(&path, text.as_bytes()).map_err(io_err(IoStep::WriteExportFile, &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42u8; 32])
    }

    #[test]
    fn round_trip_and_newline_tolerance() -> Result<(), KeyHexError> {
        let k = key();
        let text = format_key_hex(&k);
        assert_eq!(text.len(), KEY_HEX_LEN);
        assert_eq!(*text, hex::encode(k.to_keypair_bytes()));
        for t in [
            text.to_string(),
            format!("{}\n", *text),
            format!("{}\r\n", *text),
            text.to_uppercase(),
        ] {
            assert_eq!(parse_key_hex(t.as_bytes())?.to_bytes(), k.to_bytes());
        }
        Ok(())
    }

    #[test]
    fn malformed_texts_are_refused_with_their_reason() {
        let good = format_key_hex(&key());
        assert_eq!(
            parse_key_hex(&good.as_bytes()[..64]).err(),
            Some(KeyHexError::WrongLength { found: 64 })
        );
        assert_eq!(
            parse_key_hex(format!("{}\n\n", *good).as_bytes()).err(),
            Some(KeyHexError::WrongLength { found: 129 })
        );
        let mut bad = good.as_bytes().to_vec();
        bad[5] = b'z';
        assert_eq!(parse_key_hex(&bad).err(), Some(KeyHexError::NotHex { index: 5 }));
        let mut swapped = good.as_bytes().to_vec();
        swapped[127] = if swapped[127] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            parse_key_hex(&swapped).err(),
            Some(KeyHexError::PublicKeyMismatch)
        );
        // The error text never quotes the offending character.
        let msg = KeyHexError::NotHex { index: 5 }.to_string();
        assert!(!msg.contains('z'));
    }
}
