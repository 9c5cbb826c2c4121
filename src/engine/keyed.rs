//! The keyed merge: a grouped check's (or keyed custom query's) result on both sides, one row
//! per group in key order, merged in one linear pass. Each value is judged by its rule
//! ([`super::rules`]); counts and totals are kept, and the worst groups (every differing one
//! for `--changes-out`).
//!
//! ```text
//!   baseline  k1 k2    k4 k5        k1: compared   k3: appeared
//!   after     k1    k3 k4 k5        k2: disappeared
//! ```
//!
//! Either side is a [`Side`]: a table in memory, or a section read from its file as the merge
//! goes (a large result, written in key order at capture). The merge holds one row of each
//! side at a time, so neither side's size bounds memory; what it keeps is the worst groups
//! (pruned to a few times N as it goes) and, only for `--changes-out`, every differing one.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, Ordering as Atomic};

use rust_decimal::Decimal;

use crate::model::{
    CheckResult, Column, Comparison, GroupStats, Outcome, ResultKind, Section, Status, Table,
    Value, ValueScope, cmp_keys,
};
use crate::section::SectionReader;
use crate::spec::Expect;

use super::rules::{self, ColumnRule, Total};
use super::summary::{grouped_summary, ungrouped_summary};

/// Whether grouped checks keep every differing group and metric in `all_changes`: on for
/// `--changes-out` only, since a migration that moves every one of a million groups would
/// otherwise hold a record for each in memory for nothing. Rows checks always keep theirs.
static KEEP_ALL_CHANGES: AtomicBool = AtomicBool::new(false);

/// Keep every differing group of grouped checks (for `--changes-out`), or only the worst.
pub fn keep_all_changes(on: bool) {
    KEEP_ALL_CHANGES.store(on, Atomic::Relaxed);
}

/// One side of the merge: its columns (the first `key_len` the key), its row count, and its
/// rows in key order ([`cmp_keys`]), one at a time.
pub(super) trait Side {
    fn columns(&self) -> &[Column];
    fn key_len(&self) -> usize;
    fn rows(&self) -> usize;
    /// The row under the cursor (`None` past the end).
    fn current(&self) -> Option<&[Value]>;
    fn advance(&mut self) -> Result<(), String>;
}

/// A capture held in memory (sorted by key at capture, or read from an older baseline).
pub(super) struct TableSide<'a> {
    t: &'a Table,
    i: usize,
}

impl<'a> TableSide<'a> {
    pub(super) fn new(t: &'a Table) -> TableSide<'a> {
        TableSide { t, i: 0 }
    }
}

impl Side for TableSide<'_> {
    fn columns(&self) -> &[Column] {
        &self.t.columns
    }
    fn key_len(&self) -> usize {
        self.t.key_len
    }
    fn rows(&self) -> usize {
        self.t.len()
    }
    fn current(&self) -> Option<&[Value]> {
        (self.i < self.t.len()).then(|| self.t.row(self.i))
    }
    fn advance(&mut self) -> Result<(), String> {
        self.i += 1;
        Ok(())
    }
}

/// A section read from its file as the merge goes; its length, row count and SHA-256 are
/// checked when the last row has been read, so a damaged section fails the check.
pub(super) struct SectionSide {
    columns: Vec<Column>,
    key_len: usize,
    rows: usize,
    reader: SectionReader,
    at_row: bool,
}

impl SectionSide {
    /// Open `s` (of check `check`, named in errors) at its first row.
    pub(super) fn open(s: &Section, check: &str) -> Result<SectionSide, String> {
        let mut side = SectionSide {
            columns: s.columns.clone(),
            key_len: s.key_len,
            rows: usize::try_from(s.rows).unwrap_or(usize::MAX),
            reader: SectionReader::open(s, check).map_err(|e| e.to_string())?,
            at_row: false,
        };
        side.advance()?;
        Ok(side)
    }
}

