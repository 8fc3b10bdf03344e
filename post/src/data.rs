//! The on-disk layout of PoST data (spec/post.md §3.4): `postdata_<k>.bin` files of 16-byte
//! labels, identified by the number in their name, never by their place in a listing.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bytes stored per label.
pub const LABEL_SIZE: u64 = 16;
/// The metadata file's name.
pub const METADATA_FILE: &str = "postdata_metadata.json";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("max file size {0} is below the minimum of 1024 bytes or not a multiple of 16")]
    BadMaxFileSize(u64),
    #[error("number of labels overflows: {units} units x {labels_per_unit} labels per unit")]
    Overflow { units: u32, labels_per_unit: u64 },
    #[error("cannot list data directory {dir}: {source}")]
    List { dir: PathBuf, source: std::io::Error },
}

/// Name of file number `k`.
pub fn file_name(k: u64) -> String {
    format!("postdata_{k}.bin")
}

/// The `k` of a name matching `^postdata_(\d+)\.bin$`.
pub fn parse_file_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("postdata_")?.strip_suffix(".bin")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every `postdata_<k>.bin` in `dir`, keyed by `k`. Links are followed (striped identities keep
/// links to files on other disks here).
pub fn list_files(dir: &Path) -> Result<BTreeMap<u64, PathBuf>, LayoutError> {
    let rd = std::fs::read_dir(dir).map_err(|source| LayoutError::List {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    for entry in rd {
        let entry = entry.map_err(|source| LayoutError::List {
            dir: dir.to_path_buf(),
            source,
        })?;
        if let Some(k) = entry.file_name().to_str().and_then(parse_file_index) {
            out.insert(k, entry.path());
        }
    }
    Ok(out)
}

/// How labels map onto files for one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub num_labels: u64,
    pub labels_per_file: u64,
}

impl Layout {
    pub fn new(num_units: u32, labels_per_unit: u64, max_file_size: u64) -> Result<Self, LayoutError> {
        if max_file_size < 1024 {
            return Err(LayoutError::BadMaxFileSize(max_file_size));
        }
        let num_labels = u64::from(num_units)
            .checked_mul(labels_per_unit)
            .filter(|n| n.checked_mul(LABEL_SIZE).is_some())
            .ok_or(LayoutError::Overflow {
                units: num_units,
                labels_per_unit,
            })?;
        Ok(Self {
            num_labels,
            labels_per_file: max_file_size / LABEL_SIZE,
        })
    }

    pub fn num_files(&self) -> u64 {
        self.num_labels.div_ceil(self.labels_per_file)
    }

    /// Label indices stored in file `k`.
    pub fn file_labels(&self, k: u64) -> Range<u64> {
        let start = (k * self.labels_per_file).min(self.num_labels);
        let end = ((k + 1) * self.labels_per_file).min(self.num_labels);
        start..end
    }

    /// Expected size in bytes of file `k`.
    pub fn file_size(&self, k: u64) -> u64 {
        let r = self.file_labels(k);
        (r.end - r.start) * LABEL_SIZE
    }

    pub fn total_bytes(&self) -> u64 {
        self.num_labels * LABEL_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_file_index("postdata_0.bin"), Some(0));
        assert_eq!(parse_file_index("postdata_17.bin"), Some(17));
        assert_eq!(parse_file_index("postdata_.bin"), None);
        assert_eq!(parse_file_index("postdata_1.bin.tmp"), None);
        assert_eq!(parse_file_index("postdata_-1.bin"), None);
        assert_eq!(file_name(12), "postdata_12.bin");
    }

    #[test]
    fn layout_math() {
        let l = Layout::new(4, 1024, 16384).expect("layout");
        assert_eq!(l.num_files(), 4);
        assert_eq!(l.file_labels(3), 3072..4096);
        let l = Layout::new(2, 200, 3000).expect("layout");
        assert_eq!(l.labels_per_file, 187);
        assert_eq!(l.num_files(), 3);
        assert_eq!(l.file_size(2), (400 - 374) * 16);
        assert!(Layout::new(1, 1, 100).is_err());
        assert!(Layout::new(u32::MAX, u64::MAX, 4096).is_err());
    }
}
