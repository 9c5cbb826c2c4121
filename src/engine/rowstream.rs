//! Capturing a `rows` check as a stream: the server sends `(key..., fingerprint[, allowed])`
//! in key order, each row goes straight into a section ([`crate::section`]) or into the merge
//! against the baseline, nothing of the table is held in memory.
//!
//! ```text
//!   prepare  SELECT k1, k2, fp[, allowed] FROM t           -> the key columns' types
//!   run      SELECT q.c1, q.c2::text, q.c3 ... FROM (that) AS q(c1, c2, c3 ...)
//!            ORDER BY q.c1 COLLATE "C", q.c2                text keys in byte order
//!   each row: NULL key?  key <= previous key?  -> the check fails (not unique / out of order)
//!             else -> SectionWriter (1 MB buffer, hashed) -> spill file (anonymous)
//!                  and/or -> merged at once against the baseline's section (verify)
//! ```
//!
//! At verify the post-state is compared as it arrives: the baseline section is read alongside
//! (a [`super::rows::Arriving`] merge) and nothing is spilled, unless the post-state must be
//! kept as well (`verify --save-after`, and every verify run through `engine::verify`:
//! `migrate --no-transaction`, backfill, watch, demo): then it is written to a spill file too.
//! A migrate rehearsal (captured inside the migration's transaction, on one connection) spills
//! the post-state and compares it afterwards, in one piece. A big table is read in key ranges (`WHERE k1 >= from AND k1 < to`, the bounds
//! from `pg_stats`, or from the baseline's parts at verify), one probe per range, run on the
//! capture's connections at once; each range streams in key order and the parts are put
//! together in order ([`crate::section::concat`]).
//!
//! Both sides of a comparison are merged in [`crate::model::cmp_keys`] order, which compares
//! texts byte by byte: text keys are ordered `COLLATE "C"` on the server (whatever the
//! column's collation), integers and numerics by value, uuids by their bytes (the order of
//! their text). Every row is checked against the previous one, so a key type whose server
//! order differs from that (a date before year 1000, a `citext`) fails the check with a clear
//! message instead of merging wrongly, and a duplicate key is found on the way.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::db::txn::Savepoint;
use crate::db::{self, decode::Decoder};
use crate::model::{
    CheckCapture, Column, DbFailure, Kind, Outcome, Section, Snapshot, Value, cmp_keys,
};
use crate::section::{Merged, SectionWriter};
use crate::spec::Spec;
use crate::sql;

use super::plan::{Probe, ProbeKind, RowsSplit};
use super::rows::Arriving;

/// The column of a baseline that keeps row values (`keep = "values"`): `row_to_json` text.
pub const VALUES: &str = "row_values";

/// Which rows of its table a rows probe reads: one key range of several (on the first key
/// column, bounds as text: `from <= k1 < to`, either side open).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub part: usize,
    pub parts: usize,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The baseline section a rows probe's post-state is merged against as it arrives.
#[derive(Debug, Clone)]
pub struct Against {
    pub section: Section,
    /// Also write the post-state to a section (it will be saved).
    pub keep: bool,
}

/// What one rows probe (a range, or the whole table) brought back.
pub(super) struct Streamed {
    /// Written to a spill file (a snapshot, or a post-state that must be kept).
    pub section: Option<Section>,
    /// Merged as it arrived against the baseline.
    pub merged: Option<Result<Merged, String>>,
    pub columns: Vec<Column>,
    pub key_len: usize,
    pub rows: u64,
}

