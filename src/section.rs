//! Binary sections: a large keyed capture (a `rows` check's `(key..., fingerprint)` per row)
//! kept out of memory, written once in key order and read back sequentially.
//!
//! ```text
//!   capture:  server rows --decode--> SectionWriter --1 MB buffer--> spill file (temp dir,
//!             anonymous: unlinked at creation, so not even `kill -9` leaves it behind)
//!   ranges:   part 0 | part 1 | ... (key ranges captured on several connections) --concat-->
//!             one section: the parts' bytes in key order, one SHA-256 over all of them
//!   store:    snapshot file = header + JSON line + every section's bytes, in check order
//!   compare:  SectionReader (baseline file, at the section's offset) ==merge== server rows
//!             (or a part of it: `open_part`, against the same key range of the post-state)
//! ```
//!
//! A section captured in key ranges lists its parts (rows, bytes, SHA-256 and the first key
//! column's lower bound of each): verify hashes the same ranges and merges each against its
//! part. A reader of the whole section ignores the parts.
//!
//! A section that keeps row values (`keep = "values"`) is deflate-compressed as a whole
//! (`compressed`); its length and SHA-256 are those of the compressed bytes in the file.
//!
//! A row is `u32 length` + its cells; a cell is one tag byte and its bytes (little endian):
//! `0` NULL, `1`/`2` false/true, `3` i64, `4` decimal text, `5` wide numeric text, `6` f64
//! bits, `7` text (texts as `u32 length` + UTF-8). The JSON of the snapshot records each
//! section's row count, byte length and SHA-256, and a reader checks all three as it reaches
//! the end: a section cut short or edited is refused even if the file changed after its
//! checksum was verified.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::integrity::hex;
use crate::model::{Column, Comparison, GroupStats, Section, Table, Value};

/// Buffer size of section writers and readers.
const BUF: usize = 1 << 20;

/// Largest row accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_ROW: u32 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: the section of check `{check}` is cut short or damaged ({what}): the file \
         changed after it was written; refusing to compare against it. Restore the original \
         file, or take a new baseline"
    )]
    Damaged {
        path: PathBuf,
        check: String,
        what: String,
    },
}

/// Where a section's bytes are: one or more segments of files (the snapshot file at the
/// section's offset, or the spill files of its parts, in order).
#[derive(Debug, Clone, Default)]
pub struct Source {
    segments: Vec<Segment>,
    /// A post-state compared against its baseline while it arrived from the server: no bytes
    /// of its own unless it was also kept (`--save-after`).
    compared: Option<Arc<Compared>>,
}

/// What a rows check's merge found: counts, how many differences `allow_changes` allows, and
/// every differing key in key order.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub stats: GroupStats,
    pub allowed: usize,
    pub changes: Vec<Comparison>,
}

impl Merged {
    /// The merge of the next key range.
    pub fn append(&mut self, next: Merged) {
        let (s, n) = (&mut self.stats, next.stats);
        s.baseline_groups += n.baseline_groups;
        s.after_groups += n.after_groups;
        s.changed += n.changed;
        s.appeared += n.appeared;
        s.disappeared += n.disappeared;
        s.failing += n.failing;
        self.allowed += next.allowed;
        self.changes.extend(next.changes);
    }
}

/// A merge done as the post-state arrived, and the baseline section it was done against (its
/// SHA-256).
#[derive(Debug)]
pub struct Compared {
    pub against: String,
    pub outcome: Result<Merged, String>,
}

#[derive(Debug, Clone)]
struct Segment {
    backing: Arc<Backing>,
    offset: u64,
    len: u64,
}

impl Source {
    /// `len` bytes of the file at `path`, from `offset`.
    pub fn in_file(path: &Path, offset: u64, len: u64) -> Source {
        Source {
            segments: vec![Segment {
                backing: Arc::new(Backing::Named(path.to_path_buf())),
                offset,
                len,
            }],
            compared: None,
        }
    }