impl Side for SectionSide {
    fn columns(&self) -> &[Column] {
        &self.columns
    }
    fn key_len(&self) -> usize {
        self.key_len
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn current(&self) -> Option<&[Value]> {
        self.at_row.then(|| self.reader.row())
    }
    fn advance(&mut self) -> Result<(), String> {
        self.at_row = self.reader.next_row().map_err(|e| e.to_string())?.is_some();
        Ok(())
    }
}

/// A check's two outcomes, either of them streamed to a section (the other may be a table:
/// a small result, or a baseline of an older format). `rules` gives the value columns'
/// rules from the baseline's columns.
pub(super) fn compare_outcomes(
    check: &str,
    b: &Outcome,
    a: &Outcome,
    rules: impl Fn(&[Column], usize) -> Vec<ColumnRule>,
    worst_n: usize,
) -> CheckResult {
    fn open<'a>(o: &'a Outcome, check: &str) -> Result<Box<dyn Side + 'a>, String> {
        match o {
            Outcome::Captured(t) => Ok(Box::new(TableSide::new(t))),
            Outcome::Streamed(s) => Ok(Box::new(SectionSide::open(s, check)?)),
            Outcome::Failed(_) | Outcome::Absent(_) => {
                Err("internal: a keyed comparison of a capture that has no rows".into())
            }
        }
    }
    let sides = open(b, check).and_then(|b| Ok((b, open(a, check)?)));
    match sides {
        Ok((mut b, mut a)) => {
            let rules = rules(b.columns(), b.key_len());
            compare_sides(b.as_mut(), a.as_mut(), &rules, worst_n)
        }
        Err(e) => CheckResult::bare(Status::Error, e),
    }
}

/// Two captures in memory.
pub(super) fn compare_keyed(
    bt: &Table,
    at: &Table,
    rules: &[ColumnRule],
    worst_n: usize,
) -> CheckResult {
    compare_sides(
        &mut TableSide::new(bt),
        &mut TableSide::new(at),
        rules,
        worst_n,
    )
}

/// Two sides of any kind; a side that cannot be read to its end (a damaged section) makes
/// the check an error.
pub(super) fn compare_sides(
    b: &mut dyn Side,
    a: &mut dyn Side,
    rules: &[ColumnRule],
    worst_n: usize,
) -> CheckResult {
    merge(b, a, rules, worst_n).unwrap_or_else(|e| CheckResult::bare(Status::Error, e))
}