/// A rows check's section from what its probes brought back (one, or one per key range, in
/// any order): the kept parts put together in key order, the merges added up in key order.
pub(super) fn assemble(
    parts: Vec<(Option<Range>, Streamed)>,
    check: &str,
    against: Option<&Against>,
) -> Result<Section, DbFailure> {
    let mut parts = parts;
    parts.sort_by_key(|(r, _)| r.as_ref().map_or(0, |r| r.part));
    let expected = parts
        .first()
        .and_then(|(r, _)| r.as_ref())
        .map_or(1, |r| r.parts);
    let Some((_, first)) = parts.first() else {
        return Err(DbFailure::message_only(
            "internal: a rows check came back without its rows",
        ));
    };
    if parts.len() != expected {
        return Err(DbFailure::message_only(format!(
            "internal: {} of {expected} key ranges came back",
            parts.len()
        )));
    }
    let (columns, key_len) = (first.columns.clone(), first.key_len);
    let rows: u64 = parts.iter().map(|(_, p)| p.rows).sum();
    let mut merged: Option<Result<Merged, String>> = Some(Ok(Merged::default()));
    let mut kept: Option<Vec<(Section, Option<String>)>> = Some(Vec::new());
    for (range, p) in parts {
        merged = match (merged, p.merged) {
            (Some(Ok(mut all)), Some(Ok(m))) => {
                all.append(m);
                Some(Ok(all))
            }
            (Some(Err(e)), _) | (Some(Ok(_)), Some(Err(e))) => Some(Err(e)),
            _ => None,
        };
        kept = match (kept, p.section) {
            (Some(mut list), Some(s)) => {
                list.push((s, range.and_then(|r| r.from)));
                Some(list)
            }
            _ => None,
        };
    }
    let mut section = match kept {
        Some(list) => crate::section::concat(list, check)
            .map_err(|e| DbFailure::message_only(e.to_string()))?,
        None => Section {
            columns,
            key_len,
            rows,
            bytes: 0,
            sha256: String::new(),
            compressed: false,
            parts: Vec::new(),
            source: crate::section::Source::default(),
        },
    };
    if let (Some(outcome), Some(a)) = (merged, against) {
        section.source = section.source.compared_as(crate::section::Compared {
            against: a.section.sha256.clone(),
            outcome,
        });
    }
    Ok(section)
}

/// The baseline sections the post-state's rows checks are merged against as they arrive, by
/// the check's index in the spec (empty: a snapshot, or a post-state compared afterwards).
#[derive(Debug, Clone, Default)]
pub struct Baselines(BTreeMap<usize, Against>);

impl Baselines {
    /// Every rows check of `spec` that `baseline` captured as a section (same name, same
    /// definition: a changed check is reported as such by the comparison, not merged).
    /// `keep`: the post-state is saved too, so it is also written to a spill file.
    pub fn of(spec: &Spec, baseline: &Snapshot, keep: bool) -> Baselines {
        let mut by_check = BTreeMap::new();
        for (i, c) in spec.checks.iter().enumerate() {
            if !matches!(c.kind, crate::spec::CheckKind::Rows(_)) {
                continue;
            }
            let found = baseline
                .checks
                .iter()
                .find(|b| b.name == c.name && c.same_definition(&b.fingerprint));
            if let Some(CheckCapture {
                outcome: Outcome::Streamed(section),
                ..
            }) = found
            {
                by_check.insert(
                    i,
                    Against {
                        section: section.clone(),
                        keep,
                    },
                );
            }
        }
        Baselines(by_check)
    }

    pub fn get(&self, check: usize) -> Option<&Against> {
        self.0.get(&check)
    }
}

/// Tables with fewer rows (the planner's estimate) are read in one piece: a range costs a
/// statement and a connection's turn, worth it only when hashing the rows takes a while.
const SPLIT_ROWS: f64 = 100_000.0;

/// The savepoint the bounds are read under (a failure must leave the snapshot usable).
const BOUNDS: Savepoint = Savepoint::new("migval_bounds");

/// Cut the rows probes of big tables into `connections` key ranges, each its own probe (so
/// the capture's connections hash them at once), in key order:
///
/// ```text
///   rows check on t (10M rows, 4 connections)   histogram of t.id: 1 .. 2.5M .. 5M .. 7.5M .. 10M
///     -> range 0: id < 2.5M   range 1: 2.5M <= id < 5M   range 2: ...   range 3: id >= 7.5M
/// ```
///
/// A post-state merged against a baseline captured in ranges uses the baseline's bounds, so
/// that range i merges against the baseline's part i; a baseline of one piece is merged in one
/// piece. Otherwise the bounds come from `pg_stats` (the last ANALYZE): none there, or a key
/// type migval cannot bound exactly, and the table is read in one piece.
pub(super) async fn split(
    client: &Client,
    probes: Vec<Probe>,
    baselines: &Baselines,
    connections: usize,
) -> Vec<Probe> {
    let mut out = Vec::with_capacity(probes.len());
    for probe in probes {
        let ProbeKind::Rows {
            check,
            split: Some(split),
            range: None,
            ..
        } = &probe.kind
        else {
            out.push(probe);
            continue;
        };
        let bounds: Vec<String> = match baselines.get(*check) {
            Some(a) => {
                let from: Vec<Option<&String>> =
                    a.section.parts.iter().map(|p| p.from.as_ref()).collect();
                if from.len() > 1 && from[1..].iter().all(Option::is_some) {
                    from[1..].iter().flatten().map(|b| (*b).clone()).collect()
                } else {
                    Vec::new()
                }
            }
            None if connections > 1 && split.est_rows >= SPLIT_ROWS => {
                histogram_bounds(client, split, connections).await
            }
            None => Vec::new(),
        };
        if bounds.is_empty() {
            out.push(probe);
            continue;
        }
        let parts = bounds.len() + 1;
        crate::trace!("rows check {check}: {parts} key ranges, bounds {bounds:?}");
        for part in 0..parts {
            let mut p = probe.clone();
            p.cost = probe.cost / f64::from(u32::try_from(parts).unwrap_or(u32::MAX));
            if let ProbeKind::Rows { range, .. } = &mut p.kind {
                *range = Some(Range {
                    part,
                    parts,
                    from: part.checked_sub(1).map(|i| bounds[i].clone()),
                    to: bounds.get(part).cloned(),
                });
            }
            out.push(p);
        }
    }
    out
}

