//! The checks file: parsed once (`raw`), validated once into [`Spec`]. Commands only ever see
//! the validated type. Every error names the file, the line, the check and the key.

pub mod expect_change;
pub mod raw;

use std::fmt;
use std::path::Path;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::sql::ident::{self, Name};
pub use expect_change::{ExpectedChange, SchemaDiff, Verb};
use raw::{
    RawCheck, RawExpect, RawMetric, RawNumber, RawSchemaDiff, RawSchemaFact, RawSpec, RawTolerance,
};

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

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// As written (normalised), e.g. `sum(fixed_cost)`: the name of the value in reports.
    pub label: String,
    pub func: Func,
    pub arg: MetricArg,
    pub rule: Rule,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricsCheck {
    pub table: Name,
    pub filter: Option<String>,
    pub group_by: Vec<String>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NullCheck {
    pub table: Name,
    pub column: String,
    pub filter: Option<String>,
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
    pub sql: String,
    pub sql_after: Option<String>,
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
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct FactExpect {
    pub exists: Option<bool>,
    pub data_type: Option<String>,
    pub nullable: Option<bool>,
    pub validated: Option<bool>,
    pub valid: Option<bool>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchemaCheck {
    pub object: FactObject,
    pub expect: FactExpect,
    pub may_change: bool,
    /// Ignore the declarations: every attribute must equal the baseline (used to check that a
    /// rollback restores the state exactly).
    pub compare_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Metrics(MetricsCheck),
    NullCount(NullCheck),
    Orphans(OrphanCheck),
    Custom(CustomCheck),
    Schema(SchemaCheck),
}

impl CheckKind {
    pub fn label(&self) -> &'static str {
        match self {
            CheckKind::Metrics(_) => "metrics",
            CheckKind::NullCount(_) => "null count",
            CheckKind::Orphans(_) => "orphans",
            CheckKind::Custom(_) => "custom sql",
            CheckKind::Schema(_) => "schema",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    /// 1-based line of the `[[check]]` in the file.
    pub line: usize,
    pub fingerprint: String,
    pub kind: CheckKind,
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
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or_default();
            SpecErrors(vec![SpecError {
                file: file.to_string(),
                line,
                place: String::new(),
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut v = Validator {
            file,
            errors: Vec::new(),
        };
        let settings = v.settings(raw.settings);
        let renames = v.renames(&raw.rename, line_of_key(text, "[rename]"));
        let schema = match raw.schema {
            Some(sp) => {
                let line = line_of(text, sp.span().start);
                v.schema_diff(text, line, sp.into_inner())
            }
            None => SchemaDiff::default(),
        };
        let mut checks = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, spanned) in raw.checks.into_iter().enumerate() {
            let line = line_of(text, spanned.span().start);
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
            if let Some(kind) = v.check(line, &name, rc) {
                let fingerprint = sha256_hex(format!("{name}\u{0}{kind:?}").as_bytes());
                checks.push(Check {
                    name,
                    line,
                    fingerprint,
                    kind,
                });
            }
        }
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
pub fn read_file(path: &Path, what: &str) -> Result<String, SpecErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        SpecErrors(vec![SpecError {
            file: path.display().to_string(),
            line: 0,
            place: String::new(),
            message: format!("cannot read the {what} file: {e}"),
        }])
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(1)
}

fn line_of_key(text: &str, needle: &str) -> usize {
    text.find(needle).map(|o| line_of(text, o)).unwrap_or(1)
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

struct Validator<'a> {
    file: &'a str,
    errors: Vec<SpecError>,
}

impl Validator<'_> {
    fn err(&mut self, line: usize, check: &str, key: &str, message: impl Into<String>) {
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

    fn settings(&mut self, raw: Option<raw::RawSettings>) -> Settings {
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

    fn schema_diff(&mut self, text: &str, line: usize, raw: RawSchemaDiff) -> SchemaDiff {
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
            let at = line_of(text, e.span().start);
            match ExpectedChange::parse(e.get_ref(), at) {
                Ok(x) => s.expect.push(x),
                Err(m) => self.err(at, "", "schema.expect", m),
            }
        }
        s
    }

    fn renames(
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

    fn number(&mut self, line: usize, check: &str, key: &str, n: &RawNumber) -> Option<Decimal> {
        let parsed = match n {
            RawNumber::Text(s) => Decimal::from_str_exact(s.trim()).map_err(|e| e.to_string()),
            RawNumber::Int(i) => Ok(Decimal::from(*i)),
            RawNumber::Float(f) => {
                Decimal::from_str_exact(&f.to_string()).map_err(|e| e.to_string())
            }
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    line,
                    check,
                    key,
                    format!("not an exact number ({e}); write it as a string, e.g. \"0.01\""),
                );
                None
            }
        }
    }

    fn rule(
        &mut self,
        line: usize,
        check: &str,
        tol: Option<&RawTolerance>,
        exp: Option<&RawExpect>,
        base: Rule,
    ) -> Rule {
        let mut rule = base;
        match tol {
            None => {}
            Some(RawTolerance::Word(w)) if w == "exact" => rule.tolerance = Tolerance::Exact,
            Some(RawTolerance::Word(w)) => self.err(
                line,
                check,
                "tolerance",
                format!("`{w}`: write \"exact\", {{ abs = \"0.01\" }} or {{ rel = \"0.1%\" }}"),
            ),
            Some(RawTolerance::Table(t)) => {
                match (&t.abs, &t.rel) {
                    (Some(_), Some(_)) => self.err(
                        line,
                        check,
                        "tolerance",
                        "give either `abs` or `rel`, not both",
                    ),
                    (Some(a), None) => {
                        if let Some(d) = self.number(line, check, "tolerance.abs", a) {
                            if d.is_sign_negative() {
                                self.err(line, check, "tolerance.abs", "must not be negative");
                            }
                            rule.tolerance = Tolerance::Abs(d);
                        }
                    }
                    (None, Some(r)) => {
                        let pct = matches!(r, RawNumber::Text(s) if s.trim().ends_with('%'));
                        let r = match r {
                            RawNumber::Text(s) => {
                                RawNumber::Text(s.trim().trim_end_matches('%').to_string())
                            }
                            other => other.clone(),
                        };
                        if let Some(d) = self.number(line, check, "tolerance.rel", &r) {
                            let frac = if pct { d / Decimal::ONE_HUNDRED } else { d };
                            if frac.is_sign_negative() {
                                self.err(line, check, "tolerance.rel", "must not be negative");
                            }
                            rule.tolerance = Tolerance::Rel(frac);
                        }
                    }
                    (None, None) => {}
                }
                match t.scope.as_deref() {
                    None => {}
                    Some("group") => rule.scope = Scope::Group,
                    Some("total") => rule.scope = Scope::Total,
                    Some("both") => rule.scope = Scope::Both,
                    Some(other) => self.err(
                        line,
                        check,
                        "tolerance.scope",
                        format!("`{other}`: use \"group\", \"total\" or \"both\""),
                    ),
                }
            }
        }
        match exp {
            None => {}
            Some(RawExpect::Word(w)) => match w.as_str() {
                "unchanged" => rule.expect = Expect::Unchanged,
                "zero" => rule.expect = Expect::Zero,
                "may_change" | "may change" => rule.expect = Expect::MayChange,
                other => self.err(
                    line,
                    check,
                    "expect",
                    format!(
                        "`{other}`: use \"unchanged\", \"zero\", \"may_change\", {{ equals = \"N\" }}, \
                         {{ changes_by = \"N\" }} or {{ between = [\"A\", \"B\"] }}"
                    ),
                ),
            },
            Some(RawExpect::Table(t)) => {
                let given = [t.equals.is_some(), t.changes_by.is_some(), t.between.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if given != 1 {
                    self.err(line, check, "expect", "give exactly one of equals, changes_by, between");
                } else if let Some(n) = &t.equals {
                    if let Some(d) = self.number(line, check, "expect.equals", n) {
                        rule.expect = Expect::Equals(d);
                    }
                } else if let Some(n) = &t.changes_by {
                    if let Some(d) = self.number(line, check, "expect.changes_by", n) {
                        rule.expect = Expect::ChangesBy(d);
                    }
                } else if let Some((a, b)) = &t.between {
                    let lo = self.number(line, check, "expect.between", a);
                    let hi = self.number(line, check, "expect.between", b);
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        if lo > hi {
                            self.err(line, check, "expect.between", format!("{lo} is above {hi}"));
                        }
                        rule.expect = Expect::Between(lo, hi);
                    }
                }
            }
        }
        rule
    }

    fn name(
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

    fn relation(&mut self, line: usize, check: &str, key: &str, text: &str) -> Option<Name> {
        let parts = self.name(line, check, key, text, 2)?;
        Some(Name::from_parts(&parts))
    }

    /// "table.column" or "schema.table.column".
    fn column_ref(
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
    fn column_list(
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

    fn check(&mut self, line: usize, name: &str, rc: RawCheck) -> Option<CheckKind> {
        let kinds = [
            rc.table.is_some(),
            rc.null_count.is_some(),
            rc.orphans.is_some(),
            rc.sql.is_some(),
            rc.schema.is_some(),
        ];
        let count = kinds.iter().filter(|b| **b).count();
        if count != 1 {
            self.err(
                line,
                name,
                "",
                if count == 0 {
                    "say what to check: one of `table` (with `metrics`), `null_count`, `orphans`, `sql` or `schema`"
                } else {
                    "a check has exactly one of `table`, `null_count`, `orphans`, `sql`, `schema`: split it in two"
                },
            );
            return None;
        }
        let not_here = |v: &mut Self, present: bool, key: &str, kind: &str| {
            if present {
                v.err(
                    line,
                    name,
                    key,
                    format!("`{key}` does not apply to a {kind} check"),
                );
            }
        };
        let mut base = Rule::default();
        match rc.scope.as_deref() {
            None => {}
            Some("group") => base.scope = Scope::Group,
            Some("total") => base.scope = Scope::Total,
            Some("both") => base.scope = Scope::Both,
            Some(other) => self.err(
                line,
                name,
                "scope",
                format!("`{other}`: use \"group\", \"total\" or \"both\""),
            ),
        }
        let rule = self.rule(line, name, rc.tolerance.as_ref(), rc.expect.as_ref(), base);

        if let Some(table) = &rc.table {
            not_here(self, rc.key.is_some(), "key", "table metrics");
            not_here(self, rc.sql_after.is_some(), "sql_after", "table metrics");
            let table = self.relation(line, name, "table", table)?;
            let mut group_by = Vec::new();
            for g in rc.group_by.unwrap_or_default() {
                if let Some(p) = self.name(line, name, "group_by", &g, 1) {
                    group_by.push(p[0].clone());
                }
            }
            let raw_metrics = rc
                .metrics
                .unwrap_or_else(|| vec![RawMetric::Plain("count(*)".into())]);
            if raw_metrics.is_empty() {
                self.err(
                    line,
                    name,
                    "metrics",
                    "list at least one metric, e.g. \"count(*)\"",
                );
            }
            let mut metrics = Vec::new();
            for m in raw_metrics {
                let (text, mrule) = match &m {
                    RawMetric::Plain(t) => (t.clone(), rule),
                    RawMetric::Detailed(d) => (
                        d.metric.clone(),
                        self.rule(line, name, d.tolerance.as_ref(), d.expect.as_ref(), rule),
                    ),
                };
                match parse_metric(&text) {
                    Ok((label, func, arg)) => {
                        if group_by.is_empty() && mrule.scope != Scope::Group {
                            self.err(
                                line,
                                name,
                                "tolerance.scope",
                                "scope applies to grouped checks only (add group_by)",
                            );
                        }
                        if mrule.scope.total() && !func.totals() {
                            self.err(
                                line,
                                name,
                                "tolerance.scope",
                                format!("`{label}` cannot be totalled across groups; use scope = \"group\" for it"),
                            );
                        }
                        if metrics.iter().any(|x: &Metric| x.label == label) {
                            self.err(line, name, "metrics", format!("`{label}` is listed twice"));
                        }
                        metrics.push(Metric {
                            label,
                            func,
                            arg,
                            rule: mrule,
                        });
                    }
                    Err(e) => self.err(line, name, "metrics", e),
                }
            }
            return Some(CheckKind::Metrics(MetricsCheck {
                table,
                filter: rc.filter.filter(|f| !f.trim().is_empty()),
                group_by,
                metrics,
            }));
        }
        not_here(self, rc.group_by.is_some(), "group_by", "non-table");
        not_here(self, rc.metrics.is_some(), "metrics", "non-table");
        if let Some(col) = &rc.null_count {
            let (table, column) = self.column_ref(line, name, "null_count", col)?;
            if rule.scope != Scope::Group {
                self.err(
                    line,
                    name,
                    "tolerance.scope",
                    "scope applies to grouped checks only",
                );
            }
            return Some(CheckKind::NullCount(NullCheck {
                table,
                column,
                filter: rc.filter.filter(|f| !f.trim().is_empty()),
                rule,
            }));
        }
        not_here(self, rc.filter.is_some(), "where", "this kind of");
        if let Some(o) = &rc.orphans {
            let (child, child_columns) = self.column_list(line, name, "orphans.child", &o.child)?;
            let (parent, parent_columns) =
                self.column_list(line, name, "orphans.parent", &o.parent)?;
            if child_columns.len() != parent_columns.len() {
                self.err(
                    line,
                    name,
                    "orphans",
                    "child and parent need the same number of columns",
                );
            }
            return Some(CheckKind::Orphans(OrphanCheck {
                child,
                child_columns,
                parent,
                parent_columns,
                rule,
            }));
        }
        if let Some(sql) = &rc.sql {
            let key: Vec<String> = rc.key.clone().unwrap_or_default();
            if key.is_empty() {
                self.err(
                    line,
                    name,
                    "key",
                    "declare the key columns of the query (e.g. key = [\"company_id\"]); use key = [] is not allowed, add a constant column if there is no key",
                );
            }
            if sql.trim().is_empty() {
                self.err(line, name, "sql", "the query is empty");
            }
            if sql.trim().trim_end_matches(';').contains(';') {
                self.err(
                    line,
                    name,
                    "sql",
                    "one read-only query only (found `;` inside)",
                );
            }
            return Some(CheckKind::Custom(CustomCheck {
                sql: sql.trim().trim_end_matches(';').to_string(),
                sql_after: rc
                    .sql_after
                    .as_ref()
                    .map(|s| s.trim().trim_end_matches(';').to_string()),
                key,
                rule,
            }));
        }
        let fact = rc.schema?;
        not_here(self, rc.tolerance.is_some(), "tolerance", "schema");
        let may_change = match rule.expect {
            Expect::MayChange => true,
            Expect::Unchanged => false,
            _ => {
                self.err(line, name, "expect", "schema checks take expect = \"unchanged\" or \"may_change\"; declare facts with exists/type/nullable/...");
                false
            }
        };
        self.schema_fact(line, name, fact, may_change)
    }

    fn schema_fact(
        &mut self,
        line: usize,
        name: &str,
        f: RawSchemaFact,
        may_change: bool,
    ) -> Option<CheckKind> {
        let objects = [
            f.table.is_some(),
            f.view.is_some(),
            f.column.is_some(),
            f.constraint.is_some(),
            f.index.is_some(),
            f.rls.is_some(),
            f.policy.is_some(),
            f.function.is_some(),
            f.views_queryable.is_some(),
        ];
        if objects.iter().filter(|b| **b).count() != 1 {
            self.err(
                line,
                name,
                "schema",
                "name exactly one object: table, view, column, constraint, index, rls, policy, function or views_queryable",
            );
            return None;
        }
        let expect = FactExpect {
            exists: f.exists,
            data_type: f.data_type.clone(),
            nullable: f.nullable,
            validated: f.validated,
            valid: f.valid,
            enabled: f.enabled,
        };
        let allowed: &[&str];
        let object = if let Some(t) = &f.table {
            allowed = &["exists"];
            FactObject::Table(self.relation(line, name, "schema.table", t)?)
        } else if let Some(v) = &f.view {
            allowed = &["exists"];
            FactObject::View(self.relation(line, name, "schema.view", v)?)
        } else if let Some(c) = &f.column {
            allowed = &["exists", "type", "nullable"];
            let (t, col) = self.column_ref(line, name, "schema.column", c)?;
            FactObject::Column(t, col)
        } else if let Some(c) = &f.constraint {
            allowed = &["exists", "validated"];
            let (t, con) = self.column_ref(line, name, "schema.constraint", c)?;
            FactObject::Constraint(t, con)
        } else if let Some(i) = &f.index {
            allowed = &["exists", "valid"];
            FactObject::Index(self.relation(line, name, "schema.index", i)?)
        } else if let Some(t) = &f.rls {
            allowed = &["enabled"];
            FactObject::Rls(self.relation(line, name, "schema.rls", t)?)
        } else if let Some(p) = &f.policy {
            allowed = &["exists"];
            let (t, pol) = self.column_ref(line, name, "schema.policy", p)?;
            FactObject::Policy(t, pol)
        } else if let Some(func) = &f.function {
            allowed = &["exists"];
            FactObject::Function(self.relation(line, name, "schema.function", func)?)
        } else {
            allowed = &[];
            let mut views = Vec::new();
            for v in f.views_queryable.unwrap_or_default() {
                views.push(self.relation(line, name, "schema.views_queryable", &v)?);
            }
            if views.is_empty() {
                self.err(
                    line,
                    name,
                    "schema.views_queryable",
                    "list at least one view",
                );
            }
            FactObject::ViewsQueryable(views)
        };
        let given = [
            ("exists", expect.exists.is_some()),
            ("type", expect.data_type.is_some()),
            ("nullable", expect.nullable.is_some()),
            ("validated", expect.validated.is_some()),
            ("valid", expect.valid.is_some()),
            ("enabled", expect.enabled.is_some()),
        ];
        for (key, present) in given {
            if present && !allowed.contains(&key) {
                self.err(
                    line,
                    name,
                    &format!("schema.{key}"),
                    "does not apply to this kind of object",
                );
            }
        }
        Some(CheckKind::Schema(SchemaCheck {
            object,
            expect,
            may_change,
            compare_only: false,
        }))
    }
}

/// Parse `count(*)`, `sum(col)`, `count(distinct col)`, `avg(expr)` into (label, func, arg).
pub fn parse_metric(text: &str) -> Result<(String, Func, MetricArg), String> {
    let t = text.trim();
    let open = t.find('(').ok_or_else(|| {
        format!("`{t}` is not an aggregate; write e.g. \"sum(amount)\" or \"count(*)\"")
    })?;
    let inner = t[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| format!("`{t}`: missing closing `)`"))?
        .trim();
    let func_name = t[..open].trim().to_ascii_lowercase();
    if inner.is_empty() {
        return Err(format!("`{t}`: the aggregate needs an argument"));
    }
    let (func, arg_text) = match func_name.as_str() {
        "count" if inner == "*" => (Func::CountStar, "*"),
        "count" => match strip_keyword(inner, "distinct") {
            Some(rest) => (Func::CountDistinct, rest),
            None => (Func::Count, inner),
        },
        "sum" => (Func::Sum, inner),
        "min" => (Func::Min, inner),
        "max" => (Func::Max, inner),
        "avg" => (Func::Avg, inner),
        other => {
            return Err(format!(
                "unknown aggregate `{other}` in `{t}`; use count, sum, min, max or avg (or a custom `sql` check)"
            ));
        }
    };
    if arg_text == "*" && func != Func::CountStar {
        return Err(format!("`{t}`: only count takes `*`"));
    }
    let arg = if func == Func::CountStar {
        MetricArg::Star
    } else {
        match ident::parse_name(arg_text) {
            Ok(p) if p.len() == 1 => MetricArg::Column(p[0].clone()),
            _ => MetricArg::Expr(arg_text.to_string()),
        }
    };
    let label = match func {
        Func::CountStar => "count(*)".to_string(),
        Func::CountDistinct => format!("count(distinct {arg_text})"),
        _ => format!("{func_name}({arg_text})"),
    };
    Ok((label, func, arg))
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    let rest = &s[kw.len()..];
    (head.eq_ignore_ascii_case(kw) && rest.starts_with(char::is_whitespace)).then(|| rest.trim())
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
                "checks.toml:6: check `bad metric`, key `metrics`: unknown aggregate `median`"
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
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("5s"), Ok(5000));
        assert_eq!(parse_duration_ms("2min"), Ok(120_000));
        assert!(parse_duration_ms("5 parsecs").is_err());
    }
}
