//! The CSV log of rows a backfill left alone: ambiguous (the ambiguity rule matched), no match
//! (the change left them pending) and errors (a row that fails alone, isolated by bisection).
//! Lines are appended and flushed before the batch commits, so a batch killed between the two
//! may log its rows twice (same run and batch number), never zero times.

use std::fs::{File, OpenOptions};
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
        let file = options
            .open(path)
            .map_err(|e| format!("cannot open the row log {}: {e}", path.display()))?;
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
            let mut rec = vec![run.to_string(), batch.to_string(), r.kind.to_string()];
            rec.extend(r.key.iter().cloned());
            rec.push(r.reason.clone());
            rec.push(r.candidates.map(|c| c.to_string()).unwrap_or_default());
            self.writer.write_record(&rec).map_err(|e| fail(&e))?;
        }
        self.writer.flush().map_err(|e| fail(&e))
    }
}