/// `n - 1` bounds cutting the first key column into `n` ranges of about equal size, from its
/// histogram in `pg_stats`, in migval's key order; fewer (none) when the histogram has fewer
/// distinct values, the column is of a type ranges do not split on, or the read fails.
async fn histogram_bounds(client: &Client, split: &RowsSplit, n: usize) -> Vec<String> {
    if client.batch_execute(&BOUNDS.open()).await.is_err() {
        return Vec::new();
    }
    let row = client
        .query_opt(
            sql::ROWS_BOUNDS.sql,
            &[&split.schema, &split.table, &split.column],
        )
        .await;
    let _ = client.batch_execute(&BOUNDS.discard()).await;
    let Ok(Some(row)) = row else {
        return Vec::new();
    };
    let (Ok(oid), Ok(texts)) = (row.try_get::<_, i64>(0), row.try_get::<_, Vec<String>>(1)) else {
        return Vec::new();
    };
    let kind = match u32::try_from(oid).ok().and_then(Type::from_oid) {
        Some(t) if splits_on(&t) => match Decoder::for_type(&t) {
            Some(d) => d.kind(),
            None => Kind::Text, // uuid: compared as its text
        },
        _ => return Vec::new(),
    };
    pick_bounds(kind, texts, n)
}

/// Sort `texts` as key values of `kind`, drop repeats, take `n - 1` evenly spaced ones.
fn pick_bounds(kind: Kind, texts: Vec<String>, n: usize) -> Vec<String> {
    let mut values: Vec<(Value, String)> = texts
        .into_iter()
        .filter_map(|t| bound_value(kind, &t).map(|v| (v, t)))
        .collect();
    let one = |v: &Value| std::slice::from_ref(v).to_vec();
    values.sort_by(|a, b| cmp_keys(&one(&a.0), &one(&b.0)));
    values.dedup_by(|a, b| cmp_keys(&one(&a.0), &one(&b.0)).is_eq());
    if n < 2 || values.len() < 2 {
        return Vec::new();
    }
    let mut picked: Vec<String> = Vec::with_capacity(n - 1);
    for i in 1..n {
        let at = (i * values.len() / n).min(values.len() - 1);
        let t = &values[at].1;
        if picked.last() != Some(t) {
            picked.push(t.clone());
        }
    }
    picked
}

/// Key types a range may split on: compared the same way by the server (with `COLLATE "C"`
/// for texts) and by [`cmp_keys`], with an exact text form to bind the bounds as.
fn splits_on(t: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::NUMERIC,
        Type::TEXT,
        Type::VARCHAR,
        Type::UUID,
    ]
    .contains(t)
}

fn is_text(t: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(t)
}

/// A bound as a key value of `kind` (the first key column's), to check rows against it.
pub(super) fn bound_value(kind: Kind, text: &str) -> Option<Value> {
    match kind {
        Kind::Int => text.parse::<i64>().ok().map(Value::Int),
        Kind::Decimal => match crate::model::numeric_from_text(text) {
            v @ (Value::Dec(_) | Value::BigNum(_)) => Some(v),
            _ => None,
        },
        Kind::Text => Some(Value::Text(text.into())),
        _ => None,
    }
}

