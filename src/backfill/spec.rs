//! The backfill file: a serde mirror of the TOML (`deny_unknown_fields`, so a typo is an error),
//! validated once into [`BackfillSpec`]. Every error names the file, the line and the key, like
//! the checks spec does. Nothing here touches a database: whether the table, the key and the SQL
//! fragments exist is checked by the runner before the first batch.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::spec::{SpecError, SpecErrors, parse_duration_ms, sha256_hex};
use crate::sql::ident;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackfill {
    name: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    key: Option<Spanned<Vec<String>>>,
    pending: Option<Spanned<String>>,
    set: Option<Spanned<String>>,
    update: Option<Spanned<String>>,
    checks: Option<Spanned<String>>,
    ambiguity: Option<Spanned<RawAmbiguity>>,
    batch: Option<Spanned<RawBatch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmbiguity {
    sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    size: Option<u64>,
    min: Option<u64>,
    max: Option<u64>,
    target_duration: Option<String>,
    pause: Option<String>,
    lock_timeout: Option<String>,
    statement_timeout: Option<String>,
    max_replication_lag: Option<String>,
    retries: Option<u32>,
}

/// How each batch changes its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `UPDATE <table> SET <this> WHERE <key range> AND (<pending>) AND <not ambiguous>`:
    /// migval writes the WHERE clause.
    Set(String),
    /// A whole UPDATE statement written by the user, with `$1` and `$2` the first and the last
    /// key of the batch (both inclusive: `WHERE id BETWEEN $1 AND $2`). It must keep the pending guard itself;
    /// migval checks inside the transaction that no ambiguous row was touched.
    Update(String),
}

/// Batch sizing and pacing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    /// First batch size; the only one when `target_ms` is `None`.
    pub size: u64,
    pub min: u64,
    pub max: u64,
    /// Adaptive sizing toward this batch duration.
    pub target_ms: Option<u64>,
    pub pause_ms: u64,
    pub lock_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub max_replication_lag_ms: Option<u64>,
    /// Attempts after a retryable failure (lock timeout, deadlock, serialization failure, lost
    /// connection), per batch.
    pub retries: u32,
}

/// A validated backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillSpec {
    pub path: PathBuf,
    pub name: String,
    /// Table name as written, parsed (schema optional).
    pub table: ident::Name,
    pub key: Vec<String>,
    pub pending: String,
    pub change: Change,
    /// Query returning the key columns, `reason` and `candidates` of rows to leave alone.
    pub ambiguity: Option<String>,
    pub batching: Batching,
    /// The checks spec run after the last batch, resolved relative to the backfill file.
    pub checks: Option<PathBuf>,
    /// Canonical, versioned hash (`v2:...`) of what decides which rows change and how (not of
    /// pacing knobs): a resumed run must have the same fingerprint.
    pub fingerprint: String,
    /// The hash migval 0.1 stored for the same definition (of its `Debug` text): a run it
    /// started still resumes.
    pub legacy_fingerprint: String,
}

impl BackfillSpec {
    /// Whether a stored run's fingerprint is this definition's (today's or 0.1's).
    pub fn same_definition(&self, stored: &str) -> bool {
        stored == self.fingerprint || stored == self.legacy_fingerprint
    }
}

/// A JSON object with sorted keys, the optional `ambiguity` left out when absent: adding an
/// optional field later changes no fingerprint.
fn fingerprint(
    table: &ident::Name,
    key: &[String],
    pending: &str,
    change: &Change,
    ambiguity: Option<&str>,
) -> String {
    let mut o = serde_json::Map::new();
    o.insert("table".into(), serde_json::json!(table.to_string()));
    o.insert("key".into(), serde_json::json!(key));
    o.insert("pending".into(), serde_json::json!(pending));
    let (k, v) = match change {
        Change::Set(s) => ("set", s),
        Change::Update(u) => ("update", u),
    };
    o.insert(k.into(), serde_json::json!(v));
    if let Some(a) = ambiguity {
        o.insert("ambiguity".into(), serde_json::json!(a));
    }
    let text = serde_json::Value::Object(o).to_string();
    format!(
        "v2:{}",
        sha256_hex(format!("migval-backfill-v2\n{text}").as_bytes())
    )
}