    /// The file the section is read from, for a section of a snapshot file (`None` for a spill).
    pub fn path(&self) -> Option<&Path> {
        match self.segments.first().map(|s| s.backing.as_ref()) {
            Some(Backing::Named(p)) => Some(p),
            _ => None,
        }
    }

    fn label(&self) -> PathBuf {
        match self.segments.first().map(|s| s.backing.as_ref()) {
            Some(Backing::Named(p)) => p.clone(),
            _ => spill_label(),
        }
    }

    /// A section that was compared against its baseline as it arrived (see [`Compared`]).
    pub fn compared_as(mut self, compared: Compared) -> Source {
        self.compared = Some(Arc::new(compared));
        self
    }

    pub fn compared(&self) -> Option<&Compared> {
        self.compared.as_deref()
    }

    fn attached(&self) -> bool {
        !self.segments.is_empty()
    }

    /// A reader of the bytes `[start, start + len)` of the section.
    fn span(&self, start: u64, len: u64) -> io::Result<Span> {
        let mut pieces = VecDeque::new();
        let (mut at, mut want) = (0u64, len);
        for seg in &self.segments {
            let seg_end = at + seg.len;
            if want > 0 && start < seg_end {
                let skip = start.saturating_sub(at);
                let n = (seg.len - skip).min(want);
                let handle = match seg.backing.as_ref() {
                    Backing::Named(p) => Handle::Own(fs::File::open(p)?),
                    Backing::Spill(_) => Handle::Shared(seg.backing.clone()),
                };
                pieces.push_back((handle, seg.offset + skip, seg.offset + skip + n));
                want -= n;
            }
            at = seg_end;
        }
        Ok(Span { pieces })
    }
}

/// The file behind a segment: a named file (the snapshot file), or an anonymous spill file
/// that has no name in the directory and goes when the last section using it does (or the
/// process ends, however it ends).
#[derive(Debug)]
enum Backing {
    Named(PathBuf),
    Spill(fs::File),
}

fn spill_label() -> PathBuf {
    std::env::temp_dir().join("(temporary section file)")
}

/// An open file of a span: its own (a named file), or a spill file shared by its readers
/// (positional reads, so each reader keeps its own position).
enum Handle {
    Own(fs::File),
    Shared(Arc<Backing>),
}

impl Handle {
    fn file(&self) -> Option<&fs::File> {
        match self {
            Handle::Own(f) => Some(f),
            Handle::Shared(b) => match b.as_ref() {
                Backing::Spill(f) => Some(f),
                Backing::Named(_) => None,
            },
        }
    }
}

/// Reads byte ranges of files one after another, by position.
struct Span {
    pieces: VecDeque<(Handle, u64, u64)>,
}

impl Read for Span {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some((handle, pos, end)) = self.pieces.front_mut() else {
                return Ok(0);
            };
            if *pos >= *end || buf.is_empty() {
                if buf.is_empty() {
                    return Ok(0);
                }
                self.pieces.pop_front();
                continue;
            }
            let want = usize::try_from(*end - *pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let Some(file) = handle.file() else {
                return Err(io::Error::other("a section file is not open"));
            };
            let n = read_at(file, &mut buf[..want], *pos)?;
            if n == 0 {
                // The file is shorter than the section says: the reader reports it cut short.
                self.pieces.clear();
                return Ok(0);
            }
            *pos += n as u64;
            return Ok(n);
        }
    }
}

#[cfg(unix)]
fn read_at(f: &fs::File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, pos)
}

#[cfg(windows)]
fn read_at(f: &fs::File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, pos)
}

/// Hashes and counts what goes through it to the file.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes what is read through it.
struct HashingRead<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Read for HashingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

type FileOut = Hashing<BufWriter<fs::File>>;

enum Sink {
    Plain(FileOut),
    Deflate(flate2::write::DeflateEncoder<FileOut>),
}

type FileIn = HashingRead<BufReader<Span>>;

enum Tap {
    Plain(FileIn),
    // Boxed: the decoder's state is several hundred bytes (more with the zlib backend a
    // feature build may select), the plain reader a few dozen.
    Deflate(Box<BufReader<flate2::read::DeflateDecoder<FileIn>>>),
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Tap::Plain(r) => r.read(buf),
            Tap::Deflate(r) => r.read(buf),
        }
    }
}

