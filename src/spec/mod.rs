//! The checks file: parsed once (`raw`), validated once into [`Spec`]. Commands only ever see
//! the validated type. Every error names the file, the line, the check and the key.

mod check;
pub mod expect_change;
mod fingerprint;
mod legacy;
mod locate;
pub mod raw;
mod rules;
mod validate;

use std::fmt;
use std::path::Path;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::sql::ident::Name;
pub use check::metrics::parse_metric;
pub use expect_change::{ExpectedChange, SchemaDiff, Verb};
use raw::RawSpec;
use validate::Validator;

/// A spec error: `checks.toml:12: check `revenue`, key `metrics`: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {place}{message}")]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    /// "check `name`, key `metrics`: " or empty.
    pub place: String,
    pub message: String,
}

/// All problems found in one file (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the spec has {n} error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Schemas searched for unqualified names; `None` means the connection's search_path.
    pub schemas: Option<Vec<String>>,
    pub statement_timeout_ms: u64,
    pub lock_timeout_ms: u64,
    pub parallel: usize,
    /// `max_parallel_workers_per_gather` for the probes; `None`: 0 while several connections
    /// run probes at once (they already share the server's cores), else the server's own.
    pub query_workers: Option<u32>,
    pub worst_groups: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            schemas: None,
            statement_timeout_ms: 10 * 60 * 1000,
            lock_timeout_ms: 5_000,
            parallel: 4,
            query_workers: None,
            worst_groups: 10,
        }
    }
}

/// Pre-migration names mapped to post-migration names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Renames {
    /// (old table, new table), unqualified.
    pub tables: Vec<(String, String)>,
    /// (table as named before, old column, new column).
    pub columns: Vec<(String, String, String)>,
}

impl Renames {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.columns.is_empty()
    }

    pub fn table(&self, old: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|(o, _)| o == old)
            .map(|(_, n)| n.as_str())
    }

    /// New name of `column` of `table` (table named as before the migration).
    pub fn column(&self, table: &str, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(t, o, _)| t == table && o == column)
            .map(|(_, _, n)| n.as_str())
    }

    /// Column renames of one table as (old, new) pairs.
    pub fn columns_of(&self, table: &str) -> Vec<(String, String)> {
        self.columns
            .iter()
            .filter(|(t, _, _)| t == table)
            .map(|(_, o, n)| (o.clone(), n.clone()))
            .collect()
    }

    /// Human-readable mapping, for reports.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.tables.clone();
        for (t, o, n) in &self.columns {
            out.push((
                format!("{t}.{o}"),
                format!("{}.{n}", self.table(t).unwrap_or(t)),
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Group,
    Total,
    Both,
}

impl Scope {
    pub fn per_group(self) -> bool {
        matches!(self, Scope::Group | Scope::Both)
    }
    pub fn total(self) -> bool {
        matches!(self, Scope::Total | Scope::Both)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    Exact,
    Abs(Decimal),
    /// A fraction of the baseline value (0.001 = 0.1%).
    Rel(Decimal),
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tolerance::Exact => f.write_str("exact"),
            Tolerance::Abs(d) => write!(f, "abs {d}"),
            Tolerance::Rel(r) => write!(f, "rel {}%", (r * Decimal::ONE_HUNDRED).normalize()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    Unchanged,
    Zero,
    MayChange,
    Equals(Decimal),
    ChangesBy(Decimal),
    Between(Decimal, Decimal),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Unchanged => f.write_str("unchanged"),
            Expect::Zero => f.write_str("zero"),
            Expect::MayChange => f.write_str("may change"),
            Expect::Equals(v) => write!(f, "equals {v}"),
            Expect::ChangesBy(v) => write!(f, "changes by {v}"),
            Expect::Between(a, b) => write!(f, "between {a} and {b}"),
        }
    }
}

/// How one value is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub tolerance: Tolerance,
    pub expect: Expect,
    pub scope: Scope,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            tolerance: Tolerance::Exact,
            expect: Expect::Unchanged,
            scope: Scope::Group,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    CountStar,
    Count,
    CountDistinct,
    Sum,
    Min,
    Max,
    Avg,
}

impl Func {
    /// Counts are always compared exactly, whatever the tolerance.
    pub fn is_count(self) -> bool {
        matches!(self, Func::CountStar | Func::Count | Func::CountDistinct)
    }
    /// Whether per-group values can be combined into a total.
    pub fn totals(self) -> bool {
        !matches!(self, Func::Avg | Func::CountDistinct)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricArg {
    Star,
    Column(String),
    /// A SQL expression over the table's columns, e.g. `fixed_cost + coalesce(bonus, 0)`.
    Expr(String),
}

/// A SQL fragment (`where`, an expression) with an optional post-migration form, for
/// mappings that a name-for-name `[rename]` cannot express:
/// `where = { before = "is_enabled", after = "state = 'enabled'" }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sided {
    /// As it reads before the migration (renamed columns follow [rename] on the post side
    /// when there is no `after`).
    pub before: String,
    /// Written with the post-migration names, used as is on the post side.
    pub after: Option<String>,
}

impl Sided {
    pub fn plain(text: impl Into<String>) -> Sided {
        Sided {
            before: text.into(),
            after: None,
        }
    }
}

/// What a group key reads on the pre-migration side.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyExpr {
    /// A column of the table (system columns such as `tableoid` included).
    Column(String),
    /// A SQL expression over the table's columns.
    Expr(String),
}

/// One `group_by` entry: a column, or `{ as = "label", expr = "..." }`, or
/// `{ as = "label", before = "...", after = "..." }`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupKey {
    /// The key's name in reports (the column's pre-migration name for a plain column).
    pub label: String,
    pub before: KeyExpr,
    /// The post-migration form, used as is.
    pub after: Option<String>,
}

