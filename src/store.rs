//! Snapshot files: written atomically (temp file, fsync, rename), carrying a SHA-256 of their
//! content. A file whose checksum does not match is refused: a baseline edited by hand or
//! truncated by a full disk must not decide a go-live.
//!
//! Layout: `{"checksum":"sha256:<hex>",` + REST, where REST is the rest of the JSON object and
//! the hash covers exactly REST's bytes. The file stays plain JSON.

use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
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

fn hex_of(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `snap` to `path` atomically.
///
/// The JSON is streamed to a temporary file through the hash (a 10M-row baseline is hundreds
/// of MB: no second copy in memory); the checksum placeholder at the top is filled in last,
/// then the file is synced and renamed over `path`. Serializing and hashing + writing run on
/// two threads joined by a short queue of 1 MB buffers:
///
/// ```text
///   this thread:    serde_json -> 1 MB buffer --queue(4)--> writer thread: SHA-256, write(2)
/// ```
pub fn write(path: &Path, snap: &Snapshot) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
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
        f.write_all(&[b'0'; 64])?;
        f.write_all(b"\",")?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (mut f, hasher) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> io::Result<(fs::File, Sha256)> {
                let mut hasher = Sha256::new();
                // serde writes `{` + REST; the `{` is already in PREFIX.
                let mut skip = 1;
                for buf in rx {
                    let skipped = skip.min(buf.len());
                    skip -= skipped;
                    hasher.update(&buf[skipped..]);
                    f.write_all(&buf[skipped..])?;
                }
                f.write_all(b"\n")?;
                Ok((f, hasher))
            });
            let mut body = ChunkSender {
                tx: Some(tx),
                buf: Vec::with_capacity(CHUNK),
            };
            let serialized = serde_json::to_writer(&mut body, snap)
                .map_err(io::Error::other)
                .and_then(|()| body.finish());
            // Closing the queue ends the writer; its error (a full disk) explains a failed send.
            drop(body);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the snapshot writer thread panicked")));
            match (written, serialized) {
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
                (Ok(done), Ok(())) => Ok(done),
            }
        })?;
        crate::trace!("snapshot serialized and written");
        f.seek(SeekFrom::Start(PREFIX.len() as u64))?;
        f.write_all(hex_of(&hasher.finalize()).as_bytes())?;
        f.sync_all()?;
        crate::trace!("snapshot synced");
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

/// Size of the buffers handed from the serializer to the writer thread.
const CHUNK: usize = 1 << 20;

/// Collects serialized bytes into [`CHUNK`]-sized buffers and queues them for the writer.
struct ChunkSender {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        match &self.tx {
            Some(tx) => tx
                .send(full)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "snapshot writer stopped")),
            None => Ok(()),
        }
    }

    /// Queue what is left and close the queue.
    fn finish(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx = None;
        Ok(())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Read and verify a snapshot file.
pub fn read(path: &Path) -> Result<Snapshot, StoreError> {
    open(path)?.parse()
}

/// A snapshot file whose checksum has been verified, not yet parsed.
pub struct Verified {
    path: PathBuf,
    /// `{` + REST: the JSON object.
    json: Vec<u8>,
}

/// Read a snapshot file and verify its checksum (fast: no parsing). [`Verified::parse`] then
/// builds the snapshot, which for big baselines is worth doing while the database works.
pub fn open(path: &Path) -> Result<Verified, StoreError> {
    let mut bytes = fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    let Some(after_prefix) = bytes.strip_prefix(PREFIX.as_bytes()) else {
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
    let actual = hex_of(&Sha256::digest(&after_prefix[66..]));
    if actual != expected {
        return Err(StoreError::Checksum {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    // Turn the bytes into `{` + REST in place.
    let start = PREFIX.len() + 66 - 1;
    bytes.drain(..start);
    bytes[0] = b'{';
    Ok(Verified {
        path: path.to_path_buf(),
        json: bytes,
    })
}

impl Verified {
    /// Parse the verified content.
    pub fn parse(self) -> Result<Snapshot, StoreError> {
        let path = self.path;
        let mut snap: Snapshot =
            serde_json::from_slice(&self.json).map_err(|e| StoreError::Invalid {
                path: path.clone(),
                message: format!("unreadable snapshot content: {e}"),
            })?;
        if snap.format != Snapshot::FORMAT {
            return Err(StoreError::Invalid {
                path: path.clone(),
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
                    path: path.clone(),
                    message: format!("check `{}`: {message}", c.name),
                })?;
            }
        }
        Ok(snap)
    }
}
