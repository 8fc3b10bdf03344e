//! File-system helpers: private directories, atomic private files, permission checks.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::rngs::OsRng;
use rand::RngCore;

use super::error::{IoStep, KeystoreError};

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;
/// Prefix of temporary files; such files are skipped (and left for removal) when listing.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

pub(crate) fn io_err(step: IoStep, path: &Path) -> impl FnOnce(io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents) and makes it exactly 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), KeystoreError> {
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent).map_err(io_err(IoStep::CreateDir, parent))?;
        }
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io_err(IoStep::CreateDir, dir)(e)),
    }
    // The umask may have removed bits; set the mode exactly.
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(io_err(IoStep::Permissions, dir))
}

/// Refuses a file or directory that group or others may access.
pub(crate) fn check_private(path: &Path) -> Result<(), KeystoreError> {
    let meta = fs::metadata(path).map_err(io_err(IoStep::Permissions, path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeystoreError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file in the same directory,
/// fsync, rename over `path`, fsync of the directory. The temporary file is removed on failure.
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tag = [0u8; 8];
    OsRng.fill_bytes(&mut tag);
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}-{}", hex::encode(tag)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: the temporary file may not exist or may already have been renamed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` and fsyncs its directory.
pub(crate) fn remove_durable(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_leaves_no_temp() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir)?;
        assert_eq!(fs::metadata(&dir)?.permissions().mode() & 0o7777, 0o700);
        let file = dir.join("x");
        write_private_atomic(&file, b"one")?;
        write_private_atomic(&file, b"two")?;
        assert_eq!(fs::read(&file)?, b"two");
        assert_eq!(fs::metadata(&file)?.permissions().mode() & 0o7777, 0o600);
        assert_eq!(fs::read_dir(&dir)?.count(), 1);
        check_private(&file)?;
        fs::set_permissions(&file, Permissions::from_mode(0o644))?;
        assert!(matches!(
            check_private(&file),
            Err(KeystoreError::InsecurePermissions { mode: 0o644, .. })
        ));
        Ok(())
    }
}
