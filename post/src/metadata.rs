//! `postdata_metadata.json` (spec/post.md §3.5). Reads both writer forms (Go's, with
//! `NonceValue` and absent optional keys; post-rs's, with nulls), writes the Go form atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::data::METADATA_FILE;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid PoST metadata: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: field {field} is invalid: {reason}")]
    Field {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// The metadata of one PoST data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostMetadata {
    pub node_id: [u8; 32],
    pub commitment_atx_id: [u8; 32],
    pub labels_per_unit: u64,
    pub num_units: u32,
    pub max_file_size: u64,
    pub nonce: Option<u64>,
    /// The 16 stored bytes of the label at `nonce` (Go writer only).
    pub nonce_value: Option<[u8; 16]>,
    pub last_position: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    node_id: String,
    commitment_atx_id: String,
    labels_per_unit: u64,
    num_units: u32,
    max_file_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_position: Option<u64>,
}

fn decode_fixed<const N: usize>(
    path: &Path,
    field: &'static str,
    bytes: Result<Vec<u8>, String>,
) -> Result<[u8; N], MetadataError> {
    let v = bytes.map_err(|reason| MetadataError::Field {
        path: path.to_path_buf(),
        field,
        reason,
    })?;
    let len = v.len();
    v.try_into().map_err(|_| MetadataError::Field {
        path: path.to_path_buf(),
        field,
        reason: format!("expected {N} bytes, got {len}"),
    })
}

impl PostMetadata {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(METADATA_FILE)
    }

    pub fn num_labels(&self) -> u64 {
        u64::from(self.num_units).saturating_mul(self.labels_per_unit)
    }

    pub fn commitment(&self) -> [u8; 32] {
        crate::scrypt::commitment(&self.node_id, &self.commitment_atx_id)
    }

    /// Parse the JSON text of a metadata file; `path` only names it in errors.
    pub fn from_json(path: &Path, text: &[u8]) -> Result<Self, MetadataError> {
        let raw: Raw = serde_json::from_slice(text).map_err(|source| MetadataError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let b64 = |s: &str| B64.decode(s).map_err(|e| e.to_string());
        let nonce_value = match raw.nonce_value.as_deref() {
            None | Some("") => None,
            Some(s) => Some(decode_fixed::<16>(
                path,
                "NonceValue",
                hex::decode(s).map_err(|e| e.to_string()),
            )?),
        };
        Ok(Self {
            node_id: decode_fixed(path, "NodeId", b64(&raw.node_id))?,
            commitment_atx_id: decode_fixed(path, "CommitmentAtxId", b64(&raw.commitment_atx_id))?,
            labels_per_unit: raw.labels_per_unit,
            num_units: raw.num_units,
            max_file_size: raw.max_file_size,
            nonce: raw.nonce,
            nonce_value,
            last_position: raw.last_position,
        })
    }

    /// The Go writer's form: tab indentation, absent optional keys left out.
    pub fn to_json(&self) -> String {
        let raw = Raw {
            node_id: B64.encode(self.node_id),
            commitment_atx_id: B64.encode(self.commitment_atx_id),
            labels_per_unit: self.labels_per_unit,
            num_units: self.num_units,
            max_file_size: self.max_file_size,
            nonce: self.nonce,
            nonce_value: self.nonce_value.map(hex::encode),
            last_position: self.last_position,
        };
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        // Serialising a struct of strings and integers into a Vec cannot fail.
        #[allow(clippy::expect_used)]
        raw.serialize(&mut ser).expect("metadata serialises");
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Load `dir/postdata_metadata.json`; `Ok(None)` when it does not exist.
    pub fn load(dir: &Path) -> Result<Option<Self>, MetadataError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(text) => Self::from_json(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MetadataError::Read { path, source }),
        }
    }

    /// Write atomically: a temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, dir: &Path) -> Result<(), MetadataError> {
        let path = Self::path(dir);
        let tmp = dir.join(format!(".{METADATA_FILE}.tmp"));
        let werr = |source| MetadataError::Write {
            path: path.clone(),
            source,
        };
        {
            let mut f = std::fs::File::create(&tmp).map_err(werr)?;
            f.write_all(self.to_json().as_bytes()).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        std::fs::rename(&tmp, &path).map_err(werr)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO: &str = "{\n\t\"NodeId\": \"hBGTHs44tav7YR87sRVafuzZwObCZnK1Z/exYpxwqSQ=\",\n\t\"CommitmentAtxId\": \"ZuxocVjIYWfv7A/K1Lmm8+mNsHzAZaWVpbl5+KINx+I=\",\n\t\"LabelsPerUnit\": 1024,\n\t\"NumUnits\": 4,\n\t\"MaxFileSize\": 16384,\n\t\"Nonce\": 3270,\n\t\"NonceValue\": \"00013298e7375f41d5aeb3141b265cef\"\n}";
    const RS: &str = "{\n  \"NodeId\": \"hBGTHs44tav7YR87sRVafuzZwObCZnK1Z/exYpxwqSQ=\",\n  \"CommitmentAtxId\": \"ZuxocVjIYWfv7A/K1Lmm8+mNsHzAZaWVpbl5+KINx+I=\",\n  \"LabelsPerUnit\": 1024,\n  \"NumUnits\": 4,\n  \"MaxFileSize\": 16384,\n  \"Nonce\": 3270,\n  \"LastPosition\": null\n}";

    #[test]
    fn both_forms_read_and_go_form_round_trips() {
        let p = Path::new("m.json");
        let go = PostMetadata::from_json(p, GO.as_bytes()).expect("go form");
        let rs = PostMetadata::from_json(p, RS.as_bytes()).expect("rs form");
        assert_eq!(go.nonce, Some(3270));
        assert_eq!(rs.nonce, Some(3270));
        assert_eq!(rs.nonce_value, None);
        assert_eq!(
            go.nonce_value.map(hex::encode).as_deref(),
            Some("00013298e7375f41d5aeb3141b265cef")
        );
        assert_eq!(
            PostMetadata {
                nonce_value: None,
                ..go.clone()
            },
            rs
        );
        assert_eq!(go.to_json(), GO);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = GO.replace("hBGTHs44", "hBG");
        let err = PostMetadata::from_json(Path::new("m.json"), bad.as_bytes()).expect_err("bad id");
        assert!(err.to_string().contains("NodeId"), "{err}");
    }
}