fn merge(
    b: &mut dyn Side,
    a: &mut dyn Side,
    rules: &[ColumnRule],
    worst_n: usize,
) -> Result<CheckResult, String> {
    let (bk, ak) = (b.key_len(), a.key_len());
    // One row on each side under the same key (a custom query keyed by a constant): its values
    // are shown like an ungrouped check's, not as "1 group changed".
    let one_row = b.rows() == 1
        && a.rows() == 1
        && bk == ak
        && b.current()
            .zip(a.current())
            .is_some_and(|(x, y)| cmp_keys(&x[..bk], &y[..ak]) == Ordering::Equal);
    let grouped = (bk > 0 || ak > 0) && !one_row;
    let matched = match_columns(b.columns(), bk, a.columns(), ak, rules);
    if !grouped {
        return Ok(ungrouped(b.current(), a.current(), rules, matched));
    }
    let mut m = Merge::new(rules, matched, worst_n, b.rows(), a.rows());
    loop {
        let ord = match (b.current(), a.current()) {
            (Some(x), Some(y)) => cmp_keys(&x[..bk], &y[..ak]),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        let brow = b.current().filter(|_| ord != Ordering::Greater);
        let arow = a.current().filter(|_| ord != Ordering::Less);
        m.group(brow.map(|r| (r, bk)), arow.map(|r| (r, ak)));
        match ord {
            Ordering::Less => b.advance()?,
            Ordering::Greater => a.advance()?,
            Ordering::Equal => {
                b.advance()?;
                a.advance()?;
            }
        }
    }
    Ok(m.finish())
}

/// The value columns of both sides matched to the rules by name (custom SQL columns are
/// compared by name); a column missing on one side, or new after, is a failing value.
struct Matched {
    /// (rule, baseline column, after column) of every rule found on both sides.
    usable: Vec<(usize, usize, usize)>,
    problems: Vec<Comparison>,
    /// A rule's column is missing on one side (the summary says so).
    missing: bool,
}

fn match_columns(
    bcols: &[Column],
    bk: usize,
    acols: &[Column],
    ak: usize,
    rules: &[ColumnRule],
) -> Matched {
    let col_in = |cols: &[Column], k: usize, label: &str| {
        cols[k..]
            .iter()
            .position(|c| c.name == label)
            .map(|p| p + k)
    };
    let problem = |metric: &str, note: &str| Comparison {
        key: Vec::new(),
        metric: metric.to_string(),
        scope: ValueScope::Value,
        baseline: None,
        after: None,
        difference: None,
        rule: "column present on both sides".into(),
        ok: false,
        note: Some(note.into()),
    };
    let mut m = Matched {
        usable: Vec::new(),
        problems: Vec::new(),
        missing: false,
    };
    for (i, r) in rules.iter().enumerate() {
        match (col_in(bcols, bk, &r.label), col_in(acols, ak, &r.label)) {
            (Some(bc), Some(ac)) => m.usable.push((i, bc, ac)),
            (bc, _) => {
                m.missing = true;
                m.problems.push(problem(
                    &r.label,
                    if bc.is_none() {
                        "column missing in the baseline"
                    } else {
                        "column missing after the migration"
                    },
                ));
            }
        }
    }
    if let Some(extra) = acols[ak..]
        .iter()
        .find(|c| !rules.iter().any(|r| r.label == c.name))
    {
        m.problems.push(problem(
            &extra.name,
            "column new after the migration (not in the baseline)",
        ));
    }
    m
}

/// An ungrouped check (or one row under one key): each value judged once.
fn ungrouped(
    brow: Option<&[Value]>,
    arow: Option<&[Value]>,
    rules: &[ColumnRule],
    matched: Matched,
) -> CheckResult {
    let mut any_fail = !matched.problems.is_empty();
    let mut any_change = false;
    let mut values = matched.problems;
    for &(i, bc, ac) in &matched.usable {
        let r = &rules[i];
        let bv = brow.map(|row| &row[bc]);
        let av = arow.map(|row| &row[ac]);
        let j = rules::judge(bv, av, &r.rule, r.exact);
        any_fail |= !j.ok;
        any_change |= j.changed;
        values.push(Comparison {
            key: Vec::new(),
            metric: r.label.clone(),
            scope: ValueScope::Value,
            baseline: bv.cloned(),
            after: av.cloned(),
            difference: j.difference.map(|d| d.to_string()),
            rule: rules::rule_text(&r.rule, r.exact),
            ok: j.ok,
            note: j.note,
        });
    }
    let status = rules::status_of(any_fail, any_change, rules);
    let summary = ungrouped_summary(&values, status);
    result(status, summary, rules, false, values)
}

fn result(
    status: Status,
    summary: String,
    rules: &[ColumnRule],
    grouped: bool,
    values: Vec<Comparison>,
) -> CheckResult {
    CheckResult {
        name: String::new(),
        kind: ResultKind::Metrics,
        status,
        after_only: false,
        summary,
        tolerance: rules::tolerance_text(rules, grouped),
        expect: rules::expect_text(rules),
        values,
        groups: None,
        worst: Vec::new(),
        all_changes: Vec::new(),
        baseline_sql: Vec::new(),
        after_sql: Vec::new(),
        error: None,
    }
}

/// A candidate for the worst-groups list; pruned to a few times N as the merge goes.
struct Candidate {
    failing: bool,
    magnitude: Decimal,
    entry: Comparison,
}

/// Keep the `n` worst candidates: failing first, then by absolute difference (a stable sort:
/// ties stay in key order).
fn prune(c: &mut Vec<Candidate>, n: usize) {
    c.sort_by(|x, y| {
        y.failing
            .cmp(&x.failing)
            .then(y.magnitude.cmp(&x.magnitude))
    });
    c.truncate(n);
}

/// What happened to a group: in both, only in the baseline, only after.
fn scope_of(before: bool, after: bool) -> ValueScope {
    match (before, after) {
        (true, false) => ValueScope::Disappeared,
        (false, true) => ValueScope::Appeared,
        _ => ValueScope::Group,
    }
}

fn key_text(key: &[Value]) -> Vec<String> {
    key.iter().map(ToString::to_string).collect()
}

/// The state of a grouped merge: counts, totals, the worst groups so far.
struct Merge<'r> {
    rules: &'r [ColumnRule],
    matched: Matched,
    worst_n: usize,
    keep_all: bool,
    stats: GroupStats,
    totals: Vec<Total>,
    candidates: Vec<Candidate>,
    /// Every differing group and metric, for `--changes-out` (the report keeps the worst only).
    all_changes: Vec<Comparison>,
    any_fail: bool,
    any_change: bool,
}

