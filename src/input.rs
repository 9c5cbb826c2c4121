//! Reading the files a user names (specs, baselines, migration scripts) with a bound:
//! `--spec /dev/zero` or `--baseline /dev/zero` must be refused at once, not read until memory
//! runs out.
//!
//! - A regular file larger than the limit is refused from its size, before any read.
//! - A character or block device, a socket or a directory is refused: it is not a file.
//! - A FIFO (a pipe, `<(...)` process substitution) is read up to the limit and refused beyond.
//! - Even a regular file is read through `take(limit + 1)`: a file growing while it is read
//!   cannot get past the bound either.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest spec (or backfill file, or migration script): 64 MiB, about 500,000 checks.
pub const MAX_SPEC_BYTES: u64 = 64 << 20;

/// Default largest baseline: 8 GiB. A baseline of a 100M-row keyed check is a few GB (about
/// 30-60 bytes a row); verify holds the file in memory while it parses it, so a larger file
/// asks for `--max-baseline-size` on purpose.
pub const DEFAULT_MAX_BASELINE_BYTES: u64 = 8 << 30;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is {kind}, not a regular file: give the path of a file")]
    NotAFile { kind: &'static str },
    #[error("it is larger than the limit of {limit}{size}: {what}")]
    TooLarge {
        /// ` (N MiB)` when the size is known.
        size: String,
        limit: String,
        what: &'static str,
    },
}

/// Read all of `path`, refusing more than `limit` bytes. `advice` says what to do when it is
/// too large (e.g. "raise it with --max-baseline-size").
pub fn read_bounded(path: &Path, limit: u64, advice: &'static str) -> Result<Vec<u8>, InputError> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    let too_large = |size: String| InputError::TooLarge {
        size,
        limit: human(limit),
        what: advice,
    };
    if let Some(kind) = not_a_file(&ft) {
        return Err(InputError::NotAFile { kind });
    }
    // A FIFO is read below, with the bound.
    if ft.is_file() && meta.len() > limit {
        return Err(too_large(format!(" ({})", human(meta.len()))));
    }
    let capacity = if ft.is_file() { meta.len() } else { 0 };
    let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(String::new()));
    }
    Ok(bytes)
}

/// What `ft` is when it cannot be read as a file (a FIFO can: it is read with a bound).
fn not_a_file(ft: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        Some("a directory")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

/// Open `path` for reading in pieces (a snapshot file with sections), refusing what is not a
/// file. The caller bounds what it keeps.
pub fn open_readable(path: &Path) -> Result<File, InputError> {
    let file = File::open(path)?;
    if let Some(kind) = not_a_file(&file.metadata()?.file_type()) {
        return Err(InputError::NotAFile { kind });
    }
    Ok(file)
}

/// [`read_bounded`] for a text file.
pub fn read_text_bounded(
    path: &Path,
    limit: u64,
    advice: &'static str,
) -> Result<String, InputError> {
    let bytes = read_bounded(path, limit, advice)?;
    String::from_utf8(bytes).map_err(|e| {
        InputError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

/// `n` bytes for people: "64 MiB", "8 GiB", "1.5 KiB", "12 bytes".
pub fn human(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                // One decimal, computed exactly in integers.
                let tenths = n.saturating_mul(10) / size;
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{n} bytes")
}

/// A size as written on the command line: `8GiB`, `8GB` (read as GiB: binary units either
/// way), `500MB`, `64k`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 8GiB, 500MB, 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use KiB, MiB, GiB or TiB)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("8GB"), Ok(8 << 30));
        assert_eq!(parse_size("500 MB"), Ok(500 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1PB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(12), "12 bytes");
    }

    #[test]
    fn devices_are_refused_and_big_files_refused_from_their_size() {
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "x").unwrap_err();
        assert!(
            matches!(
                e,
                InputError::NotAFile {
                    kind: "a character device"
                }
            ),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("migval-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("big");
        std::fs::write(&f, vec![b'x'; 2048]).unwrap();
        let e = read_bounded(&f, 1024, "shrink it").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is larger than the limit of 1 KiB (2 KiB): shrink it"
        );
        assert_eq!(read_bounded(&f, 2048, "x").unwrap().len(), 2048);
        let e = read_bounded(&dir, 1024, "x").unwrap_err();
        assert!(
            matches!(
                e,
                InputError::NotAFile {
                    kind: "a directory"
                }
            ),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