impl Tap {
    /// Past the last row: read what is left of the section through the hash (a compressed
    /// stream may end before its bytes do) and return the hash.
    fn finish(self) -> io::Result<String> {
        let mut raw = match self {
            Tap::Plain(r) => r,
            Tap::Deflate(r) => r.into_inner().into_inner(),
        };
        io::copy(&mut raw, &mut io::sink())?;
        Ok(hex(&raw.sha.finalize()))
    }
}

/// Writes one section to its own spill file in the temporary directory: an anonymous file
/// (`O_TMPFILE`, or created and unlinked at once where that is missing), so that nothing is
/// left behind when migval ends, normally, by Ctrl-C or by `kill -9`.
pub struct SectionWriter {
    out: Sink,
    row: Vec<u8>,
    rows: u64,
}

impl SectionWriter {
    /// `compress`: deflate the section (worth it for row values, not for fingerprints).
    pub fn new(compress: bool) -> Result<SectionWriter, SectionError> {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| remove_stale_spills(&std::env::temp_dir()));
        let file = tempfile::tempfile().map_err(|source| SectionError::Io {
            path: spill_label(),
            source,
        })?;
        let file = Hashing {
            inner: BufWriter::with_capacity(BUF, file),
            sha: Sha256::new(),
            bytes: 0,
        };
        Ok(SectionWriter {
            out: if compress {
                Sink::Deflate(flate2::write::DeflateEncoder::new(
                    file,
                    flate2::Compression::fast(),
                ))
            } else {
                Sink::Plain(file)
            },
            row: Vec::with_capacity(256),
            rows: 0,
        })
    }

    fn io(source: io::Error) -> SectionError {
        SectionError::Io {
            path: spill_label(),
            source,
        }
    }

    /// Append one row (its cells in column order).
    pub fn push(&mut self, cells: &[Value]) -> Result<(), SectionError> {
        self.row.clear();
        self.row.extend_from_slice(&[0; 4]);
        for c in cells {
            encode(c, &mut self.row);
        }
        let len = u32::try_from(self.row.len() - 4).unwrap_or(u32::MAX);
        self.row[..4].copy_from_slice(&len.to_le_bytes());
        self.rows += 1;
        let r = match &mut self.out {
            Sink::Plain(f) => f.write_all(&self.row),
            Sink::Deflate(f) => f.write_all(&self.row),
        };
        r.map_err(Self::io)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flush and describe the section.
    pub fn finish(self, columns: Vec<Column>, key_len: usize) -> Result<Section, SectionError> {
        let (compressed, ended) = match self.out {
            Sink::Plain(f) => (false, Ok(f)),
            Sink::Deflate(f) => (true, f.finish()),
        };
        let mut f = ended.map_err(Self::io)?;
        f.flush().map_err(Self::io)?;
        let (bytes, sha256) = (f.bytes, hex(&f.sha.finalize()));
        let file = f.inner.into_inner().map_err(|e| Self::io(e.into_error()))?;
        Ok(Section {
            columns,
            key_len,
            rows: self.rows,
            bytes,
            sha256,
            compressed,
            parts: Vec::new(),
            source: Source {
                segments: vec![Segment {
                    backing: Arc::new(Backing::Spill(file)),
                    offset: 0,
                    len: bytes,
                }],
                compared: None,
            },
        })
    }
}