impl<'r> Merge<'r> {
    fn new(
        rules: &'r [ColumnRule],
        matched: Matched,
        worst_n: usize,
        baseline_groups: usize,
        after_groups: usize,
    ) -> Merge<'r> {
        Merge {
            rules,
            any_fail: !matched.problems.is_empty(),
            matched,
            worst_n,
            keep_all: KEEP_ALL_CHANGES.load(Atomic::Relaxed),
            stats: GroupStats {
                baseline_groups,
                after_groups,
                ..GroupStats::default()
            },
            totals: vec![(None, None, None); rules.len()],
            candidates: Vec::new(),
            all_changes: Vec::new(),
            any_change: false,
        }
    }

    /// Judge one group: its row (and key length) on each side where it exists.
    fn group(&mut self, brow: Option<(&[Value], usize)>, arow: Option<(&[Value], usize)>) {
        match (brow, arow) {
            (Some(_), None) => self.stats.disappeared += 1,
            (None, Some(_)) => self.stats.appeared += 1,
            _ => {}
        }
        let scope = scope_of(brow.is_some(), arow.is_some());
        let key = || match (brow, arow) {
            (Some((r, k)), _) | (None, Some((r, k))) => key_text(&r[..k]),
            (None, None) => Vec::new(),
        };
        let rules = self.rules;
        let mut group_changed = brow.is_none() || arow.is_none();
        let mut group_failing = false;
        for u in 0..self.matched.usable.len() {
            let (i, bc, ac) = self.matched.usable[u];
            let r = &rules[i];
            let bv = brow.map(|(x, _)| &x[bc]);
            let av = arow.map(|(x, _)| &x[ac]);
            if r.rule.scope.total() {
                rules::accumulate(&mut self.totals[i], bv, av, r.total);
            }
            let one_sided = bv.is_none() || av.is_none();
            let fails_one_sided = one_sided && r.rule.expect == Expect::Unchanged;
            if !r.rule.scope.per_group() {
                // Appeared/disappeared groups still count as differences under a total-only rule.
                if fails_one_sided {
                    group_failing = true;
                }
                let differs = one_sided || bv.zip(av).is_some_and(|(x, y)| !x.same(y));
                group_changed |= differs;
                if differs && self.keep_all {
                    self.all_changes.push(Comparison {
                        key: key(),
                        metric: r.label.clone(),
                        scope,
                        baseline: bv.cloned(),
                        after: av.cloned(),
                        difference: bv
                            .and_then(Value::as_decimal)
                            .zip(av.and_then(Value::as_decimal))
                            .map(|(x, y)| (y - x).to_string()),
                        rule: format!(
                            "{} (judged on the total)",
                            rules::rule_text(&r.rule, r.exact)
                        ),
                        ok: !fails_one_sided,
                        note: None,
                    });
                }
                continue;
            }
            let j = rules::judge(bv, av, &r.rule, r.exact);
            group_changed |= j.changed;
            group_failing |= !j.ok;
            if j.changed || !j.ok {
                let entry = Comparison {
                    key: key(),
                    metric: r.label.clone(),
                    scope,
                    baseline: bv.cloned(),
                    after: av.cloned(),
                    difference: j.difference.map(|d| d.to_string()),
                    rule: rules::rule_text(&r.rule, r.exact),
                    ok: j.ok,
                    note: j.note,
                };
                if self.keep_all {
                    self.all_changes.push(entry.clone());
                }
                let magnitude = j
                    .difference
                    .or_else(|| av.or(bv).and_then(Value::as_decimal))
                    .map(|d| d.abs())
                    .unwrap_or(Decimal::MAX);
                self.candidates.push(Candidate {
                    failing: !entry.ok,
                    magnitude,
                    entry,
                });
                if self.candidates.len() > self.worst_n.max(1) * 8 {
                    prune(&mut self.candidates, self.worst_n);
                }
            }
        }
        if group_changed {
            self.stats.changed += 1;
            self.any_change = true;
        }
        if group_failing {
            self.stats.failing += 1;
            self.any_fail = true;
        }
    }

    /// The totals judged, the worst groups, the verdict.
    fn finish(mut self) -> CheckResult {
        prune(&mut self.candidates, self.worst_n);
        let worst: Vec<Comparison> = self.candidates.into_iter().map(|c| c.entry).collect();
        let mut values = self.matched.problems;
        let rules = self.rules;
        for &(i, _, _) in &self.matched.usable {
            let r = &rules[i];
            if !r.rule.scope.total() {
                continue;
            }
            let (tb, ta, note) = &self.totals[i];
            let mut j = rules::judge(tb.as_ref(), ta.as_ref(), &r.rule, r.exact);
            if let Some(n) = note {
                j.ok = false;
                j.note = Some(n.clone());
            }
            self.any_fail |= !j.ok;
            values.push(Comparison {
                key: Vec::new(),
                metric: r.label.clone(),
                scope: ValueScope::Total,
                baseline: tb.clone(),
                after: ta.clone(),
                difference: j.difference.map(|d| d.to_string()),
                rule: rules::rule_text(&r.rule, r.exact),
                ok: j.ok,
                note: j.note,
            });
        }
        let status = rules::status_of(self.any_fail, self.any_change, rules);
        let summary = grouped_summary(&self.stats, &values, status, self.matched.missing);
        CheckResult {
            groups: Some(self.stats),
            worst,
            all_changes: self.all_changes,
            ..result(status, summary, rules, true, values)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, Kind};
    use crate::spec::{Rule, Scope, Tolerance};
    use rules::Combine;

    fn d(s: &str) -> Value {
        Value::Dec(s.parse().unwrap())
    }

    fn rule(tolerance: Tolerance, expect: Expect, scope: Scope) -> Rule {
        Rule {
            tolerance,
            expect,
            scope,
        }
    }

    fn grouped(rows: &[(i64, Value)]) -> Table {
        let mut t = Table::new(
            vec![
                Column {
                    name: "g".into(),
                    kind: Kind::Int,
                },
                Column {
                    name: "sum(x)".into(),
                    kind: Kind::Decimal,
                },
            ],
            1,
        );
        for (k, v) in rows {
            t.cells.push(Value::Int(*k));
            t.cells.push(v.clone());
        }
        t
    }

    fn sum_rule(r: Rule) -> Vec<ColumnRule> {
        vec![ColumnRule {
            label: "sum(x)".into(),
            rule: r,
            exact: false,
            total: Some(Combine::Sum),
        }]
    }

    #[test]
    fn tolerance_per_group_versus_total() {
        // +0.01 in one group, -0.01 in another: per group within 0.01, total exactly equal.
        let b = grouped(&[(1, d("100.00")), (2, d("200.00"))]);
        let a = grouped(&[(1, d("100.01")), (2, d("199.99"))]);
        let exact_total = sum_rule(rule(Tolerance::Exact, Expect::Unchanged, Scope::Total));
        assert_eq!(compare_keyed(&b, &a, &exact_total, 10).status, Status::Pass);
        let exact_group = sum_rule(rule(Tolerance::Exact, Expect::Unchanged, Scope::Group));
        let r = compare_keyed(&b, &a, &exact_group, 10);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.groups.as_ref().unwrap().failing, 2);
        let abs_group = sum_rule(rule(
            Tolerance::Abs("0.01".parse().unwrap()),
            Expect::Unchanged,
            Scope::Both,
        ));
        assert_eq!(compare_keyed(&b, &a, &abs_group, 10).status, Status::Pass);
    }

    #[test]
    fn appeared_and_disappeared_groups_are_differences() {
        let b = grouped(&[(1, d("1")), (2, d("2"))]);
        let a = grouped(&[(1, d("1")), (3, d("2"))]);
        let r = compare_keyed(&b, &a, &sum_rule(Rule::default()), 10);
        assert_eq!(r.status, Status::Fail);
        let g = r.groups.unwrap();
        assert_eq!((g.appeared, g.disappeared, g.changed), (1, 1, 2));
        assert!(
            r.worst
                .iter()
                .any(|w| w.scope == ValueScope::Appeared && w.key == vec!["3"])
        );
    }

    #[test]
    fn worst_groups_sorted_by_absolute_difference() {
        let b = grouped(&[(1, d("10")), (2, d("10")), (3, d("10"))]);
        let a = grouped(&[(1, d("11")), (2, d("-40")), (3, d("13"))]);
        let r = compare_keyed(&b, &a, &sum_rule(Rule::default()), 2);
        let keys: Vec<&str> = r.worst.iter().map(|w| w.key[0].as_str()).collect();
        assert_eq!(keys, vec!["2", "3"]);
        assert_eq!(r.worst[0].difference.as_deref(), Some("-50"));
    }

    fn section_of(t: &Table) -> Section {
        let mut w = crate::section::SectionWriter::new(false).unwrap();
        for i in 0..t.len() {
            w.push(t.row(i)).unwrap();
        }
        w.finish(t.columns.clone(), t.key_len).unwrap()
    }

    #[test]
    fn a_section_side_merges_like_a_table_and_a_damaged_one_is_an_error() {
        let b = grouped(&[(1, d("10")), (2, d("10")), (4, Value::Null), (5, d("1"))]);
        let a = grouped(&[(1, d("10.5")), (3, d("7")), (4, d("0")), (5, d("1"))]);
        let r = rule(Tolerance::Exact, Expect::Unchanged, Scope::Both);
        let rules = sum_rule(r);
        let json = |c: &CheckResult| serde_json::to_string(c).unwrap();
        let in_memory = compare_keyed(&b, &a, &rules, 10);
        assert_eq!(in_memory.groups.as_ref().unwrap().changed, 4);
        let (bs, as_) = (section_of(&b), section_of(&a));
        let rule_of = |_: &[Column], _: usize| sum_rule(r);
        for (x, y) in [
            (
                Outcome::Streamed(bs.clone()),
                Outcome::Streamed(as_.clone()),
            ),
            (Outcome::Captured(b.clone()), Outcome::Streamed(as_.clone())),
            (Outcome::Streamed(bs.clone()), Outcome::Captured(a.clone())),
        ] {
            assert_eq!(
                json(&compare_outcomes("c", &x, &y, rule_of, 10)),
                json(&in_memory)
            );
        }
        let mut cut = bs.clone();
        cut.rows += 1;
        let e = compare_outcomes(
            "c",
            &Outcome::Streamed(cut),
            &Outcome::Streamed(as_),
            rule_of,
            10,
        );
        assert_eq!(e.status, Status::Error);
        assert!(e.summary.contains("cut short or damaged"), "{}", e.summary);
    }
}