/// Stream one rows check (or one key range of it) into a section, or merge it against the
/// baseline as it arrives, or both.
pub(super) async fn capture(
    client: &Client,
    sql: &str,
    keys: &[String],
    check: &str,
    range: Option<&Range>,
    against: Option<&Against>,
) -> Result<Streamed, DbFailure> {
    let fail = |e: tokio_postgres::Error| db::failure(&e, None);
    let described = client.prepare(sql).await.map_err(fail)?;
    let types: Vec<Type> = described
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let names: Vec<String> = described
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let k = keys.len();
    if types.len() <= k {
        return Err(DbFailure::message_only(format!(
            "internal: the rows probe returns {} columns for {k} key columns",
            types.len()
        )));
    }
    let native: Vec<Option<Decoder>> = types.iter().map(Decoder::for_type).collect();
    let (aliases, select) = super::capture::text_wrapped(&native);
    let order: Vec<String> = aliases[..k]
        .iter()
        .zip(&types)
        .map(|(a, t)| {
            if is_text(t) {
                format!("q.{a} COLLATE \"C\"")
            } else {
                format!("q.{a}")
            }
        })
        .collect();
    // A key range: on the first key column, bounds bound as text and cast to its type.
    let mut bounds: Vec<String> = Vec::new();
    let mut filter = Vec::new();
    if let Some(r) = range {
        if !splits_on(&types[0]) {
            return Err(DbFailure::message_only(format!(
                "the baseline was read in key ranges of `{}`, which is now of type {}: key \
                 ranges need an integer, numeric, text or uuid key; take a new baseline",
                keys[0], types[0]
            )));
        }
        let cast = if is_text(&types[0]) {
            "::text COLLATE \"C\"".to_string()
        } else {
            format!(
                "::text::{}",
                crate::sql::ident::quote_qualified(types[0].schema(), types[0].name())
            )
        };
        for (op, b) in [(">=", &r.from), ("<", &r.to)] {
            if let Some(b) = b {
                bounds.push(b.clone());
                filter.push(format!("{} {op} ${}{cast}", order[0], bounds.len()));
            }
        }
    }
    let run = format!(
        "SELECT {}\nFROM ({sql}\n) AS q({}){}\nORDER BY {}",
        select.join(", "),
        aliases.join(", "),
        if filter.is_empty() {
            String::new()
        } else {
            format!("\nWHERE {}", filter.join(" AND "))
        },
        order.join(", ")
    );
    let decoders: Vec<Decoder> = native.iter().map(|d| d.unwrap_or(Decoder::Text)).collect();
    let columns: Vec<Column> = keys
        .iter()
        .zip(&decoders)
        .map(|(label, d)| d.column(label))
        .chain(
            names[k..]
                .iter()
                .zip(&decoders[k..])
                .map(|(n, d)| d.column(n)),
        )
        .collect();
    if columns[k].kind != Kind::Int {
        return Err(DbFailure::message_only(format!(
            "internal: the fingerprint is of type {}, not bigint",
            types[k]
        )));
    }
    // The bounds as key values: every row of the range must lie within them by migval's own
    // order too, or the parts would not line up with the baseline's.
    let lo = range
        .and_then(|r| r.from.as_deref())
        .map(|b| bound_value(columns[0].kind, b));
    let hi = range
        .and_then(|r| r.to.as_deref())
        .map(|b| bound_value(columns[0].kind, b));
    if matches!(lo, Some(None)) || matches!(hi, Some(None)) {
        return Err(DbFailure::message_only(format!(
            "a key range bound is not a value of the key column `{}` ({}): take a new baseline",
            keys[0], types[0]
        )));
    }
    let (lo, hi) = (lo.flatten(), hi.flatten());

    let mut merge = match against {
        Some(a) => {
            let part = range.filter(|r| r.parts > 1).map(|r| r.part);
            Some(Arriving::open(&a.section, part, check, &columns, k))
        }
        None => None,
    };
    let keep = against.is_none_or(|a| a.keep);
    let stmt = client.prepare(&run).await.map_err(fail)?;
    let params: Vec<&(dyn ToSql + Sync)> =
        bounds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    let stream = client.query_raw(&stmt, params).await.map_err(fail)?;
    let mut stream = std::pin::pin!(stream);
    let keeps_values = columns.iter().any(|c| c.name == VALUES);
    let mut out = if keep {
        Some(SectionWriter::new(keeps_values).map_err(|e| DbFailure::message_only(e.to_string()))?)
    } else {
        None
    };
    let mut row: Vec<Value> = Vec::with_capacity(decoders.len());
    let mut prev: Vec<Value> = Vec::with_capacity(decoders.len());
    let mut rows = 0u64;
    let outside = |row: &[Value]| {
        let below = lo
            .as_ref()
            .is_some_and(|l| cmp_keys(&row[..1], std::slice::from_ref(l)).is_lt());
        let above = hi
            .as_ref()
            .is_some_and(|h| cmp_keys(&row[..1], std::slice::from_ref(h)).is_ge());
        below || above
    };
    while let Some(r) = stream.try_next().await.map_err(fail)? {
        row.clear();
        for (i, d) in decoders.iter().enumerate() {
            row.push(db::decode::decode(&r, i, *d).map_err(fail)?);
        }
        if row[..k].iter().any(Value::is_null) {
            return Err(DbFailure::message_only(
                "a key column has NULLs: a rows key must identify every row (use the primary \
                 key or a unique NOT NULL column)",
            ));
        }
        if rows > 0 {
            match cmp_keys(&prev[..k], &row[..k]) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(DbFailure::message_only(format!(
                        "the key columns do not identify rows uniquely: key ({}) appears more \
                         than once; declare more key columns",
                        key_text(&row[..k])
                    )));
                }
                std::cmp::Ordering::Greater => return Err(misordered(&row[..k], &prev[..k])),
            }
        } else if outside(&row) {
            return Err(misordered(&row[..k], &prev[..0]));
        }
        rows += 1;
        if let Some(out) = &mut out {
            out.push(&row)
                .map_err(|e| DbFailure::message_only(e.to_string()))?;
        }
        // A damaged baseline ends the merge (reported as the check's error); the post-state
        // is still read to its end, for its own checks and a kept section.
        if let Some(Ok(m)) = &mut merge
            && let Err(e) = m.push(&row)
        {
            merge = Some(Err(e));
        }
        std::mem::swap(&mut row, &mut prev);
    }
    if rows > 0 && outside(&prev) {
        return Err(misordered(&prev[..k], &prev[..0]));
    }
    let section = match out {
        Some(out) => Some(
            out.finish(columns.clone(), k)
                .map_err(|e| DbFailure::message_only(e.to_string()))?,
        ),
        None => None,
    };
    crate::trace!(
        "rows check `{check}`{}: {rows} rows {}",
        range.map_or(String::new(), |r| format!(
            ", key range {} of {}",
            r.part + 1,
            r.parts
        )),
        match (&section, &merge) {
            (None, Some(_)) => "merged as they arrived, nothing written",
            (Some(_), Some(_)) => "merged as they arrived, and kept",
            _ => "written to a section",
        }
    );
    Ok(Streamed {
        section,
        merged: merge.map(|m| m.and_then(Arriving::finish)),
        columns,
        key_len: k,
        rows,
    })
}