impl BackfillSpec {
    pub fn load(path: &Path) -> Result<BackfillSpec, SpecErrors> {
        let text = crate::spec::read_file(path, "backfill")?;
        BackfillSpec::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<BackfillSpec, SpecErrors> {
        let file = path.display().to_string();
        let raw: RawBackfill = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            SpecErrors(vec![SpecError {
                file: file.clone(),
                line,
                place: String::new(),
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut errors = Vec::new();
        let mut err = |line: usize, key: &str, message: String| {
            errors.push(SpecError {
                file: file.clone(),
                line,
                place: format!("key `{key}`: "),
                message,
            });
        };
        let line = |s: std::ops::Range<usize>| line_of(text, s.start);

        let name = match &raw.name {
            Some(n) if valid_name(n.get_ref()) => n.get_ref().clone(),
            Some(n) => {
                err(
                    line(n.span()),
                    "name",
                    "use letters, digits, `_` and `-` only (it names the run and the log file)"
                        .into(),
                );
                String::new()
            }
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .filter(|s| valid_name(s))
                .unwrap_or_else(|| "backfill".into()),
        };

        let table = match &raw.table {
            None => {
                err(1, "table", "the table to backfill is required".into());
                None
            }
            Some(t) => match ident::parse_name(t.get_ref()) {
                Ok(parts) if (1..=2).contains(&parts.len()) => {
                    Some(ident::Name::from_parts(&parts))
                }
                Ok(_) => {
                    err(
                        line(t.span()),
                        "table",
                        format!("`{}`: write table or schema.table", t.get_ref()),
                    );
                    None
                }
                Err(e) => {
                    err(line(t.span()), "table", format!("`{}`: {e}", t.get_ref()));
                    None
                }
            },
        };

        let mut key = Vec::new();
        match &raw.key {
            None => err(
                1,
                "key",
                "the batching key is required: the primary key columns, e.g. key = [\"id\"]".into(),
            ),
            Some(k) if k.get_ref().is_empty() => {
                err(line(k.span()), "key", "list at least one column".into());
            }
            Some(k) => {
                for c in k.get_ref() {
                    match ident::parse_name(c) {
                        Ok(parts) if parts.len() == 1 => {
                            if key.contains(&parts[0]) {
                                err(line(k.span()), "key", format!("`{c}` is listed twice"));
                            }
                            key.push(parts[0].clone());
                        }
                        _ => err(line(k.span()), "key", format!("`{c}` is not a column name")),
                    }
                }
            }
        }

        // A fragment that would not stay inside its slot in the generated statements.
        let mut lexical = |l: usize, key: &str, text: &str| {
            if let Some(why) = crate::sql::lex::escapes(text) {
                err(
                    l,
                    key,
                    format!(
                        "{why}; embedded in the batch's statements it would swallow what follows"
                    ),
                );
            }
        };
        if let Some(p) = &raw.pending {
            lexical(line(p.span()), "pending", p.get_ref());
        }
        if let Some(s) = &raw.set {
            lexical(line(s.span()), "set", s.get_ref());
        }
        if let Some(u) = &raw.update {
            lexical(line(u.span()), "update", u.get_ref());
        }
        if let Some(a) = &raw.ambiguity {
            lexical(line(a.span()), "ambiguity.sql", &a.get_ref().sql);
        }
        let pending = match &raw.pending {
            Some(p) if !p.get_ref().trim().is_empty() => p.get_ref().trim().to_string(),
            Some(p) => {
                err(line(p.span()), "pending", "must not be empty".into());
                String::new()
            }
            None => {
                err(
                    1,
                    "pending",
                    "the idempotency guard is required: a condition true for rows still to do and \
                     false once done (e.g. pending = \"subscriber_id IS NULL\"); it is what makes \
                     a re-run or a resume skip rows already done"
                        .into(),
                );
                String::new()
            }
        };

        let change = match (&raw.set, &raw.update) {
            (Some(s), None) if !s.get_ref().trim().is_empty() => {
                let body = s.get_ref().trim();
                if body.contains("$1") {
                    err(
                        line(s.span()),
                        "set",
                        "`set` takes no placeholders (migval writes the key range); use `update` \
                         for a statement with $1/$2"
                            .into(),
                    );
                }
                Some(Change::Set(body.to_string()))
            }
            (None, Some(u)) => {
                let body = u.get_ref().trim().trim_end_matches(';').trim();
                let l = line(u.span());
                if !body
                    .get(..6)
                    .is_some_and(|w| w.eq_ignore_ascii_case("update"))
                {
                    err(
                        l,
                        "update",
                        "must be one UPDATE statement (with $1 and $2: the batch's first and last key)"
                            .into(),
                    );
                }
                if !body.contains("$1") || !body.contains("$2") {
                    err(
                        l,
                        "update",
                        "must use $1 and $2, the first and the last key of the batch (both \
                         inclusive), e.g. WHERE id BETWEEN $1 AND $2"
                            .into(),
                    );
                }
                if body.contains("$3") {
                    err(
                        l,
                        "update",
                        "only $1 and $2 are bound (the key range)".into(),
                    );
                }
                if key.len() > 1 {
                    err(
                        l,
                        "update",
                        "a whole UPDATE statement needs a single-column key; with a composite key \
                         write `set` and migval writes the row-comparison WHERE clause"
                            .into(),
                    );
                }
                if !body.to_lowercase().contains(&pending.to_lowercase()) {
                    err(
                        l,
                        "update",
                        format!(
                            "the statement must keep the idempotency guard: include `{pending}` in \
                             its WHERE clause, so that rows already done are never touched again"
                        ),
                    );
                }
                Some(Change::Update(body.to_string()))
            }
            (Some(_), Some(u)) => {
                err(
                    line(u.span()),
                    "update",
                    "give either `set` or `update`, not both".into(),
                );
                None
            }
            (Some(s), None) => {
                err(line(s.span()), "set", "must not be empty".into());
                None
            }
            (None, None) => {
                err(
                    1,
                    "set",
                    "say what each batch does: set = \"col = expression\" or update = \"UPDATE ... \
                     WHERE id BETWEEN $1 AND $2 AND ...\""
                        .into(),
                );
                None
            }
        };

        let ambiguity = match &raw.ambiguity {
            Some(a) if a.get_ref().sql.trim().is_empty() => {
                err(line(a.span()), "ambiguity.sql", "must not be empty".into());
                None
            }
            Some(a) => Some(
                a.get_ref()
                    .sql
                    .trim()
                    .trim_end_matches(';')
                    .trim()
                    .to_string(),
            ),
            None => None,
        };

        let mut b = Batching {
            size: 1000,
            min: 100,
            max: 10_000,
            target_ms: None,
            pause_ms: 0,
            lock_timeout_ms: 1_000,
            statement_timeout_ms: 30_000,
            max_replication_lag_ms: None,
            retries: 5,
        };
        if let Some(rb) = &raw.batch {
            let l = line(rb.span());
            let rb = rb.get_ref();
            let mut dur = |v: &Option<String>, k: &str| -> Option<u64> {
                let t = v.as_ref()?;
                match parse_duration_ms(t) {
                    Ok(ms) => Some(ms),
                    Err(m) => {
                        err(l, &format!("batch.{k}"), m);
                        None
                    }
                }
            };
            b.target_ms = dur(&rb.target_duration, "target_duration");
            b.pause_ms = dur(&rb.pause, "pause").unwrap_or(b.pause_ms);
            b.lock_timeout_ms = dur(&rb.lock_timeout, "lock_timeout").unwrap_or(b.lock_timeout_ms);
            b.statement_timeout_ms =
                dur(&rb.statement_timeout, "statement_timeout").unwrap_or(b.statement_timeout_ms);
            b.max_replication_lag_ms = dur(&rb.max_replication_lag, "max_replication_lag");
            b.size = rb.size.unwrap_or(b.size);
            if b.target_ms.is_some() {
                b.min = rb.min.unwrap_or(b.min.min(b.size));
                b.max = rb.max.unwrap_or(b.max.max(b.size));
            } else {
                if rb.min.is_some() || rb.max.is_some() {
                    err(
                        l,
                        "batch.min",
                        "min and max bound the adaptive size: add target_duration (e.g. \"200ms\"), \
                         or drop them for a fixed size"
                            .into(),
                    );
                }
                b.min = b.size;
                b.max = b.size;
            }
            b.retries = rb.retries.unwrap_or(b.retries);
            if b.size == 0 || b.min == 0 {
                err(l, "batch.size", "batch sizes must be at least 1".into());
            }
            if b.min > b.max || b.size < b.min || b.size > b.max {
                err(
                    l,
                    "batch.size",
                    format!(
                        "need min <= size <= max, got min {}, size {}, max {}",
                        b.min, b.size, b.max
                    ),
                );
            }
            if b.max > 1_000_000 {
                err(l, "batch.max", "at most 1000000 rows per batch".into());
            }
            if b.lock_timeout_ms == 0 || b.statement_timeout_ms == 0 {
                err(
                    l,
                    "batch.lock_timeout",
                    "timeouts must be above zero (zero would mean: wait forever)".into(),
                );
            }
            if b.target_ms == Some(0) {
                err(l, "batch.target_duration", "must be above zero".into());
            }
        }

        let checks = raw.checks.as_ref().map(|c| {
            let p = PathBuf::from(c.get_ref());
            if p.is_absolute() {
                p
            } else {
                path.parent().unwrap_or(Path::new(".")).join(p)
            }
        });

        if !errors.is_empty() {
            return Err(SpecErrors(errors));
        }
        let (Some(table), Some(change)) = (table, change) else {
            return Err(SpecErrors(vec![SpecError {
                file,
                line: 1,
                place: String::new(),
                message: "incomplete backfill".into(),
            }]));
        };
        let fingerprint = fingerprint(&table, &key, &pending, &change, ambiguity.as_deref());
        let legacy_fingerprint = sha256_hex(
            format!(
                "{table}\u{0}{key:?}\u{0}{pending}\u{0}{change:?}\u{0}{ambiguity:?}",
                key = key,
            )
            .as_bytes(),
        );
        Ok(BackfillSpec {
            path: path.to_path_buf(),
            name,
            table,
            key,
            pending,
            change,
            ambiguity,
            batching: b,
            checks,
            fingerprint,
            legacy_fingerprint,
        })
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BackfillSpec, SpecErrors> {
        BackfillSpec::parse(Path::new("/x/fk.toml"), text)
    }

    const OK: &str = r#"
table = "plan_subscriptions"
key = ["id"]
pending = "subscriber_id IS NULL"
set = "subscriber_id = 1"
checks = "checks.toml"
[batch]
size = 500
"#;

    #[test]
    fn a_minimal_spec_validates_with_defaults() {
        let s = parse(OK).unwrap();
        assert_eq!(s.name, "fk");
        assert_eq!(s.key, vec!["id"]);
        assert_eq!(s.batching.size, 500);
        assert_eq!((s.batching.min, s.batching.max), (500, 500));
        assert_eq!(s.checks, Some(PathBuf::from("/x/checks.toml")));
    }

    #[test]
    fn unknown_keys_and_missing_guard_are_errors_with_lines() {
        let e = parse("table = \"t\"\nkey = [\"id\"]\nset = \"a = 1\"\nsize = 3\n").unwrap_err();
        assert!(e.to_string().contains("fk.toml:4"), "{e}");
        let e = parse("table = \"t\"\nkey = [\"id\"]\nset = \"a = 1\"\n").unwrap_err();
        assert!(e.to_string().contains("idempotency guard"), "{e}");
    }

    #[test]
    fn an_update_statement_must_bind_the_range_and_keep_the_guard() {
        let e = parse(
            "table = \"t\"\nkey = [\"id\"]\npending = \"b IS NULL\"\nupdate = \"UPDATE t SET b = 1 WHERE id > $1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("$2"), "{e}");
        assert!(e.contains("idempotency guard"), "{e}");
    }

    #[test]
    fn pacing_knobs_do_not_change_the_fingerprint_but_the_change_does() {
        let a = parse(OK).unwrap();
        let b = parse(&OK.replace("size = 500", "size = 50")).unwrap();
        let c = parse(&OK.replace("= 1\"", "= 2\"")).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }
}
