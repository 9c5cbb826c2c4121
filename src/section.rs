//! Binary sections: a large keyed capture (a `rows` check's `(key..., fingerprint)` per row)
//! kept out of memory, written once in key order and read back sequentially.
//!
//! ```text
//!   capture:  server rows --decode--> SectionWriter --1 MB buffer--> spill file (temp dir)
//!   store:    snapshot file = header + JSON line + every section's bytes, in check order
//!   compare:  SectionReader (baseline file, at the section's offset) ==merge== SectionReader
//! ```
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

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::integrity::hex;
use crate::model::{Column, Section, Table, Value};

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

/// Where a section's bytes are: a file (a spill file or the snapshot file) and an offset.
#[derive(Debug, Clone, Default)]
pub struct Source {
    inner: Option<(Arc<Backing>, u64)>,
}

impl Source {
    pub fn in_file(path: &Path, offset: u64) -> Source {
        Source {
            inner: Some((
                Arc::new(Backing {
                    path: path.to_path_buf(),
                    remove: false,
                }),
                offset,
            )),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.inner.as_ref().map(|(b, _)| b.path.as_path())
    }
}

/// The file behind a source; a spill file is removed when the last section using it goes.
#[derive(Debug)]
struct Backing {
    path: PathBuf,
    remove: bool,
}

impl Drop for Backing {
    fn drop(&mut self) {
        if self.remove {
            let _ = fs::remove_file(&self.path);
        }
    }
}

static SPILLS: AtomicU64 = AtomicU64::new(0);

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

type FileIn = HashingRead<io::Take<BufReader<fs::File>>>;

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

/// Writes one section to its own spill file in the temporary directory.
pub struct SectionWriter {
    backing: Arc<Backing>,
    out: Sink,
    row: Vec<u8>,
    rows: u64,
}

impl SectionWriter {
    /// `compress`: deflate the section (worth it for row values, not for fingerprints).
    pub fn new(compress: bool) -> Result<SectionWriter, SectionError> {
        let n = SPILLS.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("migval-{}-{n}.section", std::process::id()));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| SectionError::Io {
                path: path.clone(),
                source,
            })?;
        let file = Hashing {
            inner: BufWriter::with_capacity(BUF, file),
            sha: Sha256::new(),
            bytes: 0,
        };
        Ok(SectionWriter {
            backing: Arc::new(Backing { path, remove: true }),
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

    fn io(&self, source: io::Error) -> SectionError {
        SectionError::Io {
            path: self.backing.path.clone(),
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
        r.map_err(|e| self.io(e))
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
        let path = self.backing.path.clone();
        let io_err = |source| SectionError::Io {
            path: path.clone(),
            source,
        };
        let mut f = ended.map_err(&io_err)?;
        f.flush().map_err(io_err)?;
        Ok(Section {
            columns,
            key_len,
            rows: self.rows,
            bytes: f.bytes,
            sha256: hex(&f.sha.finalize()),
            compressed,
            source: Source {
                inner: Some((self.backing, 0)),
            },
        })
    }
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
        let Some((backing, offset)) = &s.source.inner else {
            return Err(SectionError::Damaged {
                path: PathBuf::new(),
                check: check.into(),
                what: "the section has no data attached".into(),
            });
        };
        let path = backing.path.clone();
        let io_err = |source| SectionError::Io {
            path: path.clone(),
            source,
        };
        let mut f = fs::File::open(&path).map_err(io_err)?;
        f.seek(SeekFrom::Start(*offset)).map_err(io_err)?;
        let raw = HashingRead {
            inner: BufReader::with_capacity(BUF, f).take(s.bytes),
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
            path: path.clone(),
            check: check.into(),
            file: Some(tap),
            width: s.columns.len(),
            expect_rows: s.rows,
            expect_sha: s.sha256.clone(),
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
    let Some((backing, offset)) = &s.source.inner else {
        return Err(SectionError::Damaged {
            path: PathBuf::new(),
            check: check.into(),
            what: "the section has no data attached".into(),
        });
    };
    let io_err = |source| SectionError::Io {
        path: backing.path.clone(),
        source,
    };
    let mut f = fs::File::open(&backing.path).map_err(io_err)?;
    f.seek(SeekFrom::Start(*offset)).map_err(io_err)?;
    let copied =
        io::copy(&mut BufReader::with_capacity(BUF, f).take(s.bytes), out).map_err(io_err)?;
    if copied != s.bytes {
        return Err(SectionError::Damaged {
            path: backing.path.clone(),
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
        let spill = s.source.path().unwrap().to_path_buf();
        assert!(spill.exists());
        drop(t);
        drop(s);
        assert!(
            !spill.exists(),
            "the spill file is removed with its section"
        );
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
        let path = s.source.path().unwrap().to_path_buf();
        let mut bytes = fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(&path, &bytes).unwrap();
        let e = to_table(&s, "c").unwrap_err().to_string();
        assert!(e.contains("cut short or damaged"), "{e}");
    }
}
