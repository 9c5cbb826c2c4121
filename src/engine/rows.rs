//! Row proof, compared: both sides are `(key..., fingerprint[, allowed])` in key order, merged
//! in one pass.
//!
//! ```text
//!   baseline  k1:f1  k2:f2         k4:f4       k2: changed (f2 != f2')   k3: appeared
//!   after     k1:f1  k2:f2'  k3:f3             k4: disappeared
//! ```
//!
//! A changed or appeared row whose post-migration values match `allow_changes` is allowed
//! (WARN); every other difference fails. The report lists the first differing keys (key
//! order); `all_changes` keeps every one, for `--changes-out`.

use std::cmp::Ordering;

use crate::model::{
    CheckResult, Column, Comparison, GroupStats, ResultKind, Section, Status, Table, Value,
    ValueScope, cmp_keys, grouped_count,
};
use crate::section::{Merged, SectionReader};

/// What happened to one key.
const CHANGED: ValueScope = ValueScope::Changed;
const APPEARED: ValueScope = ValueScope::Appeared;
const DISAPPEARED: ValueScope = ValueScope::Disappeared;

/// One side of the merge: rows in key order, looked at one at a time.
trait Cursor {
    /// The row under the cursor (`None` past the end).
    fn current(&self) -> Option<&[Value]>;
    fn advance(&mut self) -> Result<(), String>;
}

/// A capture held in memory (a baseline of an older format).
struct TableCursor<'a> {
    t: &'a Table,
    i: usize,
}

impl Cursor for TableCursor<'_> {
    fn current(&self) -> Option<&[Value]> {
        (self.i < self.t.len()).then(|| self.t.row(self.i))
    }
    fn advance(&mut self) -> Result<(), String> {
        self.i += 1;
        Ok(())
    }
}

/// A section read from its file as the merge goes.
pub(super) struct SectionCursor {
    reader: SectionReader,
    at_row: bool,
}

impl SectionCursor {
    fn open(s: &Section, check: &str) -> Result<SectionCursor, String> {
        let mut c = SectionCursor {
            reader: SectionReader::open(s, check).map_err(|e| e.to_string())?,
            at_row: false,
        };
        c.advance()?;
        Ok(c)
    }
}

impl Cursor for SectionCursor {
    fn current(&self) -> Option<&[Value]> {
        self.at_row.then(|| self.reader.row())
    }
    fn advance(&mut self) -> Result<(), String> {
        self.at_row = self.reader.next_row().map_err(|e| e.to_string())?.is_some();
        Ok(())
    }
}

/// Two in-memory captures.
pub(super) fn compare(bt: &Table, at: &Table, worst_n: usize) -> CheckResult {
    let shape = Shape::of(&bt.columns, bt.key_len, &at.columns, at.key_len);
    let mut b = TableCursor { t: bt, i: 0 };
    let mut a = TableCursor { t: at, i: 0 };
    match shape {
        Ok(shape) => merge(&mut b, &mut a, &shape, worst_n),
        Err(e) => fail_shape(e),
    }
}

/// Two sections (a baseline file's and a post-state capture's), streamed: neither is held
/// in memory, only the differing keys are kept.
pub(super) fn compare_sections(
    b: &Section,
    a: &Section,
    check: &str,
    worst_n: usize,
) -> CheckResult {
    let shape = match Shape::of(&b.columns, b.key_len, &a.columns, a.key_len) {
        Ok(s) => s,
        Err(e) => return fail_shape(e),
    };
    let opened = SectionCursor::open(b, check)
        .and_then(|bc| SectionCursor::open(a, check).map(|ac| (bc, ac)));
    match opened {
        Ok((mut bc, mut ac)) => merge(&mut bc, &mut ac, &shape, worst_n),
        Err(e) => CheckResult::bare(Status::Error, e),
    }
}

/// A rows check of which one side at least is a section (the other one may be a table, from
/// a baseline of an older format, or a small post-state): streamed where it can be.
pub(super) fn compare_streamed(
    check: &str,
    b: &crate::model::Outcome,
    a: &crate::model::Outcome,
    worst_n: usize,
) -> CheckResult {
    use crate::model::Outcome::{Captured, Streamed};
    match (b, a) {
        (Streamed(b), Streamed(a)) => match a.source.compared() {
            // Compared while the post-state arrived, against this very baseline section.
            Some(c) if c.against == b.sha256 => match &c.outcome {
                Ok(m) => judge(m.stats.clone(), m.allowed, m.changes.clone(), worst_n),
                Err(e) => CheckResult::bare(Status::Error, e.clone()),
            },
            _ => compare_sections(b, a, check, worst_n),
        },
        (Captured(bt), Streamed(a)) => match crate::section::to_table(a, check) {
            Ok(at) => compare(bt, &at, worst_n),
            Err(e) => CheckResult::bare(Status::Error, e.to_string()),
        },
        (Streamed(b), Captured(at)) => match crate::section::to_table(b, check) {
            Ok(bt) => compare(&bt, at, worst_n),
            Err(e) => CheckResult::bare(Status::Error, e.to_string()),
        },
        _ => fail_shape("the two captures do not fit together: take a new baseline"),
    }
}

