//! Snapshot files: written atomically (temp file, fsync, rename), carrying a SHA-256 of their
//! content and, when a signing key is given, an HMAC-SHA256 of it. A file whose checksum does
//! not match is refused: a baseline edited by hand or truncated by a full disk must not decide a
//! go-live. What each of checksum, expected hash and signature protects against:
//! [`crate::integrity`].
//!
//! Layout: a JSON line, then (format 2) the binary sections of the checks captured as
//! [`crate::model::Section`]s, in check order, back to back:
//!
//! ```text
//!   {"checksum":"sha256:<hex>",REST                                  unsigned
//!   {"checksum":"sha256:<hex>","signature":"hmac-sha256:<hex>",REST   signed
//!   SECTIONS                                                          format 2 only
//! ```
//!
//! REST is the rest of the JSON object. Without sections (format 1, what every migval before
//! format 2 wrote and still reads) the checksum, the signature and the hash `snapshot` prints
//! (for `verify --baseline-sha256`) cover exactly REST's bytes and the file ends with a newline;
//! with sections they cover REST, the newline and every byte of SECTIONS. Only the JSON line is
//! held in memory when reading; the sections are hashed as they stream past, then read again
//! one at a time by the comparison, each checked against its own SHA-256.

use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::input::{DEFAULT_MAX_BASELINE_BYTES, InputError};
use crate::integrity::{SigningKey, hex, same_hex};
use crate::model::{Outcome, Snapshot};

const PREFIX: &str = "{\"checksum\":\"sha256:";
const SIG_PREFIX: &str = "\"signature\":\"hmac-sha256:";

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
        source: InputError,
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
    #[error(
        "{path}: its SHA-256 is {actual}, not {expected} as given with --baseline-sha256: this is \
         not the baseline the change record names (a swapped or edited file); refusing to verify \
         against it. Find the file `migval snapshot` wrote with that hash, or take a new baseline \
         and record its hash"
    )]
    NotTheExpected {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "{path} is not signed, and a signing key was given (--signing-key-file or \
         MIGVAL_SIGNING_KEY): refusing an unsigned baseline. Use the file `migval snapshot` wrote \
         with that key, or take a new baseline with it"
    )]
    Unsigned { path: PathBuf },
    #[error(
        "{path}: the signature does not match the content under the given key: the file was \
         edited after it was signed, or signed with another key; refusing to verify against it. \
         Restore the original file, or take a new baseline with the key"
    )]
    BadSignature { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How a written snapshot can be checked later.
#[derive(Debug, Clone)]
pub struct Written {
    /// SHA-256 of the content (what `verify --baseline-sha256` expects).
    pub sha256: String,
    /// Whether an HMAC signature was stored.
    pub signed: bool,
}

/// What [`open`] checks besides the checksum.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Files larger than this are refused before they are read.
    pub max_bytes: u64,
    /// `--baseline-sha256`: the content must hash to this.
    pub expected_sha256: Option<String>,
    /// With a key, the file must carry a valid signature under it.
    pub key: Option<SigningKey>,
}

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            max_bytes: DEFAULT_MAX_BASELINE_BYTES,
            expected_sha256: None,
            key: None,
        }
    }
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
pub fn write(path: &Path, snap: &Snapshot) -> Result<Written, StoreError> {
    write_signed(path, snap, None)
}

/// [`write`], signed with `key` when one is given.
pub fn write_signed(
    path: &Path,
    snap: &Snapshot,
    key: Option<&SigningKey>,
) -> Result<Written, StoreError> {
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
        if key.is_some() {
            f.write_all(SIG_PREFIX.as_bytes())?;
            f.write_all(&[b'0'; 64])?;
            f.write_all(b"\",")?;
        }
        let sectioned = has_sections(snap);
        if sectioned != (snap.format == Snapshot::FORMAT_SECTIONS) {
            return Err(io::Error::other(format!(
                "internal: a snapshot of format {} {} sections",
                snap.format,
                if sectioned { "with" } else { "without" }
            )));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (mut f, hasher, mac) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> io::Result<(fs::File, Sha256, _)> {
                let mut hasher = Sha256::new();
                let mut mac = key.map(SigningKey::mac);
                // serde writes `{` + REST; the `{` is already in PREFIX.
                let mut skip = 1;
                for buf in rx {
                    let skipped = skip.min(buf.len());
                    skip -= skipped;
                    hasher.update(&buf[skipped..]);
                    if let Some(m) = &mut mac {
                        m.update(&buf[skipped..]);
                    }
                    f.write_all(&buf[skipped..])?;
                }
                if !sectioned {
                    f.write_all(b"\n")?;
                }
                Ok((f, hasher, mac))
            });
            let mut body = ChunkSender {
                tx: Some(tx),
                buf: Vec::with_capacity(CHUNK),
            };
            let serialized = serde_json::to_writer(&mut body, snap)
                .map_err(io::Error::other)
                .and_then(|()| write_sections(&mut body, snap))
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
        let sha256 = hex(&hasher.finalize());
        f.seek(SeekFrom::Start(PREFIX.len() as u64))?;
        f.write_all(sha256.as_bytes())?;
        let signed = mac.is_some();
        if let Some(m) = mac {
            f.write_all(b"\",")?;
            f.write_all(SIG_PREFIX.as_bytes())?;
            f.write_all(hex(&m.finalize().into_bytes()).as_bytes())?;
        }
        f.sync_all()?;
        crate::trace!("snapshot synced");
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Written { sha256, signed })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