/// Remove the named spill files (`migval-<pid>-<n>.section`) that migval versions before the
/// anonymous ones left in `dir` when they were killed, where process `<pid>` is gone (Linux:
/// no `/proc/<pid>`). Best effort: a file that cannot be removed stays.
fn remove_stale_spills(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("migval-"))
            .and_then(|n| n.strip_suffix(".section"))
            .and_then(|n| n.split_once('-'))
            .filter(|(_, seq)| seq.bytes().all(|b| b.is_ascii_digit()) && !seq.is_empty())
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// One section from the sections of its key ranges, in key order (`parts[i].1`: the first key
/// column's lower bound of part `i`, `None` for the first). The bytes stay where they are; the
/// section's SHA-256 is computed over all of them, in order (one sequential read, from the page
/// cache as a rule). Sections of one part come back as they are.
pub fn concat(parts: Vec<(Section, Option<String>)>, check: &str) -> Result<Section, SectionError> {
    let mut parts = parts;
    if parts.len() == 1 {
        return Ok(parts.remove(0).0);
    }
    let Some((first, _)) = parts.first() else {
        return Err(SectionError::Damaged {
            path: spill_label(),
            check: check.into(),
            what: "a capture in key ranges came back without any range".into(),
        });
    };
    if parts
        .iter()
        .any(|(p, _)| p.compressed || !p.parts.is_empty())
    {
        return Err(SectionError::Damaged {
            path: spill_label(),
            check: check.into(),
            what: "compressed or already split sections cannot be put together".into(),
        });
    }
    let (columns, key_len) = (first.columns.clone(), first.key_len);
    let mut whole = Section {
        columns,
        key_len,
        rows: 0,
        bytes: 0,
        sha256: String::new(),
        compressed: false,
        parts: Vec::new(),
        source: Source::default(),
    };
    for (p, from) in parts {
        whole.rows += p.rows;
        whole.bytes += p.bytes;
        whole.parts.push(crate::model::SectionPart {
            rows: p.rows,
            bytes: p.bytes,
            sha256: p.sha256,
            from,
        });
        whole.source.segments.extend(p.source.segments);
    }
    let io_err = |source| SectionError::Io {
        path: spill_label(),
        source,
    };
    let mut sha = Sha256::new();
    let mut span =
        BufReader::with_capacity(BUF, whole.source.span(0, whole.bytes).map_err(io_err)?);
    let mut hashed = 0u64;
    loop {
        let buf = span.fill_buf().map_err(io_err)?;
        if buf.is_empty() {
            break;
        }
        sha.update(buf);
        let n = buf.len();
        hashed += n as u64;
        span.consume(n);
    }
    if hashed != whole.bytes {
        return Err(SectionError::Damaged {
            path: spill_label(),
            check: check.into(),
            what: format!("{hashed} bytes where {} were written", whole.bytes),
        });
    }
    whole.sha256 = hex(&sha.finalize());
    Ok(whole)
}

fn encode(v: &Value, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, tag: u8, s: &str| {
        out.push(tag);
        out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    match v {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Dec(d) => text(out, 4, &crate::model::decimal_text(d)),
        Value::BigNum(s) => text(out, 5, s),
        Value::Float(x) => {
            out.push(6);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::Text(s) => text(out, 7, s),
    }
}

/// Decode one cell from the front of `buf`.
fn decode(buf: &mut &[u8]) -> Result<Value, String> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if buf.len() < n {
            return Err("a cell runs past the end of its row".into());
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn eight(buf: &mut &[u8]) -> Result<[u8; 8], String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(take(buf, 8)?);
        Ok(a)
    }
    fn text<'a>(buf: &mut &'a [u8]) -> Result<&'a str, String> {
        let mut n = [0u8; 4];
        n.copy_from_slice(take(buf, 4)?);
        let n = usize::try_from(u32::from_le_bytes(n)).map_err(|e| e.to_string())?;
        std::str::from_utf8(take(buf, n)?).map_err(|_| "a text cell is not UTF-8".to_string())
    }
    let tag = take(buf, 1)?[0];
    Ok(match tag {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Int(i64::from_le_bytes(eight(buf)?)),
        4 => {
            let s = text(buf)?;
            match crate::model::numeric_from_text(s) {
                v @ (Value::Dec(_) | Value::BigNum(_)) => v,
                _ => return Err(format!("`{s}` is not a decimal")),
            }
        }
        5 => Value::BigNum(text(buf)?.into()),
        6 => Value::Float(f64::from_bits(u64::from_le_bytes(eight(buf)?))),
        7 => Value::Text(text(buf)?.into()),
        t => return Err(format!("unknown cell tag {t}")),
    })
}