/// Where the merge finds what it needs in each side's rows.
struct Shape {
    key_len: usize,
    bf: usize,
    af: usize,
    allowed: Option<usize>,
    /// The baseline's row values (`keep = "values"`).
    before: Option<usize>,
}

impl Shape {
    fn of(bc: &[Column], bk: usize, ac: &[Column], ak: usize) -> Result<Shape, &'static str> {
        let col = |cols: &[Column], name: &str| cols.iter().position(|c| c.name == name);
        let (Some(bf), Some(af)) = (col(bc, "fingerprint"), col(ac, "fingerprint")) else {
            return Err("the captures have no fingerprint column: take a new baseline");
        };
        if bk != ak {
            return Err(
                "the key has another number of columns than at baseline: take a new baseline",
            );
        }
        Ok(Shape {
            key_len: bk,
            bf,
            af,
            allowed: col(ac, "allowed"),
            before: col(bc, super::rowstream::VALUES),
        })
    }
}

fn merge(b: &mut dyn Cursor, a: &mut dyn Cursor, shape: &Shape, worst_n: usize) -> CheckResult {
    let mut m = Merge {
        b,
        shape,
        acc: Merged::default(),
    };
    let merged = (|| {
        while let Some(row) = a.current() {
            m.push(row)?;
            a.advance()?;
        }
        m.finish()
    })();
    match merged {
        Ok(m) => judge(m.stats, m.allowed, m.changes, worst_n),
        Err(e) => CheckResult::bare(Status::Error, e),
    }
}

/// The merge, with the post-state pushed into it row by row (as it arrives from the server,
/// or read from a capture) and the baseline pulled from its cursor as far as each post-state
/// key needs:
///
/// ```text
///   push(after k)   baseline keys < k: disappeared     baseline key = k: changed if the
///                   fingerprints differ                no baseline key = k: appeared
///   finish()        the baseline keys left: disappeared
/// ```
struct Merge<'a, C: Cursor + ?Sized> {
    b: &'a mut C,
    shape: &'a Shape,
    acc: Merged,
}

impl<C: Cursor + ?Sized> Merge<'_, C> {
    fn push(&mut self, arow: &[Value]) -> Result<(), String> {
        let k = self.shape.key_len;
        loop {
            let ord = match self.b.current() {
                Some(brow) => cmp_keys(&brow[..k], &arow[..k]),
                None => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    record(
                        &mut self.acc,
                        self.shape,
                        DISAPPEARED,
                        self.b.current(),
                        None,
                    );
                    self.acc.stats.baseline_groups += 1;
                    self.b.advance()?;
                }
                Ordering::Equal => {
                    let brow = self.b.current().unwrap_or_default();
                    if !brow[self.shape.bf].same(&arow[self.shape.af]) {
                        record(&mut self.acc, self.shape, CHANGED, Some(brow), Some(arow));
                    }
                    self.acc.stats.baseline_groups += 1;
                    self.acc.stats.after_groups += 1;
                    return self.b.advance();
                }
                Ordering::Greater => {
                    record(&mut self.acc, self.shape, APPEARED, None, Some(arow));
                    self.acc.stats.after_groups += 1;
                    return Ok(());
                }
            }
        }
    }

    fn finish(mut self) -> Result<Merged, String> {
        while let Some(brow) = self.b.current() {
            record(&mut self.acc, self.shape, DISAPPEARED, Some(brow), None);
            self.acc.stats.baseline_groups += 1;
            self.b.advance()?;
        }
        Ok(self.acc)
    }
}