/// The server sent `key` after `prev` (or outside its key range, `prev` empty).
fn misordered(key: &[Value], prev: &[Value]) -> DbFailure {
    DbFailure::message_only(format!(
        "the server returned key ({}) {}: the key's type orders differently on the server \
         than migval compares it (by value for numbers, byte by byte for text); use a key of \
         integer, numeric, uuid or text type",
        key_text(key),
        if prev.is_empty() {
            "outside its key range".to_string()
        } else {
            format!("after ({})", key_text(prev))
        }
    ))
}

fn key_text(key: &[Value]) -> String {
    key.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn bounds_are_picked_in_migvals_key_order_without_repeats() {
        // Integers by value, not as text ("10" after "9").
        let ints: Vec<String> = (1..=100).rev().map(|i| i.to_string()).collect();
        assert_eq!(pick_bounds(Kind::Int, ints, 4), ["26", "51", "76"]);
        // Texts byte by byte (upper case first: A B C a b c d), repeats dropped.
        let t = texts(&["b", "B", "a", "A", "a", "c", "C", "d"]);
        assert_eq!(pick_bounds(Kind::Text, t, 3), ["C", "b"]);
        // Numerics by value.
        let d = texts(&["10.5", "2", "2.00", "3.25", "-1"]);
        assert_eq!(pick_bounds(Kind::Decimal, d, 2), ["3.25"]);
        // Fewer distinct values than ranges: fewer bounds; one value or one range: none.
        assert_eq!(pick_bounds(Kind::Int, texts(&["1", "2"]), 8), ["1", "2"]);
        assert!(pick_bounds(Kind::Int, texts(&["7", "7"]), 4).is_empty());
        assert!(pick_bounds(Kind::Int, texts(&["1", "2", "3"]), 1).is_empty());
        // A value that is not of the key's kind is left out.
        assert_eq!(
            pick_bounds(Kind::Int, texts(&["x", "1", "5", "9"]), 2),
            ["5"]
        );
    }
}