/// Reads a section's rows in order, checking its length, row count and SHA-256 at the end.
pub struct SectionReader {
    path: PathBuf,
    check: String,
    file: Option<Tap>,
    width: usize,
    expect_rows: u64,
    expect_sha: String,
    rows: u64,
    buf: Vec<u8>,
    cells: Vec<Value>,
}

impl SectionReader {
    /// Open `s` (of check `check`, named in errors).
    pub fn open(s: &Section, check: &str) -> Result<SectionReader, SectionError> {
        SectionReader::open_span(s, check, 0, s.bytes, s.rows, &s.sha256)
    }

    /// Open part `i` of a section captured in key ranges (its own row count and SHA-256 are
    /// checked at its end).
    pub fn open_part(s: &Section, i: usize, check: &str) -> Result<SectionReader, SectionError> {
        let Some(part) = s.parts.get(i) else {
            return Err(SectionError::Damaged {
                path: s.source.label(),
                check: check.into(),
                what: format!("it has no key range {i}"),
            });
        };
        let start: u64 = s.parts[..i].iter().map(|p| p.bytes).sum();
        SectionReader::open_span(s, check, start, part.bytes, part.rows, &part.sha256)
    }

    fn open_span(
        s: &Section,
        check: &str,
        start: u64,
        len: u64,
        rows: u64,
        sha: &str,
    ) -> Result<SectionReader, SectionError> {
        let path = s.source.label();
        if !s.source.attached() {
            return Err(SectionError::Damaged {
                path,
                check: check.into(),
                what: "the section has no data attached".into(),
            });
        }
        let span = s
            .source
            .span(start, len)
            .map_err(|source| SectionError::Io {
                path: path.clone(),
                source,
            })?;
        let raw = HashingRead {
            inner: BufReader::with_capacity(BUF, span),
            sha: Sha256::new(),
        };
        let tap = if s.compressed {
            Tap::Deflate(Box::new(BufReader::with_capacity(
                BUF,
                flate2::read::DeflateDecoder::new(raw),
            )))
        } else {
            Tap::Plain(raw)
        };
        Ok(SectionReader {
            path,
            check: check.into(),
            file: Some(tap),
            width: s.columns.len(),
            expect_rows: rows,
            expect_sha: sha.to_string(),
            rows: 0,
            buf: Vec::new(),
            cells: Vec::new(),
        })
    }

    fn damaged(&self, what: impl Into<String>) -> SectionError {
        SectionError::Damaged {
            path: self.path.clone(),
            check: self.check.clone(),
            what: what.into(),
        }
    }

    /// The row [`SectionReader::next_row`] read last.
    pub fn row(&self) -> &[Value] {
        &self.cells
    }