/// Count one differing key, and keep it for the report and `--changes-out`.
fn record(
    acc: &mut Merged,
    shape: &Shape,
    what: ValueScope,
    brow: Option<&[Value]>,
    arow: Option<&[Value]>,
) {
    let k = shape.key_len;
    let ok = match (arow, shape.allowed) {
        (Some(r), Some(c)) if what != DISAPPEARED => r[c] == Value::Bool(true),
        _ => false,
    };
    match what {
        CHANGED => acc.stats.changed += 1,
        APPEARED => acc.stats.appeared += 1,
        _ => acc.stats.disappeared += 1,
    }
    if ok {
        acc.allowed += 1;
    } else {
        acc.stats.failing += 1;
    }
    acc.changes.push(Comparison {
        key: match (brow, arow) {
            (Some(r), _) | (None, Some(r)) => r[..k].iter().map(ToString::to_string).collect(),
            _ => Vec::new(),
        },
        metric: "row".into(),
        scope: what,
        baseline: brow.map(|r| r[shape.bf].clone()),
        after: arow.map(|r| r[shape.af].clone()),
        difference: None,
        rule: if ok {
            "allowed to change (allow_changes)".into()
        } else {
            "unchanged".into()
        },
        ok,
        note: match (brow, shape.before) {
            (Some(r), Some(c)) => Some(format!("before: {}", r[c])),
            _ => None,
        },
    });
}

/// A post-state merged against a baseline section as it arrives from the server (see
/// `rowstream`): one per key range, or one for the whole table.
pub(super) struct Arriving {
    cursor: SectionCursor,
    shape: Shape,
    acc: Merged,
}

impl Arriving {
    /// Against the whole of `baseline`, or its part `part` (a baseline captured in key ranges;
    /// the post-state range has the same bounds). `columns`, `key_len`: the post-state's.
    pub(super) fn open(
        baseline: &Section,
        part: Option<usize>,
        check: &str,
        columns: &[Column],
        key_len: usize,
    ) -> Result<Arriving, String> {
        let shape = Shape::of(&baseline.columns, baseline.key_len, columns, key_len)?;
        let reader = match part {
            Some(i) => SectionReader::open_part(baseline, i, check),
            None => SectionReader::open(baseline, check),
        };
        let mut cursor = SectionCursor {
            reader: reader.map_err(|e| e.to_string())?,
            at_row: false,
        };
        cursor.advance()?;
        Ok(Arriving {
            cursor,
            shape,
            acc: Merged::default(),
        })
    }

    pub(super) fn push(&mut self, row: &[Value]) -> Result<(), String> {
        let mut m = Merge {
            b: &mut self.cursor,
            shape: &self.shape,
            acc: std::mem::take(&mut self.acc),
        };
        let r = m.push(row);
        self.acc = m.acc;
        r
    }

    pub(super) fn finish(self) -> Result<Merged, String> {
        let mut cursor = self.cursor;
        Merge {
            b: &mut cursor,
            shape: &self.shape,
            acc: self.acc,
        }
        .finish()
    }
}

fn judge(stats: GroupStats, allowed: usize, all: Vec<Comparison>, worst_n: usize) -> CheckResult {
    let status = if stats.failing > 0 {
        Status::Fail
    } else if allowed > 0 {
        Status::Warn
    } else {
        Status::Pass
    };
    let n = stats.baseline_groups.max(stats.after_groups);
    let mut summary = format!(
        "{} row{}: {} changed, {} appeared, {} disappeared",
        grouped_count(n),
        if n == 1 { "" } else { "s" },
        grouped_count(stats.changed),
        grouped_count(stats.appeared),
        grouped_count(stats.disappeared)
    );
    if allowed > 0 {
        summary.push_str(&format!(
            " ({} allowed by allow_changes)",
            grouped_count(allowed)
        ));
    }
    if let Some(first) = all.iter().find(|c| !c.ok) {
        summary.push_str(&format!(
            "; first: {} {}",
            first.scope,
            first.key.join(", ")
        ));
    }
    // Failing keys first, then allowed ones, each in key order.
    let mut worst: Vec<Comparison> = all
        .iter()
        .filter(|c| !c.ok)
        .take(worst_n)
        .cloned()
        .collect();
    if worst.len() < worst_n {
        let room = worst_n - worst.len();
        worst.extend(all.iter().filter(|c| c.ok).take(room).cloned());
    }
    CheckResult {
        name: String::new(),
        kind: ResultKind::Rows,
        status,
        after_only: false,
        summary,
        tolerance: "exact (fingerprint of every row)".into(),
        expect: "unchanged".into(),
        values: Vec::new(),
        groups: Some(stats),
        worst,
        all_changes: all,
        baseline_sql: Vec::new(),
        after_sql: Vec::new(),
        error: None,
    }
}

fn fail_shape(message: &'static str) -> CheckResult {
    CheckResult::bare(Status::Error, message.into())
}

