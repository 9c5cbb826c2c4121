//! The validator's state and the parts of a spec outside the checks: `[settings]`,
//! `[rename]`, `[schema]`, and the name helpers every check kind uses. Errors are collected,
//! not returned at the first, so a DBA sees every problem of the file at once.

use super::locate::KeyLines;
use super::raw::{RawSchemaDiff, RawSettings};
use super::{
    ExpectedChange, LineIndex, Renames, SchemaDiff, Settings, SpecError, parse_duration_ms,
};
use crate::sql::ident::{self, Name};

pub(super) struct Validator<'a> {
    file: &'a str,
    /// Where each key is: an error names the line of its key when it can.
    keys: KeyLines,
    pub(super) errors: Vec<SpecError>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(file: &'a str, keys: KeyLines) -> Validator<'a> {
        Validator {
            file,
            keys,
            errors: Vec::new(),
        }
    }

    /// An error about `key` of `check` (whose `[[check]]` header is on `line`; "" and the
    /// line of the table for keys outside the checks).
    pub(super) fn err(&mut self, line: usize, check: &str, key: &str, message: impl Into<String>) {
        let line = self
            .keys
            .line(if check.is_empty() { 0 } else { line }, key)
            .unwrap_or(line);
        let place = match (check.is_empty(), key.is_empty()) {
            (true, true) => String::new(),
            (true, false) => format!("key `{key}`: "),
            (false, true) => format!("check `{check}`: "),
            (false, false) => format!("check `{check}`, key `{key}`: "),
        };
        self.errors.push(SpecError {
            file: self.file.to_string(),
            line,
            place,
            message: message.into(),
        });
    }

    pub(super) fn settings(&mut self, raw: Option<RawSettings>) -> Settings {
        let mut s = Settings::default();
        let Some(raw) = raw else { return s };
        let mut dur = |v: &Option<String>, key: &str, target: &mut u64| {
            if let Some(text) = v {
                match parse_duration_ms(text) {
                    Ok(ms) => *target = ms,
                    Err(m) => self.err(1, "", &format!("settings.{key}"), m),
                }
            }
        };
        dur(
            &raw.statement_timeout,
            "statement_timeout",
            &mut s.statement_timeout_ms,
        );
        dur(&raw.lock_timeout, "lock_timeout", &mut s.lock_timeout_ms);
        if let Some(p) = raw.parallel {
            match usize::try_from(p) {
                Ok(p) if (1..=64).contains(&p) => s.parallel = p,
                _ => self.err(1, "", "settings.parallel", "must be between 1 and 64"),
            }
        }
        if let Some(n) = raw.query_workers {
            if n <= 1024 {
                s.query_workers = Some(n);
            } else {
                self.err(
                    1,
                    "",
                    "settings.query_workers",
                    "must be between 0 and 1024",
                );
            }
        }
        if let Some(n) = raw.worst_groups {
            s.worst_groups = usize::try_from(n).unwrap_or(10);
        }
        if let Some(schemas) = raw.schemas {
            let mut out = Vec::new();
            for sc in schemas {
                match ident::parse_name(&sc) {
                    Ok(parts) if parts.len() == 1 => out.push(parts[0].clone()),
                    _ => self.err(
                        1,
                        "",
                        "settings.schemas",
                        format!("`{sc}` is not a schema name"),
                    ),
                }
            }
            s.schemas = Some(out);
        }
        s
    }

    pub(super) fn schema_diff(
        &mut self,
        lines: &LineIndex,
        line: usize,
        raw: RawSchemaDiff,
    ) -> SchemaDiff {
        let mut s = SchemaDiff {
            enabled: raw.diff.unwrap_or(true),
            ..SchemaDiff::default()
        };
        for (key, value, flag) in [
            (
                "schema.undeclared",
                &raw.undeclared,
                &mut s.undeclared_fails,
            ),
            ("schema.hazards", &raw.hazards, &mut s.hazards_fail),
        ] {
            match value.as_deref() {
                None | Some("fail") => {}
                Some("warn") => *flag = false,
                Some(other) => self.err(
                    line,
                    "",
                    key,
                    format!("`{other}` is not allowed: write \"fail\" or \"warn\""),
                ),
            }
        }
        for e in raw.expect {
            let at = lines.line(e.span().start);
            match ExpectedChange::parse(e.get_ref(), at) {
                Ok(x) => s.expect.push(x),
                Err(m) => self.err(at, "", "schema.expect", m),
            }
        }
        s
    }

    pub(super) fn renames(
        &mut self,
        raw: &std::collections::BTreeMap<String, String>,
        line: usize,
    ) -> Renames {
        let mut r = Renames::default();
        for (old, new) in raw {
            let (Ok(o), Ok(n)) = (ident::parse_name(old), ident::parse_name(new)) else {
                self.err(
                    line,
                    "",
                    "rename",
                    format!("`{old}` = `{new}` is not a pair of names"),
                );
                continue;
            };
            match (o.len(), n.len()) {
                (1, 1) => r.tables.push((o[0].clone(), n[0].clone())),
                (2, 2) | (3, 3) if o[..o.len() - 1] == n[..n.len() - 1] => {
                    let table = o[o.len() - 2].clone();
                    r.columns
                        .push((table, o[o.len() - 1].clone(), n[n.len() - 1].clone()));
                }
                (2, 2) | (3, 3) => self.err(
                    line,
                    "",
                    "rename",
                    format!(
                        "`{old}` = `{new}` renames a column and its table at once; write the \
                         column rename under the old table name and the table rename as its \
                         own entry (\"old_table\" = \"new_table\")"
                    ),
                ),
                _ => self.err(
                    line,
                    "",
                    "rename",
                    format!(
                        "`{old}` = `{new}`: write \"table.column\" = \"table.new_column\" for a \
                         column, \"table\" = \"new_table\" for a table"
                    ),
                ),
            }
        }
        r
    }

    pub(super) fn name(
        &mut self,
        line: usize,
        check: &str,
        key: &str,
        text: &str,
        max_parts: usize,
    ) -> Option<Vec<String>> {
        match ident::parse_name(text) {
            Ok(parts) if parts.len() <= max_parts => Some(parts),
            Ok(_) => {
                self.err(
                    line,
                    check,
                    key,
                    format!("`{text}` has too many dotted parts"),
                );
                None
            }
            Err(e) => {
                self.err(line, check, key, format!("`{text}`: {e}"));
                None
            }
        }
    }

    pub(super) fn relation(
        &mut self,
        line: usize,
        check: &str,
        key: &str,
        text: &str,
    ) -> Option<Name> {
        let parts = self.name(line, check, key, text, 2)?;
        Some(Name::from_parts(&parts))
    }

    /// "table.column" or "schema.table.column".
    pub(super) fn column_ref(
        &mut self,
        line: usize,
        check: &str,
        key: &str,
        text: &str,
    ) -> Option<(Name, String)> {
        let parts = self.name(line, check, key, text, 3)?;
        if parts.len() < 2 {
            self.err(
                line,
                check,
                key,
                format!("`{text}`: write it as \"table.column\""),
            );
            return None;
        }
        let col = parts[parts.len() - 1].clone();
        Some((Name::from_parts(&parts[..parts.len() - 1]), col))
    }

    /// "t.col" or "t(a, b)".
    pub(super) fn column_list(
        &mut self,
        line: usize,
        check: &str,
        key: &str,
        text: &str,
    ) -> Option<(Name, Vec<String>)> {
        if let Some(open) = text.find('(') {
            let Some(inner) = text[open + 1..].strip_suffix(')') else {
                self.err(line, check, key, format!("`{text}`: missing `)`"));
                return None;
            };
            let table = self.relation(line, check, key, text[..open].trim())?;
            let mut cols = Vec::new();
            for c in inner.split(',') {
                let parts = self.name(line, check, key, c.trim(), 1)?;
                cols.push(parts[0].clone());
            }
            Some((table, cols))
        } else {
            let (t, c) = self.column_ref(line, check, key, text)?;
            Some((t, vec![c]))
        }
    }
}