    /// The next row, or `None` after the last one (once its checks passed).
    pub fn next_row(&mut self) -> Result<Option<&[Value]>, SectionError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(None);
        };
        // A damaged compressed stream reads as an error, not as an end.
        let damaged = |e: &io::Error| {
            e.kind() == io::ErrorKind::InvalidInput
                || e.kind() == io::ErrorKind::InvalidData
                || e.kind() == io::ErrorKind::UnexpectedEof
        };
        let mut len = [0u8; 4];
        let got = match read_full(file, &mut len) {
            Ok(n) => n,
            Err(e) if damaged(&e) => return Err(self.damaged(e.to_string())),
            Err(source) => {
                return Err(SectionError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        if got == 0 {
            let Some(tap) = self.file.take() else {
                return Ok(None);
            };
            if self.rows != self.expect_rows {
                return Err(self.damaged(format!(
                    "{} rows where the snapshot says {}",
                    self.rows, self.expect_rows
                )));
            }
            let sha = tap.finish().map_err(|source| SectionError::Io {
                path: self.path.clone(),
                source,
            })?;
            if sha != self.expect_sha {
                return Err(self.damaged("its content does not match its SHA-256"));
            }
            return Ok(None);
        }
        if got < 4 {
            return Err(self.damaged("the last row is cut short"));
        }
        let n = u32::from_le_bytes(len);
        if n > MAX_ROW {
            return Err(self.damaged(format!("a row claims {n} bytes")));
        }
        self.buf.resize(usize::try_from(n).unwrap_or(usize::MAX), 0);
        let got = match read_full(file, &mut self.buf) {
            Ok(n) => n,
            Err(e) if damaged(&e) => return Err(self.damaged(e.to_string())),
            Err(source) => {
                return Err(SectionError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        if got < self.buf.len() {
            return Err(self.damaged("the last row is cut short"));
        }
        self.cells.clear();
        let mut rest = self.buf.as_slice();
        for _ in 0..self.width {
            match decode(&mut rest) {
                Ok(v) => self.cells.push(v),
                Err(e) => return Err(self.damaged(format!("row {}: {e}", self.rows + 1))),
            }
        }
        if !rest.is_empty() {
            return Err(self.damaged(format!("row {} has extra bytes", self.rows + 1)));
        }
        self.rows += 1;
        Ok(Some(&self.cells))
    }
}

/// Read until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A whole section in memory (to compare it with a capture of an older format).
pub fn to_table(s: &Section, check: &str) -> Result<Table, SectionError> {
    let mut t = Table::new(s.columns.clone(), s.key_len);
    let mut r = SectionReader::open(s, check)?;
    while let Some(row) = r.next_row()? {
        t.cells.extend_from_slice(row);
    }
    Ok(t)
}

/// Copy a section's bytes to `out` (writing a snapshot file).
pub fn copy_to(s: &Section, check: &str, out: &mut impl Write) -> Result<(), SectionError> {
    let path = s.source.label();
    if !s.source.attached() {
        return Err(SectionError::Damaged {
            path,
            check: check.into(),
            what: "the section has no data attached".into(),
        });
    }
    let io_err = |source| SectionError::Io {
        path: path.clone(),
        source,
    };
    let span = s.source.span(0, s.bytes).map_err(io_err)?;
    let copied = io::copy(&mut BufReader::with_capacity(BUF, span), out).map_err(io_err)?;
    if copied != s.bytes {
        return Err(SectionError::Damaged {
            path: path.clone(),
            check: check.into(),
            what: format!("{copied} bytes where {} were written", s.bytes),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn cols() -> Vec<Column> {
        ["id", "fingerprint", "name"]
            .iter()
            .map(|n| Column {
                name: (*n).into(),
                kind: Kind::Text,
            })
            .collect()
    }

    #[test]
    fn every_kind_of_cell_comes_back_as_written() {
        let rows = vec![
            vec![Value::Int(-5), Value::Null, Value::Text("é".into())],
            vec![
                Value::Dec("12.50".parse().unwrap()),
                Value::Bool(true),
                Value::BigNum("1e400".into()),
            ],
            vec![
                Value::Float(-0.5),
                Value::Bool(false),
                Value::Text("".into()),
            ],
        ];
        let mut w = SectionWriter::new(false).unwrap();
        for r in &rows {
            w.push(r).unwrap();
        }
        let s = w.finish(cols(), 1).unwrap();
        let t = to_table(&s, "c").unwrap();
        assert_eq!(t.len(), 3);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(t.row(i), r.as_slice());
        }
        assert!(
            s.source.path().is_none(),
            "a spill file has no name: nothing to leave behind"
        );
    }

    #[test]
    fn sections_of_key_ranges_read_as_one_and_part_by_part() {
        let mut parts = Vec::new();
        for (i, range) in [0..3i64, 3..3, 3..10].into_iter().enumerate() {
            let mut w = SectionWriter::new(false).unwrap();
            for k in range {
                w.push(&[Value::Int(k), Value::Int(k * 3), Value::Null])
                    .unwrap();
            }
            let from = (i > 0).then(|| (i * 3).to_string());
            parts.push((w.finish(cols(), 1).unwrap(), from));
        }
        let shas: Vec<String> = parts.iter().map(|(p, _)| p.sha256.clone()).collect();
        let whole = concat(parts, "c").unwrap();
        assert_eq!((whole.rows, whole.parts.len()), (10, 3));
        let t = to_table(&whole, "c").unwrap();
        let ids: Vec<Value> = (0..t.len()).map(|r| t.row(r)[0].clone()).collect();
        assert_eq!(ids, (0..10).map(Value::Int).collect::<Vec<_>>());
        // The same bytes written as one section hash the same.
        let mut one = SectionWriter::new(false).unwrap();
        for k in 0..10i64 {
            one.push(&[Value::Int(k), Value::Int(k * 3), Value::Null])
                .unwrap();
        }
        assert_eq!(one.finish(cols(), 1).unwrap().sha256, whole.sha256);
        // Part by part: each checks its own rows and SHA-256.
        let mut r = SectionReader::open_part(&whole, 2, "c").unwrap();
        let mut got = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            got.push(row[0].clone());
        }
        assert_eq!(got, (3..10).map(Value::Int).collect::<Vec<_>>());
        assert_eq!(whole.parts[2].sha256, shas[2]);
        let mut bad = whole.clone();
        bad.parts[0].sha256 = "0".repeat(64);
        let mut r = SectionReader::open_part(&bad, 0, "c").unwrap();
        let e = loop {
            match r.next_row() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a part with a wrong SHA-256 read to its end"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains("does not match its SHA-256"), "{e}");
        // Written to a file and read back from it, part by part too.
        let dir = std::env::temp_dir().join(format!("migval-section-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("parts");
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(b"header").unwrap();
        copy_to(&whole, "c", &mut f).unwrap();
        drop(f);
        let mut stored = whole.clone();
        stored.source = Source::in_file(&path, 6, whole.bytes);
        let mut r = SectionReader::open_part(&stored, 0, "c").unwrap();
        let mut n = 0;
        while r.next_row().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(to_table(&stored, "c").unwrap().len(), 10);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_section_with_a_changed_count_or_byte_is_refused() {
        let mut w = SectionWriter::new(false).unwrap();
        w.push(&[Value::Int(1), Value::Int(2), Value::Null])
            .unwrap();
        let mut s = w.finish(cols(), 1).unwrap();
        s.rows = 2;
        let e = to_table(&s, "c").unwrap_err().to_string();
        assert!(e.contains("1 rows where the snapshot says 2"), "{e}");
        s.rows = 1;
        s.sha256 = "0".repeat(64);
        let e = to_table(&s, "c").unwrap_err().to_string();
        assert!(e.contains("does not match its SHA-256"), "{e}");
        s.bytes -= 1;
        let e = to_table(&s, "c").unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
    }

    #[test]
    fn a_compressed_section_round_trips_and_a_damaged_one_is_refused() {
        let mut w = SectionWriter::new(true).unwrap();
        for i in 0..5000 {
            let json = format!("{{\"id\":{i},\"status\":\"active\"}}");
            w.push(&[Value::Int(i), Value::Int(i * 7), Value::Text(json.into())])
                .unwrap();
        }
        let s = w.finish(cols(), 1).unwrap();
        assert!(s.compressed && s.bytes < 5000 * 30, "{} bytes", s.bytes);
        let t = to_table(&s, "c").unwrap();
        assert_eq!(t.len(), 5000);
        assert_eq!(
            t.row(4999)[2],
            Value::Text("{\"id\":4999,\"status\":\"active\"}".into())
        );
        // Flip a byte in the middle of the compressed stream: refused, never a panic.
        let mut bytes = Vec::new();
        copy_to(&s, "c", &mut bytes).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        let path = std::env::temp_dir().join(format!("migval-deflate-test-{}", std::process::id()));
        fs::write(&path, &bytes).unwrap();
        let mut s = s;
        s.source = Source::in_file(&path, 0, s.bytes);
        let e = to_table(&s, "c").unwrap_err().to_string();
        fs::remove_file(&path).unwrap();
        assert!(e.contains("cut short or damaged"), "{e}");
    }
}