fn has_sections(snap: &Snapshot) -> bool {
    snap.checks
        .iter()
        .any(|c| matches!(c.outcome, Outcome::Streamed(_)))
}

/// After the JSON: a newline, then every section's bytes in check order.
fn write_sections(body: &mut ChunkSender, snap: &Snapshot) -> io::Result<()> {
    if !has_sections(snap) {
        return Ok(());
    }
    body.write_all(b"\n")?;
    for c in &snap.checks {
        if let Outcome::Streamed(s) = &c.outcome {
            crate::section::copy_to(s, &c.name, body).map_err(io::Error::other)?;
        }
    }
    Ok(())
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

/// Read and verify a snapshot file (default size limit, no expected hash, no key).
pub fn read(path: &Path) -> Result<Snapshot, StoreError> {
    open(path, &ReadOptions::default())?.parse()
}

/// A snapshot file whose checksum (and expected hash, and signature) has been verified, not yet
/// parsed.
pub struct Verified {
    path: PathBuf,
    /// `{` + REST: the JSON object.
    json: Vec<u8>,
    /// Where the sections start in the file, and how many bytes follow (format 2).
    sections: Option<(u64, u64)>,
    /// SHA-256 of the content.
    pub sha256: String,
    /// The file carries a signature that was not checked (no key given).
    pub signature_unchecked: bool,
}

/// Bytes read at a time while hashing the sections.
const READ_CHUNK: usize = 1 << 20;

/// Read a snapshot file and verify its checksum, and what `opts` asks (fast: no parsing).
/// [`Verified::parse`] then builds the snapshot, which for big baselines is worth doing while
/// the database works. Only the JSON line is kept; `opts.max_bytes` bounds it (sections are
/// streamed through the hash, whatever their size).
pub fn open(path: &Path, opts: &ReadOptions) -> Result<Verified, StoreError> {
    use std::io::{BufRead, Read};
    let read_err = |e: io::Error| StoreError::Read {
        path: path.to_path_buf(),
        source: InputError::Io(e),
    };
    let file = crate::input::open_readable(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = io::BufReader::with_capacity(READ_CHUNK, file);
    let mut bytes = Vec::new();
    (&mut reader)
        .take(opts.max_bytes.saturating_add(1))
        .read_until(b'\n', &mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > opts.max_bytes {
        return Err(StoreError::Read {
            path: path.to_path_buf(),
            source: InputError::TooLarge {
                size: String::new(),
                limit: crate::input::human(opts.max_bytes),
                what: "a larger baseline needs --max-baseline-size (verify, diff, migrate)",
            },
        });
    }
    let had_newline = bytes.last() == Some(&b'\n');
    if had_newline {
        bytes.pop();
    }
    let not_a_snapshot = || StoreError::NotASnapshot {
        path: path.to_path_buf(),
    };
    let after_prefix = bytes
        .strip_prefix(PREFIX.as_bytes())
        .ok_or_else(not_a_snapshot)?;
    if after_prefix.len() < 66 || &after_prefix[64..66] != b"\"," {
        return Err(not_a_snapshot());
    }
    let expected = String::from_utf8_lossy(&after_prefix[..64]).to_string();
    let mut header = PREFIX.len() + 66;
    let signature = match bytes[header..].strip_prefix(SIG_PREFIX.as_bytes()) {
        Some(sig) if sig.len() >= 66 && &sig[64..66] == b"\"," => {
            header += SIG_PREFIX.len() + 66;
            Some(String::from_utf8_lossy(&sig[..64]).to_string())
        }
        Some(_) => return Err(not_a_snapshot()),
        None => None,
    };
    // Hash the JSON, then whatever follows it (the sections), streamed.
    let content = &bytes[header..];
    let mut sha = Sha256::new();
    sha.update(content);
    let mut mac = opts.key.as_ref().map(|k| {
        let mut m = k.mac();
        m.update(content);
        m
    });
    let mut whole = opts.expected_sha256.as_ref().map(|_| {
        let mut w = Sha256::new();
        w.update(&bytes);
        w
    });
    let mut tail = 0u64;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if tail == 0 {
            // The newline ending the JSON line is content when sections follow it.
            sha.update(b"\n");
            if let Some(m) = &mut mac {
                m.update(b"\n");
            }
        }
        sha.update(&chunk[..n]);
        if let Some(m) = &mut mac {
            m.update(&chunk[..n]);
        }
        if let Some(w) = &mut whole {
            if tail == 0 && had_newline {
                w.update(b"\n");
            }
            w.update(&chunk[..n]);
        }
        tail += n as u64;
    }
    let sections = (tail > 0).then_some((bytes.len() as u64 + 1, tail));
    let actual = hex(&sha.finalize());
    if actual != expected {
        return Err(StoreError::Checksum {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    if let Some(want) = &opts.expected_sha256
        && !same_hex(want, &actual)
    {
        // `sha256sum baseline.json` is accepted too: the hash of the whole file.
        let mut whole = whole.unwrap_or_default();
        if had_newline && tail == 0 {
            whole.update(b"\n");
        }
        if !same_hex(want, &hex(&whole.finalize())) {
            return Err(StoreError::NotTheExpected {
                path: path.to_path_buf(),
                expected: want.clone(),
                actual,
            });
        }
    }
    let signature_unchecked = match (mac, &signature) {
        (Some(m), Some(sig)) => {
            if !same_hex(sig, &hex(&m.finalize().into_bytes())) {
                return Err(StoreError::BadSignature {
                    path: path.to_path_buf(),
                });
            }
            false
        }
        (Some(_), None) => {
            return Err(StoreError::Unsigned {
                path: path.to_path_buf(),
            });
        }
        (None, sig) => sig.is_some(),
    };
    // Turn the bytes into `{` + REST in place.
    bytes.drain(..header - 1);
    bytes[0] = b'{';
    Ok(Verified {
        path: path.to_path_buf(),
        json: bytes,
        sections,
        sha256: actual,
        signature_unchecked,
    })
}

impl Verified {
    /// Parse the verified content.
    pub fn parse(self) -> Result<Snapshot, StoreError> {
        let path = self.path;
        let invalid = |message: String| StoreError::Invalid {
            path: path.clone(),
            message,
        };
        let mut snap: Snapshot = serde_json::from_slice(&self.json)
            .map_err(|e| invalid(format!("unreadable snapshot content: {e}")))?;
        let want = if self.sections.is_some() {
            Snapshot::FORMAT_SECTIONS
        } else {
            Snapshot::FORMAT
        };
        if snap.format != want {
            return Err(invalid(if snap.format == Snapshot::FORMAT_SECTIONS {
                "snapshot format 2 without its sections: the file was cut short after its JSON \
                 line; restore the original file, or take a new baseline"
                    .to_string()
            } else {
                format!(
                    "snapshot format {} is not supported by this migval (expects {} or {})",
                    snap.format,
                    Snapshot::FORMAT,
                    Snapshot::FORMAT_SECTIONS
                )
            }));
        }
        let (mut offset, total) = self.sections.unwrap_or((0, 0));
        let end = offset + total;
        for c in &mut snap.checks {
            match &mut c.outcome {
                crate::model::Outcome::Captured(t) => {
                    t.restore_kinds()
                        .map_err(|message| invalid(format!("check `{}`: {message}", c.name)))?;
                }
                crate::model::Outcome::Streamed(s) => {
                    if offset + s.bytes > end {
                        return Err(invalid(format!(
                            "check `{}`: its section runs past the end of the file (cut short?)",
                            c.name
                        )));
                    }
                    s.source = crate::section::Source::in_file(&path, offset, s.bytes);
                    offset += s.bytes;
                }
                _ => {}
            }
        }
        if offset != end {
            return Err(invalid(format!(
                "{} bytes after the last section: not a file `migval snapshot` wrote",
                end - offset
            )));
        }
        Ok(snap)
    }
}