/// Fill in the post-migration values of the keys a rows check lists (`worst`), read in one
/// read-only query per check right after the comparison (a later snapshot than the capture's:
/// the fingerprints decide, the values explain). Failures become a note, never an error.
pub async fn describe(
    info: &crate::db::conninfo::ConnInfo,
    spec: &crate::spec::Spec,
    report: &mut crate::model::Report,
) {
    use crate::spec::CheckKind;
    use crate::sql::ident::{quote, quote_qualified};

    let wanted: Vec<usize> = report
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.kind == ResultKind::Rows && c.worst.iter().any(|w| w.scope != DISAPPEARED)
        })
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return;
    }
    let client = match crate::db::connect(info).await {
        Ok(c) => c,
        Err(e) => {
            for &i in &wanted {
                note_all(
                    &mut report.checks[i],
                    &format!("post-state values not read: {e}"),
                );
            }
            return;
        }
    };
    let naming = super::plan::Naming::after(&spec.renames);
    for i in wanted {
        let Some(CheckKind::Rows(r)) = spec
            .checks
            .iter()
            .find(|c| c.name == report.checks[i].name)
            .map(|c| &c.kind)
        else {
            continue;
        };
        let rel = naming.rel(&r.table);
        let rel = match &rel.schema {
            Some(s) => quote_qualified(s, &rel.name),
            None => quote(&rel.name),
        };
        let keys: Vec<String> = r
            .key
            .iter()
            .map(|k| quote(&naming.col(&r.table, k)))
            .collect();
        let mut binds: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
        for w in report.checks[i]
            .worst
            .iter()
            .filter(|w| w.scope != DISAPPEARED)
        {
            for (slot, k) in binds.iter_mut().zip(&w.key) {
                slot.push(k.clone());
            }
        }
        let key_list = |f: &dyn Fn(usize, &String) -> String| {
            keys.iter()
                .enumerate()
                .map(|(i, k)| f(i, k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The keys arrive as text; they are cast to the key columns' own types (read from the
        // prepared statement) so that an index on the key finds the rows: `t.id::text IN (...)`
        // would read the whole table.
        let typed = |types: &[tokio_postgres::types::Type]| {
            format!(
                "SELECT ARRAY[{}]::text[], row_to_json(t)::text FROM {rel} AS t WHERE ({}) IN (SELECT {} FROM unnest({}) AS u({}))",
                key_list(&|_, k| format!("t.{k}::text")),
                key_list(&|_, k| format!("t.{k}")),
                key_list(&|i, _| match types.get(i) {
                    Some(t) => format!("u.c{}::{}", i + 1, quote_qualified(t.schema(), t.name())),
                    None => format!("u.c{}", i + 1),
                }),
                key_list(&|i, _| format!("${}::text[]", i + 1)),
                key_list(&|i, _| format!("c{}", i + 1)),
            )
        };
        let describe_keys = format!(
            "SELECT {} FROM {rel} AS t",
            key_list(&|_, k| format!("t.{k}"))
        );
        let path = match &spec.settings.schemas {
            Some(s) => crate::db::txn::SetLocal::new().search_path(s).sql(),
            None => String::new(),
        };
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = binds
            .iter()
            .map(|b| b as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let result = async {
            client
                .batch_execute(&format!("BEGIN READ ONLY; {path}"))
                .await?;
            let types: Vec<_> = match client.prepare(&describe_keys).await {
                Ok(stmt) => stmt.columns().iter().map(|c| c.type_().clone()).collect(),
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            };
            let rows = client.query(&typed(&types), &params).await;
            let _ = client.batch_execute("ROLLBACK").await;
            rows
        }
        .await;
        match result {
            Ok(rows) => {
                for row in rows {
                    let (Ok(key), Ok(values)) = (
                        row.try_get::<_, Vec<String>>(0),
                        row.try_get::<_, String>(1),
                    ) else {
                        continue;
                    };
                    for w in report.checks[i].worst.iter_mut() {
                        if w.key == key && w.scope != DISAPPEARED {
                            // Baseline values kept: before -> after.
                            w.note = Some(match w.note.take() {
                                Some(before) => format!("{before} -> after: {values}"),
                                None => format!("after: {values}"),
                            });
                        }
                    }
                }
            }
            Err(e) => note_all(
                &mut report.checks[i],
                &format!(
                    "post-state values not read: {}",
                    crate::db::failure(&e, None)
                ),
            ),
        }
    }
}

fn note_all(c: &mut CheckResult, note: &str) {
    for w in c.worst.iter_mut() {
        w.note.get_or_insert_with(|| note.to_string());
    }
}