impl GroupKey {
    pub fn column(name: impl Into<String>) -> GroupKey {
        let name = name.into();
        GroupKey {
            label: name.clone(),
            before: KeyExpr::Column(name),
            after: None,
        }
    }

    /// The plain column this key reads, if it is one and has no other post-migration form.
    pub fn plain_column(&self) -> Option<&str> {
        match (&self.before, &self.after) {
            (KeyExpr::Column(c), None) => Some(c),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// As written (normalised), e.g. `sum(fixed_cost)`: the name of the value in reports.
    pub label: String,
    pub func: Func,
    pub arg: MetricArg,
    pub rule: Rule,
    /// The post-migration expression, used as is: `sum(price_cents) / 100.0`.
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsCheck {
    pub table: Name,
    pub filter: Option<Sided>,
    pub group_by: Vec<GroupKey>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NullCheck {
    pub table: Name,
    pub column: String,
    pub filter: Option<Sided>,
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrphanCheck {
    pub child: Name,
    pub child_columns: Vec<String>,
    pub parent: Name,
    pub parent_columns: Vec<String>,
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomCheck {
    /// The query on the pre-migration side; `None` for an after-only query (`sql_after` alone).
    pub sql: Option<String>,
    pub sql_after: Option<String>,
    /// Key columns; empty for a query that returns one row.
    pub key: Vec<String>,
    pub rule: Rule,
}

/// A catalog fact. Declared attributes are asserted on the post-state; attributes left
/// undeclared must be unchanged from the baseline when the object existed in both.
#[derive(Debug, Clone, PartialEq)]
pub enum FactObject {
    Table(Name),
    View(Name),
    Column(Name, String),
    Constraint(Name, String),
    Index(Name),
    Rls(Name),
    Policy(Name, String),
    Function(Name),
    ViewsQueryable(Vec<Name>),
    /// Every listed column is gone (on a partitioned table: from every partition too).
    ColumnsAbsent(Vec<(Name, String)>),
    /// A foreign key by what it is: `orders(customer_id) -> customers(id)`, whatever its name.
    ForeignKey {
        table: Name,
        columns: Vec<String>,
        parent: Name,
        parent_columns: Vec<String>,
    },
    /// A unique key (constraint or unique index) on exactly these columns.
    Unique(Name, Vec<String>),
    /// A CHECK constraint that reads this column.
    CheckOn(Name, String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FactExpect {
    pub exists: Option<bool>,
    pub data_type: Option<String>,
    pub nullable: Option<bool>,
    pub validated: Option<bool>,
    pub valid: Option<bool>,
    pub enabled: Option<bool>,
    /// A view's kind: "view" or "materialized".
    pub view_kind: Option<String>,
    /// A materialized view has been populated (REFRESHed or created WITH DATA).
    pub populated: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchemaCheck {
    pub object: FactObject,
    pub expect: FactExpect,
    pub may_change: bool,
    /// Ignore the declarations: every attribute must equal the baseline (used to check that a
    /// rollback restores the state exactly).
    pub compare_only: bool,
    /// Names go through [rename] on the post side (the default); `false` asserts about the
    /// name as written, e.g. that the old name of a renamed column is gone.
    pub follow_rename: bool,
}

/// Row proof: every row's key and a fingerprint of its values, compared key by key, so that
/// compensating errors (+250 on one row, -250 on another) that leave every aggregate unchanged
/// are caught.
#[derive(Debug, Clone, PartialEq)]
pub struct RowsCheck {
    pub table: Name,
    /// Columns that identify a row (a unique, NOT NULL key).
    pub key: Vec<String>,
    /// The columns fingerprinted, in this order; `None`: every column of the table at baseline
    /// (in column order) but the key and `exclude`.
    pub columns: Option<Vec<String>>,
    /// Columns left out of the fingerprint (a deliberate rewrite, a type change).
    pub exclude: Vec<String>,
    /// A predicate on the post-migration row: rows matching it may change (WARN).
    pub allow_changes: Option<String>,
    /// `keep = "values"`: the baseline also stores each row's values (compressed), so the
    /// report and `--changes-out` show before -> after.
    pub keep_values: bool,
}

/// One part of a table's on-disk size (bytes; `table + indexes + toast = total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizePart {
    /// The heap with its free-space and visibility maps: `pg_table_size` minus TOAST.
    Table,
    /// Every index of the table: `pg_indexes_size`.
    Indexes,
    /// The TOAST table and its index.
    Toast,
    /// All of it: `pg_total_relation_size`.
    Total,
}

impl SizePart {
    pub const ALL: [SizePart; 4] = [
        SizePart::Table,
        SizePart::Indexes,
        SizePart::Toast,
        SizePart::Total,
    ];

    /// The name in the spec, in reports and in the capture's columns.
    pub fn label(self) -> &'static str {
        match self {
            SizePart::Table => "table",
            SizePart::Indexes => "indexes",
            SizePart::Toast => "toast",
            SizePart::Total => "total",
        }
    }
}

/// How much a table may grow: a fraction of its baseline size, or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Growth {
    /// 0.2 = 20%.
    Fraction(Decimal),
    Bytes(i64),
}

impl fmt::Display for Growth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Growth::Fraction(r) => write!(f, "{}%", (r * Decimal::ONE_HUNDRED).normalize()),
            Growth::Bytes(b) => f.write_str(&crate::model::pretty_bytes(*b)),
        }
    }
}

/// Relation sizes before and after: per table its heap, indexes, TOAST and total, in bytes.
/// Sizes are the files on disk when they are read, not MVCC-consistent values: see the README.
#[derive(Debug, Clone, PartialEq)]
pub struct SizesCheck {
    pub tables: Vec<Name>,
    /// The parts the intent judges (the others are reported); default: the total.
    pub judge: Vec<SizePart>,
    /// `None`: may change (reported, never fails).
    pub grows_at_most: Option<Growth>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Metrics(MetricsCheck),
    NullCount(NullCheck),
    Orphans(OrphanCheck),
    Custom(CustomCheck),
    Schema(SchemaCheck),
    Rows(RowsCheck),
    Sizes(SizesCheck),
}

impl CheckKind {
    /// The kind of result this check gives, as reports name it.
    pub fn label(&self) -> crate::model::ResultKind {
        use crate::model::ResultKind;
        match self {
            CheckKind::Metrics(_) => ResultKind::Metrics,
            CheckKind::NullCount(_) => ResultKind::NullCount,
            CheckKind::Orphans(_) => ResultKind::Orphans,
            CheckKind::Custom(_) => ResultKind::CustomSql,
            CheckKind::Schema(_) => ResultKind::Schema,
            CheckKind::Rows(_) => ResultKind::Rows,
            CheckKind::Sizes(_) => ResultKind::Sizes,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    /// 1-based line of the `[[check]]` in the file.
    pub line: usize,
    /// Canonical, versioned hash of the definition (`v2:...`, see `fingerprint`).
    pub fingerprint: String,
    /// The hash migval 0.1 gave the same definition, when it could be written then: a
    /// baseline of that version still matches.
    pub legacy_fingerprint: Option<String>,
    /// The check reads what the migration creates (`new = true`, or an object declared
    /// `add ...` in `[schema] expect`): nothing is captured at baseline, the post-state is
    /// judged by the intent alone.
    pub after_only: bool,
    pub kind: CheckKind,
}

impl Check {
    /// Whether a baseline's fingerprint for this check is its definition (today's or 0.1's).
    pub fn same_definition(&self, baseline_fingerprint: &str) -> bool {
        baseline_fingerprint == self.fingerprint
            || self.legacy_fingerprint.as_deref() == Some(baseline_fingerprint)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub path: String,
    pub text: String,
    pub sha256: String,
    pub settings: Settings,
    pub renames: Renames,
    pub checks: Vec<Check>,
    /// The catalog-wide schema diff (`[schema]`).
    pub schema: SchemaDiff,
}

impl Spec {
    /// Read and validate a spec file.
    pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
        let text = read_file(path, "spec")?;
        Spec::parse(&path.display().to_string(), &text)
    }

    /// Validate spec text; `file` is only used in messages.
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecErrors> {
        let lines = LineIndex::new(text);
        let raw: RawSpec = toml::from_str(text)
            .map_err(|e| SpecErrors(vec![locate::toml_error(file, text, &lines, &e)]))?;
        let mut v = Validator::new(file, locate::KeyLines::new(text, &lines));
        let settings = v.settings(raw.settings);
        let renames = v.renames(&raw.rename, lines.line_of_key(text, "[rename]"));
        let schema = match raw.schema {
            Some(sp) => {
                let line = lines.line(sp.span().start);
                v.schema_diff(&lines, line, sp.into_inner())
            }
            None => SchemaDiff::default(),
        };
        let mut checks = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, spanned) in raw.checks.into_iter().enumerate() {
            let line = lines.line(spanned.span().start);
            let rc = spanned.into_inner();
            let name = match rc.name.as_deref().map(str::trim) {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => {
                    v.err(
                        line,
                        "",
                        "name",
                        "every check needs a `name` a DBA can read in the report",
                    );
                    format!("check #{}", i + 1)
                }
            };
            if !names.insert(name.clone()) {
                v.err(
                    line,
                    &name,
                    "name",
                    "two checks have this name; names must be unique",
                );
            }
            let at = check::At {
                line,
                name: &name,
                schema: &schema,
            };
            if let Some((kind, after_only)) = check::validate(&mut v, &at, rc) {
                checks.push(Check {
                    fingerprint: fingerprint::of(&name, &kind, after_only),
                    legacy_fingerprint: fingerprint::legacy(&name, &kind, after_only),
                    name,
                    line,
                    after_only,
                    kind,
                });
            }
        }
        check::sizes::default_tables(&mut v, &mut checks, &schema);
        if checks.is_empty() && v.errors.is_empty() {
            v.err(1, "", "check", "the spec declares no [[check]]");
        }
        if !v.errors.is_empty() {
            return Err(SpecErrors(v.errors));
        }
        Ok(Spec {
            path: file.to_string(),
            text: text.to_string(),
            sha256: sha256_hex(text.as_bytes()),
            settings,
            renames,
            checks,
            schema,
        })
    }
}

/// Read a TOML file (`what`: "spec", "backfill", ...), a failure as a [`SpecErrors`].
/// At most [`crate::input::MAX_SPEC_BYTES`]; a device is refused, a FIFO read with that bound.
pub fn read_file(path: &Path, what: &str) -> Result<String, SpecErrors> {
    crate::input::read_text_bounded(
        path,
        crate::input::MAX_SPEC_BYTES,
        "split the checks into several spec files",
    )
    .map_err(|e| {
        SpecErrors(vec![SpecError {
            file: path.display().to_string(),
            line: 0,
            place: String::new(),
            message: format!("cannot read the {what} file: {e}"),
        }])
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::integrity::hex(&Sha256::digest(bytes))
}

/// Byte offset -> 1-based line, in O(log n) per lookup (a spec may have 100,000 checks).
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).max(1)
    }

    fn line_of_key(&self, text: &str, needle: &str) -> usize {
        text.find(needle).map(|o| self.line(o)).unwrap_or(1)
    }
}

/// Parse "60s", "500ms", "2min", "1h" or a bare number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write e.g. \"500ms\", \"5s\", \"2min\")"))?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "min" | "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (use ms, s, min, h)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("duration `{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec, SpecErrors> {
        Spec::parse("checks.toml", text)
    }

    #[test]
    fn metrics_check_with_rename_and_tolerance() {
        let spec = parse(
            r#"
[rename]
"client_products.fixed_cost" = "client_products.fixed_fee_facilitated"

[[check]]
name = "revenue per company"
table = "client_products"
where = "status = 'active'"
group_by = ["company_id"]
metrics = ["count(*)", "sum(fixed_cost)", { metric = "avg(fixed_cost)", expect = "may_change" }]
tolerance = { abs = "0.01", scope = "group" }
"#,
        )
        .unwrap();
        assert_eq!(
            spec.renames.column("client_products", "fixed_cost"),
            Some("fixed_fee_facilitated")
        );
        let CheckKind::Metrics(m) = &spec.checks[0].kind else {
            panic!()
        };
        assert_eq!(m.metrics[1].label, "sum(fixed_cost)");
        assert_eq!(
            m.metrics[1].rule.tolerance,
            Tolerance::Abs("0.01".parse().unwrap())
        );
        assert_eq!(m.metrics[2].rule.expect, Expect::MayChange);
        assert_eq!(spec.checks[0].line, 5);
    }

    #[test]
    fn a_validation_error_names_the_line_of_its_key() {
        let err = parse(
            r#"[settings]
worst_groups = 5
parallel = 99

[[check]]
name = "revenue"
table = "t"
metrics = ["sum(x)"]
# a comment that mentions tolerance = "exact"
tolerance = "abc"

[[check]]
name = "moves"
table = "t"
metrics = ["count(*)"]

[check.expect]
changes_by = "oops"
"#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "checks.toml:3: key `settings.parallel`",
            "checks.toml:10: check `revenue`, key `tolerance`",
            "checks.toml:18: check `moves`, key `expect.changes_by`",
        ] {
            assert!(err.contains(want), "wants `{want}` in:\n{err}");
        }
    }

    #[test]
    fn errors_name_file_line_check_and_key() {
        let err = parse(
            r#"
[[check]]
name = "ok"
table = "t"

[[check]]
name = "bad metric"
table = "t"
metrics = ["median(x)"]
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "checks.toml:9: check `bad metric`, key `metrics`: unknown aggregate `median`"
            ),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line() {
        let err =
            parse("[[check]]\nname = \"x\"\ntable = \"t\"\ntolerence = \"exact\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("checks.toml:4") && text.contains("tolerence"),
            "{text}"
        );
    }

    #[test]
    fn relative_tolerance_in_percent() {
        let spec = parse("[[check]]\nname = \"x\"\ntable = \"t\"\nmetrics=[\"sum(a)\"]\ntolerance = { rel = \"0.1%\" }\n").unwrap();
        let CheckKind::Metrics(m) = &spec.checks[0].kind else {
            panic!()
        };
        assert_eq!(
            m.metrics[0].rule.tolerance,
            Tolerance::Rel("0.001".parse().unwrap())
        );
    }

    #[test]
    fn avg_cannot_be_totalled() {
        let err = parse("[[check]]\nname = \"x\"\ntable = \"t\"\ngroup_by=[\"g\"]\nmetrics=[\"avg(a)\"]\ntolerance = { abs = \"1\", scope = \"both\" }\n").unwrap_err();
        assert!(err.to_string().contains("cannot be totalled"), "{err}");
    }

    #[test]
    fn a_filtered_aggregate_is_not_parsed_as_one_call() {
        assert!(parse_metric("count(*) FILTER (WHERE x IS NULL)").is_err());
        assert!(parse_metric("sum(CASE WHEN a = ')' THEN 1 ELSE 0 END)").is_ok());
    }

    #[test]
    fn fingerprints_are_canonical_and_0_1_fingerprints_are_kept() {
        let one =
            parse("[[check]]\nname = \"x\"\ntable = \"t\"\nmetrics = [\"sum(a)\"]\n").unwrap();
        // The same definition written with its defaults spelled out.
        let two = parse(
            "[[check]]\nname = \"x\"\ntable = \"t\"\nmetrics = [{ metric = \"sum(a)\", expect = \"unchanged\", tolerance = \"exact\" }]\nnew = false\n",
        )
        .unwrap();
        assert_eq!(one.checks[0].fingerprint, two.checks[0].fingerprint);
        assert!(one.checks[0].fingerprint.starts_with("v2:"));
        // What migval 0.1 wrote for it (read from a baseline that version made).
        assert_eq!(
            one.checks[0].legacy_fingerprint.as_deref(),
            Some("37afc6aca1d08b00302ca1da50fdde3ba6424acf574fed8dc99a9d790182e6e0")
        );
        let after = parse("[[check]]\nname = \"x\"\ntable = \"t\"\nmetrics = [{ metric = \"sum(a)\", after = \"sum(b) / 100.0\" }]\n").unwrap();
        assert_ne!(after.checks[0].fingerprint, one.checks[0].fingerprint);
        assert_eq!(
            after.checks[0].legacy_fingerprint, None,
            "0.1 could not write it"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("5s"), Ok(5000));
        assert_eq!(parse_duration_ms("2min"), Ok(120_000));
        assert!(parse_duration_ms("5 parsecs").is_err());
    }
}

/// Issue 11, defect 10: validation was quadratic (32,000 checks took 17 s). No timing is
/// asserted (machines differ); the size makes a quadratic step obvious, and every check and
/// its line must survive.
#[cfg(test)]
mod large_specs {
    use super::Spec;

    fn spec_of(n: usize, last: &str) -> String {
        let mut s = String::with_capacity(n * 100);
        for i in 0..n {
            s.push_str(&format!(
                "[[check]]\nname = \"check {i}\"\ntable = \"t{}\"\nwhere = \"x > {i}\"\nmetrics = [\"count(*)\", \"sum(a)\"]\n\n",
                i % 50
            ));
        }
        s.push_str(last);
        s
    }

    #[test]
    fn twenty_thousand_checks_parse_with_their_lines() {
        let n = 20_000;
        let spec = Spec::parse("big.toml", &spec_of(n, "")).expect("parses");
        assert_eq!(spec.checks.len(), n);
        for (i, c) in spec.checks.iter().enumerate() {
            assert_eq!(c.name, format!("check {i}"));
            assert_eq!(c.line, 6 * i + 1, "check {i}");
        }
        let mut fingerprints: Vec<_> = spec.checks.iter().map(|c| &c.fingerprint).collect();
        fingerprints.sort();
        fingerprints.dedup();
        assert_eq!(fingerprints.len(), n, "one fingerprint per check");

        // An error after 20,000 checks still names its key's line.
        let bad = "[[check]]\nname = \"last\"\ntable = \"t\"\ntolerance = { abs = \"x\" }\n";
        let e = Spec::parse("big.toml", &spec_of(n, bad))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("big.toml:{}: check `last`", 6 * n + 4)),
            "{e}"
        );
    }
}
