//! Where the coordinator's two secrets come from: the admin API token and the keystore
//! passphrase. An environment variable or a file named on the command line; otherwise the first
//! start generates one into a 0600 file in the data directory and says where. Never a default.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} in {path} is empty")]
    Empty { what: &'static str, path: PathBuf },
    #[error("{what} from {origin} is too short: at least {min} characters are required")]
    TooShort {
        what: &'static str,
        origin: String,
        min: usize,
    },
    #[error("cannot write generated {what} to {path}: {source}")]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a secret came from, for the start-up message (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env(&'static str),
    File(PathBuf),
    /// Generated at this start and written to this file.
    Generated(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Generated(p) => write!(f, "generated file {}", p.display()),
        }
    }
}

/// A secret string that is wiped on drop and never printed.
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One secret's sources, in order of precedence.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    pub what: &'static str,
    pub env: &'static str,
    pub file: Option<PathBuf>,
    /// Where to generate it when no source is given.
    pub generate_at: PathBuf,
    pub min_len: usize,
}

fn read_file(what: &'static str, path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_string());
    drop(Zeroizing::new(text));
    if trimmed.is_empty() {
        return Err(SecretError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(trimmed))
}

/// Write `value` to a new file readable by its owner only (0600), atomically.
pub fn write_private_file(path: &Path, value: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(value.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A fresh random token: 32 bytes, hex.
pub fn generate_token() -> Zeroizing<String> {
    let mut b = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut *b);
    Zeroizing::new(hex::encode(*b))
}

/// Resolve a secret: the environment variable, else the file given, else a file generated
/// earlier at `generate_at`, else generate one there now.
pub fn resolve(spec: &SecretSpec, env_value: Option<String>) -> Result<(Secret, Origin), SecretError> {
    let check = |s: Secret, origin: Origin| {
        if s.expose().chars().count() < spec.min_len {
            Err(SecretError::TooShort {
                what: spec.what,
                origin: origin.to_string(),
                min: spec.min_len,
            })
        } else {
            Ok((s, origin))
        }
    };
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        return check(Secret(Zeroizing::new(v)), Origin::Env(spec.env));
    }
    if let Some(path) = &spec.file {
        return check(read_file(spec.what, path)?, Origin::File(path.clone()));
    }
    if spec.generate_at.exists() {
        return check(
            read_file(spec.what, &spec.generate_at)?,
            Origin::File(spec.generate_at.clone()),
        );
    }
    let token = generate_token();
    write_private_file(&spec.generate_at, &token).map_err(|source| SecretError::Write {
        what: spec.what,
        path: spec.generate_at.clone(),
        source,
    })?;
    Ok((
        Secret(Zeroizing::new(token.to_string())),
        Origin::Generated(spec.generate_at.clone()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, file: Option<PathBuf>) -> SecretSpec {
        SecretSpec {
            what: "admin token",
            env: "SMESHFLEET_ADMIN_TOKEN",
            file,
            generate_at: dir.join("admin.token"),
            min_len: 16,
        }
    }

    #[test]
    fn env_then_file_then_generated_then_reused() {
        let d = tempfile::tempdir().expect("tempdir");
        let (s, o) = resolve(&spec(d.path(), None), Some("x".repeat(20))).expect("env");
        assert_eq!(s.expose(), "x".repeat(20));
        assert_eq!(o, Origin::Env("SMESHFLEET_ADMIN_TOKEN"));

        let f = d.path().join("given");
        std::fs::write(&f, "y".repeat(20) + "\n").expect("write");
        let (s, o) = resolve(&spec(d.path(), Some(f.clone())), None).expect("file");
        assert_eq!(s.expose(), "y".repeat(20));
        assert_eq!(o, Origin::File(f));

        let (s1, o) = resolve(&spec(d.path(), None), None).expect("generated");
        assert!(matches!(o, Origin::Generated(_)));
        assert_eq!(s1.expose().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("admin.token"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (s2, o) = resolve(&spec(d.path(), None), None).expect("reused");
        assert_eq!(s1.expose(), s2.expose());
        assert!(matches!(o, Origin::File(_)));
        assert!(!format!("{s2:?}").contains(s2.expose()));
    }

    #[test]
    fn short_or_empty_secrets_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            resolve(&spec(d.path(), None), Some("short".into())),
            Err(SecretError::TooShort { .. })
        ));
        let f = d.path().join("empty");
        std::fs::write(&f, "\n").expect("write");
        assert!(matches!(
            resolve(&spec(d.path(), Some(f)), None),
            Err(SecretError::Empty { .. })
        ));
    }
}
