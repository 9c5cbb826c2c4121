//! Snapshot files: written atomically (temp file, fsync, rename), carrying a SHA-256 of their
//! content. A file whose checksum does not match is refused: a baseline edited by hand or
//! truncated by a full disk must not decide a go-live.
//!
//! Layout: `{"checksum":"sha256:<hex>",` + REST, where REST is the rest of the JSON object and
//! the hash covers exactly REST's bytes. The file stays plain JSON.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::model::Snapshot;

const PREFIX: &str = "{\"checksum\":\"sha256:";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a migval snapshot (no checksum header); was it written by `migval snapshot`?"
    )]
    NotASnapshot { path: PathBuf },
    #[error(
        "{path}: checksum mismatch (file says {expected}, content hashes to {actual}): the file was \
         modified or truncated after it was written; refusing to verify against it. Take a new \
         baseline, or restore the original file"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write `snap` to `path` atomically.
pub fn write(path: &Path, snap: &Snapshot) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let body = serde_json::to_vec(snap).map_err(|e| err(std::io::Error::other(e)))?;
    // body = `{` + REST
    let rest = &body[1..];
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "snapshot".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(PREFIX.as_bytes())?;
        f.write_all(hex(rest).as_bytes())?;
        f.write_all(b"\",")?;
        f.write_all(rest)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Read and verify a snapshot file.
pub fn read(path: &Path) -> Result<Snapshot, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let Some(after_prefix) = text.strip_prefix(PREFIX.as_bytes()) else {
        return Err(StoreError::NotASnapshot {
            path: path.to_path_buf(),
        });
    };
    if after_prefix.len() < 66 || &after_prefix[64..66] != b"\"," {
        return Err(StoreError::NotASnapshot {
            path: path.to_path_buf(),
        });
    }
    let expected = String::from_utf8_lossy(&after_prefix[..64]).to_string();
    let rest = &after_prefix[66..];
    let actual = hex(rest);
    if actual != expected {
        return Err(StoreError::Checksum {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    let mut json = Vec::with_capacity(rest.len() + 1);
    json.push(b'{');
    json.extend_from_slice(rest);
    let mut snap: Snapshot = serde_json::from_slice(&json).map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: format!("unreadable snapshot content: {e}"),
    })?;
    if snap.format != Snapshot::FORMAT {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "snapshot format {} is not supported by this migval (expects {})",
                snap.format,
                Snapshot::FORMAT
            ),
        });
    }
    for c in &mut snap.checks {
        if let crate::model::Outcome::Captured(t) = &mut c.outcome {
            t.restore_kinds().map_err(|message| StoreError::Invalid {
                path: path.to_path_buf(),
                message: format!("check `{}`: {message}", c.name),
            })?;
        }
    }
    Ok(snap)
}
