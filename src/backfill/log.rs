//! The CSV log of rows a backfill left alone: ambiguous (the ambiguity rule matched), no match
//! (the change left them pending) and errors (a row that fails alone, isolated by bisection).
//! Lines are appended and flushed before the batch commits, so a batch killed between the two
//! has logged rows that the resumed run meets again: on resume the log is read back, and a row
//! already logged for the same run and kind is not written twice. Never zero times, never twice.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One logged row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRow {
    pub key: Vec<String>,
    /// `ambiguous`, `no_match` or `error`.
    pub kind: &'static str,
    pub reason: String,
    pub candidates: Option<i64>,
}

pub struct RowLog {
    path: PathBuf,
    writer: csv::Writer<File>,
    /// (run, kind, key) of every line in the file.
    seen: HashSet<(String, String, Vec<String>)>,
}

impl RowLog {
    /// Open `path` for appending (a resumed run adds to its log), or truncate it first (a
    /// dry-run shows only its own rows); the header (run, batch, kind, key columns, reason,
    /// candidates) is written when the file is new or empty.
    pub fn open(path: &Path, key: &[String], truncate: bool) -> Result<RowLog, String> {
        let fresh = truncate
            || std::fs::metadata(path)
                .map(|m| m.len() == 0)
                .unwrap_or(true);
        let mut options = OpenOptions::new();
        options.create(true);
        if truncate {
            options.write(true).truncate(true);
        } else {
            options.append(true);
        }
        let mut file = options
            .open(path)
            .map_err(|e| format!("cannot open the row log {}: {e}", path.display()))?;
        let seen = if fresh {
            HashSet::new()
        } else {
            read_back(path, key.len(), &mut file)
                .map_err(|e| format!("cannot read the row log {} back: {e}", path.display()))?
        };
        let mut writer = csv::Writer::from_writer(file);
        if fresh {
            let mut header = vec!["run".to_string(), "batch".to_string(), "kind".to_string()];
            header.extend(key.iter().cloned());
            header.push("reason".into());
            header.push("candidates".into());
            writer
                .write_record(&header)
                .and_then(|()| writer.flush().map_err(csv::Error::from))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(RowLog {
            path: path.to_path_buf(),
            writer,
            seen,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append rows and flush them to the file.
    pub fn write(&mut self, run: &str, batch: u64, rows: &[LoggedRow]) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let fail = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", self.path.display());
        for r in rows {
            if !self
                .seen
                .insert((run.to_string(), r.kind.to_string(), r.key.clone()))
            {
                continue;
            }
            let mut rec = vec![run.to_string(), batch.to_string(), r.kind.to_string()];
            rec.extend(r.key.iter().cloned());
            rec.push(r.reason.clone());
            rec.push(r.candidates.map(|c| c.to_string()).unwrap_or_default());
            self.writer.write_record(&rec).map_err(|e| fail(&e))?;
        }
        self.writer.flush().map_err(|e| fail(&e))
    }
}

/// The (run, kind, key) of each line already in the log; ends the file with a newline if a kill
/// cut its last line short, so that appended lines start on a line of their own.
fn read_back(
    path: &Path,
    key_len: usize,
    file: &mut File,
) -> Result<HashSet<(String, String, Vec<String>)>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut seen = HashSet::new();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    for rec in reader.records() {
        let Ok(rec) = rec else { continue };
        if rec.len() < 3 + key_len {
            continue;
        }
        let key = (3..3 + key_len).map(|i| rec[i].to_string()).collect();
        seen.insert((rec[0].to_string(), rec[2].to_string(), key));
    }
    if bytes.last().is_some_and(|&b| b != b'\n') {
        file.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, kind: &'static str) -> LoggedRow {
        LoggedRow {
            key: vec![key.to_string()],
            kind,
            reason: "two active subscribers".into(),
            candidates: Some(2),
        }
    }

    #[test]
    fn a_resumed_run_does_not_log_a_row_twice_and_a_cut_line_is_ended() {
        let dir = std::env::temp_dir().join(format!("migval-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.csv");
        let key = vec!["id".to_string()];
        let mut log = RowLog::open(&path, &key, true).unwrap();
        log.write("1", 5, &[row("7", "ambiguous"), row("8", "no_match")])
            .unwrap();
        drop(log);
        // A kill cut the next line short.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"1,6,ambig")
            .unwrap();
        let mut log = RowLog::open(&path, &key, false).unwrap();
        // The resumed run meets batch 5's rows again, and a new one.
        log.write("1", 5, &[row("7", "ambiguous"), row("9", "ambiguous")])
            .unwrap();
        // Another run may log the same key again.
        log.write("2", 1, &[row("7", "ambiguous")]).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "run,batch,kind,id,reason,candidates",
                "1,5,ambiguous,7,two active subscribers,2",
                "1,5,no_match,8,two active subscribers,2",
                "1,6,ambig",
                "1,5,ambiguous,9,two active subscribers,2",
                "2,1,ambiguous,7,two active subscribers,2",
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
