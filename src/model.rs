//! Plain, serializable data shared by the engine and the renderers: captured values,
//! snapshots, per-check results and the verdict. Nothing here talks to a database or prints.

use std::cmp::Ordering;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod backfill;
pub use backfill::BackfillOutcome;

/// One captured cell. NULL is its own value, never zero.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// NUMERIC that rust_decimal holds exactly (at most 28 fraction digits, 96-bit mantissa).
    Dec(Decimal),
    /// NUMERIC that rust_decimal cannot hold exactly (wider values, NaN, ±Infinity), kept as
    /// PostgreSQL's exact text. Compared exactly as text; no arithmetic.
    BigNum(Box<str>),
    /// float4/float8; PostgreSQL's shortest exact text is kept for the file.
    Float(f64),
    /// Everything else, as PostgreSQL's text output in a UTC/ISO session.
    Text(Box<str>),
}

/// How the cells of a column are typed in the snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Bool,
    Int,
    Decimal,
    Float,
    Text,
}

impl Value {
    /// Exact numeric view of the value, if it has one that rust_decimal can hold.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Int(i) => Some(Decimal::from(*i)),
            Value::Dec(d) => Some(*d),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Dec(_) | Value::BigNum(_) | Value::Float(_) => 2,
            Value::Text(_) => 3,
        }
    }

    /// Total order used to sort and merge group keys. It is our own (not the database
    /// collation), so baseline and post-state always sort the same way. Integers and decimals
    /// compare by value, so a key column changed from int to numeric still matches.
    pub fn key_cmp(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Text(a), Text(b)) | (BigNum(a), BigNum(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (a, b) if a.rank() == 2 && b.rank() == 2 => match (a.as_decimal(), b.as_decimal()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => a.to_string().cmp(&b.to_string()),
            },
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    /// Equality for comparison purposes: numerics by value (1.10 = 1.1), NULL = NULL.
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::BigNum(a), Value::BigNum(b)) => canonical_numeric(a) == canonical_numeric(b),
            (Value::Float(a), Value::Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            _ => self.key_cmp(other) == Ordering::Equal,
        }
    }
}

/// Numeric text without insignificant trailing zeros ("12.500" -> "12.5", "-0.0" -> "0").
pub fn canonical_numeric(s: &str) -> String {
    let mut t = s.trim().to_string();
    if t.contains('.') && !t.contains(['e', 'E']) {
        while t.ends_with('0') {
            t.pop();
        }
        if t.ends_with('.') {
            t.pop();
        }
    }
    if t == "-0" || t.is_empty() {
        t = "0".into();
    }
    t
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Dec(d) => write!(f, "{d}"),
            Value::BigNum(s) | Value::Text(s) => f.write_str(s),
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Serialized compactly: JSON null/bool/number for NULL/bool/int, strings for everything else.
/// The column's [`Kind`] tells the reader how to parse the strings back.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Dec(d) => s.serialize_str(decimal_text_into(d, &mut [0u8; DECIMAL_TEXT_MAX])),
            Value::BigNum(t) | Value::Text(t) => s.serialize_str(t),
            Value::Float(x) => s.collect_str(&FloatText(*x)),
        }
    }
}

/// `d` as `Display` prints it (all `scale` fraction digits kept), several times faster: a
/// 10M-row baseline writes tens of millions of them.
pub fn decimal_text(d: &Decimal) -> String {
    decimal_text_into(d, &mut [0u8; DECIMAL_TEXT_MAX]).to_string()
}

/// Longest [`decimal_text`]: a sign, "0.", 27 zeros and a digit, or 29 digits and a point.
const DECIMAL_TEXT_MAX: usize = 40;

/// [`decimal_text`] written into `buf`, with no allocation.
fn decimal_text_into<'b>(d: &Decimal, buf: &'b mut [u8; DECIMAL_TEXT_MAX]) -> &'b str {
    let m = d.mantissa();
    let scale = d.scale() as usize;
    if m == 0 {
        // Keep the library's own spelling of zero (scale, sign): at most "-0." and 28 zeros.
        use std::io::Write as _;
        let mut rest = &mut buf[..];
        let _ = write!(rest, "{d}");
        let len = DECIMAL_TEXT_MAX - rest.len();
        return std::str::from_utf8(&buf[..len]).unwrap_or("0");
    }
    let mut digits = [0u8; 40];
    let mut at = digits.len();
    let mut u = m.unsigned_abs();
    while u > 0 {
        at -= 1;
        digits[at] = b'0' + (u % 10) as u8;
        u /= 10;
    }
    let digits = &digits[at..];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if m < 0 {
        push(b"-");
    }
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        push(int);
        if scale > 0 {
            push(b".");
            push(frac);
        }
    } else {
        push(b"0.");
        for _ in digits.len()..scale {
            push(b"0");
        }
        push(digits);
    }
    // Only ASCII digits, '-', '0' and '.' were written.
    std::str::from_utf8(&buf[..len]).unwrap_or("0")
}

struct FloatText(f64);
impl fmt::Display for FloatText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_nan() {
            f.write_str("NaN")
        } else if self.0.is_infinite() {
            f.write_str(if self.0 > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, a boolean, an integer or a string")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
                Ok(Value::Int(i))
            }
            fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
                i64::try_from(u)
                    .map(Value::Int)
                    .map_err(|_| E::custom(format!("integer {u} out of range")))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::Text(s.into()))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(Value::Text(s.into_boxed_str()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parse PostgreSQL numeric text exactly: a [`Decimal`] when it fits without rounding,
/// otherwise the text itself.
/// A size in bytes as PostgreSQL's `pg_size_pretty` prints it: "8192 bytes", "10 kB",
/// "1024 kB", "37 MB" (binary units, each kept until it reaches 20,480 of itself, half rounded
/// away from zero), so that a report reads like the DBA's own monitoring query.
pub fn pretty_bytes(bytes: i64) -> String {
    // (unit, size limit in this unit, half-rounded, bits of the unit)
    const UNITS: [(&str, u64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let mut size = bytes;
    for (i, &(unit, limit, round, bits)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1);
        if next.is_none() || size.unsigned_abs() < limit {
            if round {
                size = (size + if size < 0 { -1 } else { 1 }) / 2;
            }
            return format!("{size} {unit}");
        }
        if let Some(&(_, _, next_round, next_bits)) = next {
            // One bit more is kept for a unit that is half rounded at the end.
            let shift = next_bits - bits - u32::from(next_round) + u32::from(round);
            size /= 1i64 << shift;
        }
    }
    format!("{size} bytes")
}

/// The growth from `before` to `after` bytes as a signed percentage of `before`, to one
/// decimal: "+100%", "-3.2%", "+0%"; "from 0" when there was nothing before.
pub fn growth_text(before: i64, after: i64) -> String {
    if before == 0 {
        return if after == 0 {
            "+0%".into()
        } else {
            "from 0".into()
        };
    }
    let diff = Decimal::from(i128::from(after) - i128::from(before));
    match diff
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|d| d.checked_div(Decimal::from(before)))
    {
        Some(pct) => {
            let pct = pct.round_dp(1).normalize();
            if pct.is_sign_negative() {
                format!("{pct}%")
            } else {
                format!("+{pct}%")
            }
        }
        None => "?".into(),
    }
}

pub fn numeric_from_text(s: &str) -> Value {
    match Decimal::from_str_exact(s) {
        Ok(d) => Value::Dec(d),
        Err(_) => Value::BigNum(s.into()),
    }
}

/// A column of captured data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

/// The captured result of one check: `key_len` key columns followed by value columns, rows
/// sorted by key ([`Value::key_cmp`]). Stored flat: row `i` is `cells[i*w .. (i+1)*w]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<Column>,
    pub key_len: usize,
    #[serde(serialize_with = "ser_rows", deserialize_with = "de_rows")]
    pub cells: Vec<Value>,
}

impl Table {
    pub fn new(columns: Vec<Column>, key_len: usize) -> Table {
        Table {
            columns,
            key_len,
            cells: Vec::new(),
        }
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    pub fn len(&self) -> usize {
        self.cells.len().checked_div(self.width()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> &[Value] {
        let w = self.width();
        &self.cells[i * w..(i + 1) * w]
    }

    pub fn key(&self, i: usize) -> &[Value] {
        &self.row(i)[..self.key_len]
    }

    /// Sort rows by key (parallel for large results) so that two tables merge linearly.
    pub fn sort_by_key(&mut self) {
        use rayon::prelude::*;
        let w = self.width();
        let k = self.key_len;
        if w == 0 || k == 0 || self.len() < 2 {
            return;
        }
        let n = self.len();
        let cells = &self.cells;
        let key = |i: usize| &cells[i * w..i * w + k];
        let mut descents = (1..n).filter(|&i| cmp_keys(key(i - 1), key(i)) == Ordering::Greater);
        let Some(first) = descents.next() else {
            return;
        };
        // One sorted run started in the middle: PostgreSQL's synchronized sequential scans
        // start a scan where another one over the same table already is, so a table read in
        // key order comes back rotated while other probes scan it. Rotating back is one pass.
        if descents.next().is_none() && cmp_keys(key(n - 1), key(0)) != Ordering::Greater {
            self.cells.rotate_left(first * w);
            return;
        }
        // Sort row numbers, then move the rows into that order in place: a second copy of a
        // 10M-row table would double the memory.
        let ints: Option<Vec<(i64, usize)>> = if k == 1 {
            (0..n)
                .map(|i| match cells[i * w] {
                    Value::Int(x) => Some((x, i)),
                    _ => None,
                })
                .collect()
        } else {
            None
        };
        let order: Vec<usize> = match ints {
            // The common key, one integer column: sort plain (key, row) pairs, which is the
            // order of `key_cmp` (integers compare by value) without chasing every cell.
            Some(mut pairs) => {
                pairs.par_sort_unstable();
                pairs.into_iter().map(|(_, i)| i).collect()
            }
            None => {
                let mut order: Vec<usize> = (0..n).collect();
                order.par_sort_unstable_by(|&a, &b| cmp_keys(key(a), key(b)));
                order
            }
        };
        // Row `pos` takes old row `order[pos]`: follow each cycle, swapping rows.
        let mut placed = vec![false; n];
        for start in 0..n {
            if placed[start] {
                continue;
            }
            let mut cur = start;
            loop {
                placed[cur] = true;
                let src = order[cur];
                if src == start {
                    break;
                }
                for j in 0..w {
                    self.cells.swap(cur * w + j, src * w + j);
                }
                cur = src;
            }
        }
    }

    /// After reading a file: turn the strings of decimal/float columns back into numbers.
    pub fn restore_kinds(&mut self) -> Result<(), String> {
        let w = self.width();
        if w == 0 {
            return Ok(());
        }
        if !self.cells.len().is_multiple_of(w) {
            return Err("a row has the wrong number of cells".into());
        }
        for (i, cell) in self.cells.iter_mut().enumerate() {
            let kind = self.columns[i % w].kind;
            if let Value::Text(s) = cell {
                match kind {
                    Kind::Decimal => *cell = numeric_from_text(s),
                    Kind::Float => {
                        let x: f64 = s.parse().map_err(|_| format!("`{s}` is not a float"))?;
                        *cell = Value::Float(x);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

pub fn cmp_keys(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.key_cmp(y) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

fn ser_rows<S: Serializer>(cells: &[Value], s: S) -> Result<S::Ok, S::Error> {
    // `cells` alone does not know the width; the caller serializes rows through `Table`,
    // so this writes a flat list that `de_rows` reads back. Kept flat on purpose: a nested
    // list per row costs an allocation per row when reading 1M groups.
    let mut seq = s.serialize_seq(Some(cells.len()))?;
    for c in cells {
        seq.serialize_element(c)?;
    }
    seq.end()
}

fn de_rows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<Value>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of cells")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 24));
            while let Some(v) = seq.next_element::<Value>()? {
                out.push(v);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

/// A database error kept as PostgreSQL reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbFailure {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The server's CONTEXT: where in a function or trigger the error was raised (boxed:
    /// rare, and it keeps the error small enough to travel in a `Result`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_context: Option<Box<String>>,
    /// Where it happened, e.g. "check `revenue per company` on connection 2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

impl DbFailure {
    /// A failure of migval's own, with a message only: no SQLSTATE and no server fields.
    pub fn message_only(message: impl Into<String>) -> DbFailure {
        DbFailure {
            message: message.into(),
            sqlstate: None,
            detail: None,
            hint: None,
            server_context: None,
            context: None,
        }
    }
}

impl fmt::Display for DbFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.sqlstate {
            write!(f, " (SQLSTATE {code})")?;
        }
        if let Some(d) = &self.detail {
            write!(f, "\nDETAIL:  {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nHINT:  {h}")?;
        }
        if let Some(c) = &self.server_context {
            write!(f, "\nCONTEXT:  {c}")?;
        }
        Ok(())
    }
}

/// Where and when a snapshot was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// Connection target with the password masked.
    pub target: String,
    pub database: String,
    pub server_version: String,
    /// pg_export_snapshot() id shared by every connection of the capture.
    pub snapshot_id: String,
    /// WAL position of the snapshot (replay LSN on a standby).
    pub lsn: String,
    pub in_recovery: bool,
    /// Server clock at the snapshot, UTC.
    pub captured_at: String,
    pub connections: usize,
    pub duration_ms: u64,
}

/// The spec a snapshot was taken with, kept verbatim for audit and for `migval diff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecCopy {
    pub path: String,
    pub sha256: String,
    pub text: String,
}

/// What one check captured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Captured(Table),
    /// A large keyed capture (a `rows` check) kept out of memory, in key order.
    Streamed(Section),
    Failed(DbFailure),
    /// Nothing captured: the check's object is not there on this side.
    Absent(Absence),
}

/// A capture stored as a binary section of the snapshot file ([`crate::section`]): the
/// columns as in a [`Table`], rows in [`cmp_keys`] order, no two with the same key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    pub columns: Vec<Column>,
    pub key_len: usize,
    pub rows: u64,
    /// Length in bytes of the section in the file.
    pub bytes: u64,
    /// SHA-256 of the section's bytes (the file's checksum covers them too; this one lets a
    /// reader refuse a section that changed after the file was verified).
    pub sha256: String,
    /// Deflate-compressed (a section that keeps row values).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compressed: bool,
    /// The key ranges it was captured in, in key order (none: one range). Its bytes are the
    /// parts' bytes one after another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<SectionPart>,
    #[serde(skip)]
    pub source: crate::section::Source,
}

/// One key range of a [`Section`]: rows whose first key column is at least `from` (the first
/// part: no lower bound) and below the next part's `from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionPart {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The lower bound, as text (parsed by the key column's kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Two sections are the same capture when their content is (wherever the bytes are).
impl PartialEq for Section {
    fn eq(&self, other: &Section) -> bool {
        self.columns == other.columns
            && self.key_len == other.key_len
            && self.rows == other.rows
            && self.bytes == other.bytes
            && self.sha256 == other.sha256
            && self.compressed == other.compressed
            && self.parts == other.parts
    }
}

/// Why a check has nothing to capture on one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Absence {
    pub reason: AbsenceReason,
    /// What was looked up and not found (empty for [`AbsenceReason::New`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingObject>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbsenceReason {
    /// An after-only check on the pre-migration side: the migration creates what it reads.
    New,
    /// A relation or column it reads does not exist.
    Missing,
}

/// A relation or column that a check reads and the catalog does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingObject {
    /// Named as queried (after [rename]), with the schemas searched.
    Relation { name: String, searched: Vec<String> },
    /// `relation` is schema-qualified; `column` as queried.
    Column { relation: String, column: String },
}

impl fmt::Display for MissingObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingObject::Relation { name, searched } => write!(
                f,
                "table or view `{name}` does not exist (searched schemas: {})",
                searched.join(", ")
            ),
            MissingObject::Column { relation, column } => {
                write!(f, "column `{column}` does not exist in `{relation}`")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckCapture {
    pub name: String,
    /// Hash of the check's definition: tells which checks changed since the baseline.
    pub fingerprint: String,
    /// The SQL that produced it (after renames), so the file is auditable.
    pub sql: Vec<String>,
    pub outcome: Outcome,
}

/// A consistent capture of every check, as stored in a snapshot file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub tool: String,
    pub origin: Origin,
    pub spec: SpecCopy,
    /// Renames applied to this capture (old -> new), empty for a baseline.
    pub renames: Vec<(String, String)>,
    /// Columns of every relation the checks read (`schema.table` -> columns), used to explain
    /// a missing column after a migration.
    pub catalog: std::collections::BTreeMap<String, Vec<String>>,
    pub checks: Vec<CheckCapture>,
    /// The catalog of the schemas in scope, for the schema diff (absent when `[schema]`
    /// turns it off, and in snapshots of migval versions before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaCapture>,
}

/// One catalog object (`queries/schema_catalog.sql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObject {
    /// table, column, constraint, index, view, function, trigger, type, policy, grant, sequence.
    pub kind: String,
    /// Schema-qualified, unquoted: `public.accounts.status`, `public.f(integer)`,
    /// `public.accounts:app_user` (a grant).
    pub name: String,
    pub attrs: std::collections::BTreeMap<String, String>,
}

/// The catalog of the schemas in scope, sorted by kind then name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaCatalog {
    pub schemas: Vec<String>,
    pub objects: Vec<SchemaObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaCapture {
    Captured(SchemaCatalog),
    Failed(DbFailure),
}

impl Snapshot {
    /// Format of a snapshot without sections (readable by every migval version).
    pub const FORMAT: u32 = 1;
    /// Format of a snapshot with binary sections after its JSON.
    pub const FORMAT_SECTIONS: u32 = 2;

    pub fn check(&self, name: &str) -> Option<&CheckCapture> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    /// A difference that the spec allows (`expect = "may_change"`): reported, never fails.
    Warn,
    Fail,
    Error,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        })
    }
}

/// One compared value: a metric of an ungrouped check, a total, or a group's metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Group key rendered as text; empty for ungrouped values and totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    pub metric: String,
    pub scope: ValueScope,
    pub baseline: Option<Value>,
    pub after: Option<Value>,
    /// after - baseline when both are numbers.
    pub difference: Option<String>,
    /// Rule that was applied, e.g. "unchanged, |diff| <= 0.01".
    pub rule: String,
    pub ok: bool,
    /// Why it failed or could not be compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a [`Comparison`] compares, written in reports (and the JSON) as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueScope {
    /// A metric of an ungrouped check (or a part of a table's size).
    Value,
    /// A metric summed over every group.
    Total,
    /// A group present on both sides.
    Group,
    /// A row of a rows check whose fingerprint changed.
    Changed,
    /// A group, row or table on the post-state side only.
    Appeared,
    /// A group, row or table on the baseline side only.
    Disappeared,
    /// Schema diff: an object the migration added.
    Add,
    /// Schema diff: an object the migration dropped.
    Drop,
    /// Schema diff: an object whose attributes changed.
    Alter,
    /// Schema diff: an object renamed (through [rename] or the script).
    Rename,
    /// Schema diff: a change the spec expects and the migration did not make.
    Missing,
}

impl ValueScope {
    /// The name reports show (and the JSON holds).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueScope::Value => "value",
            ValueScope::Total => "total",
            ValueScope::Group => "group",
            ValueScope::Changed => "changed",
            ValueScope::Appeared => "appeared",
            ValueScope::Disappeared => "disappeared",
            ValueScope::Add => "add",
            ValueScope::Drop => "drop",
            ValueScope::Alter => "alter",
            ValueScope::Rename => "rename",
            ValueScope::Missing => "missing",
        }
    }
}

impl fmt::Display for ValueScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of check a [`CheckResult`] is, as reports show it ("null count", "schema diff";
/// the JSON holds the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResultKind {
    #[serde(rename = "metrics")]
    Metrics,
    #[serde(rename = "null count")]
    NullCount,
    #[serde(rename = "orphans")]
    Orphans,
    #[serde(rename = "custom sql")]
    CustomSql,
    /// Schema facts the spec states (`kind = "schema"`).
    #[serde(rename = "schema")]
    Schema,
    #[serde(rename = "rows")]
    Rows,
    #[serde(rename = "sizes")]
    Sizes,
    /// The catalog-wide schema diff (renderers lay it out apart).
    #[serde(rename = "schema diff")]
    SchemaDiff,
    /// A migration script that failed before anything could be verified.
    #[serde(rename = "migration")]
    Migration,
}

impl ResultKind {
    /// The words reports show (and the JSON holds).
    pub fn as_str(self) -> &'static str {
        match self {
            ResultKind::Metrics => "metrics",
            ResultKind::NullCount => "null count",
            ResultKind::Orphans => "orphans",
            ResultKind::CustomSql => "custom sql",
            ResultKind::Schema => "schema",
            ResultKind::Rows => "rows",
            ResultKind::Sizes => "sizes",
            ResultKind::SchemaDiff => "schema diff",
            ResultKind::Migration => "migration",
        }
    }
}

impl fmt::Display for ResultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts for grouped checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub baseline_groups: usize,
    pub after_groups: usize,
    pub changed: usize,
    pub appeared: usize,
    pub disappeared: usize,
    /// Groups whose difference breaks the rule.
    pub failing: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub kind: ResultKind,
    pub status: Status,
    /// An after-only check: no baseline value, the post-state judged by the intent alone
    /// (reports show the baseline as "(new)").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_only: bool,
    /// One line for people: what was found.
    pub summary: String,
    pub tolerance: String,
    pub expect: String,
    /// Ungrouped values and totals.
    pub values: Vec<Comparison>,
    /// Grouped checks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupStats>,
    /// The worst groups, by absolute difference (appeared/disappeared first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worst: Vec<Comparison>,
    /// Every differing key of a rows check, every differing group and metric of a grouped
    /// check (the report lists only `worst`); written by `--changes-out`, not part of the
    /// JSON report.
    #[serde(skip)]
    pub all_changes: Vec<Comparison>,
    pub baseline_sql: Vec<String>,
    pub after_sql: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DbFailure>,
}

impl CheckResult {
    /// A result with a status and a summary only (name, kind and SQL filled in by the caller:
    /// the kind is [`ResultKind::Metrics`] until then).
    pub fn bare(status: Status, summary: String) -> CheckResult {
        CheckResult {
            name: String::new(),
            kind: ResultKind::Metrics,
            status,
            after_only: false,
            summary,
            tolerance: String::new(),
            expect: String::new(),
            values: Vec::new(),
            groups: None,
            worst: Vec::new(),
            all_changes: Vec::new(),
            baseline_sql: Vec::new(),
            after_sql: Vec::new(),
            error: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub total: usize,
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    pub errored: usize,
}

impl Verdict {
    pub fn from_results(results: &[CheckResult]) -> Verdict {
        let mut v = Verdict {
            total: results.len(),
            ..Verdict::default()
        };
        for r in results {
            match r.status {
                Status::Pass => v.passed += 1,
                Status::Warn => v.warned += 1,
                Status::Fail => v.failed += 1,
                Status::Error => v.errored += 1,
            }
        }
        v
    }

    pub fn passed(&self) -> bool {
        self.failed == 0 && self.errored == 0
    }

    /// The exit-code contract: 0 pass (warnings included), 1 a check failed, 2 the tool could
    /// not do its job (a check errored).
    pub fn exit_code(&self) -> u8 {
        if self.errored > 0 {
            2
        } else if self.failed > 0 {
            1
        } else {
            0
        }
    }
}

/// Everything a renderer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// "verify", "diff", ...
    pub command: String,
    /// A banner line above the results, e.g. "rehearsal: nothing was committed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    pub spec_path: String,
    pub baseline: Origin,
    pub after: Origin,
    pub renames: Vec<(String, String)>,
    /// Checks whose definition changed since the baseline, and other spec drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spec_changes: Vec<String>,
    pub checks: Vec<CheckResult>,
    pub verdict: Verdict,
    /// What `migval migrate` ran, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSummary>,
    /// The pg_dump taken by `--backup` before anything was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// What `migval backfill` did before these checks ran, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillOutcome>,
}

/// A backup `--backup FILE` made with pg_dump before `migrate --commit` or `backfill --commit`
/// wrote anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    /// The dump file, as given.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// pg_dump's format (`custom`: restore with pg_restore).
    pub format: String,
    /// The database dumped.
    pub database: String,
    pub duration_ms: u64,
}

impl Backup {
    /// One line for people: `backup: pg_dump -Fc of database `app` -> pre.dump (1.2 MiB, 340 ms)`.
    pub fn describe(&self) -> String {
        format!(
            "pg_dump --format={} of database `{}` -> {} ({}, {} ms), taken before anything was written",
            self.format,
            self.database,
            self.file,
            human_bytes(self.bytes),
            self.duration_ms
        )
    }
}

/// 1536 -> "1.5 KiB" (binary units, as pg_size_pretty rounds: one decimal above bytes).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    // Tenths of the unit, in integers: no float rounding of a byte count.
    let mut unit = 0;
    let mut scale: u64 = 1024;
    while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
        unit += 1;
        scale *= 1024;
    }
    let tenths = (u128::from(bytes) * 10 + u128::from(scale) / 2) / u128::from(scale);
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// One statement of a migration script as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementRun {
    /// The file the statement comes from, when the migration has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Line of the script where the statement starts.
    pub line: usize,
    /// The statement on one line, abbreviated.
    pub sql: String,
    pub duration_ms: u64,
    /// Rows affected, as the server reported.
    pub rows: Option<u64>,
    /// More than 1 when lock timeouts were retried.
    pub attempts: u32,
    pub ok: bool,
}

impl StatementRun {
    /// Where the statement is: `02_data.sql:12` when the migration has several files, else
    /// the line alone.
    pub fn location(&self) -> String {
        match &self.file {
            Some(f) => format!("{f}:{}", self.line),
            None => self.line.to_string(),
        }
    }
}

/// A relation lock the migration held before it was committed or rolled back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockHeld {
    pub relation: String,
    /// e.g. "ACCESS EXCLUSIVE".
    pub mode: String,
    /// From the statement that took it to the end of the migration.
    pub held_ms: u64,
}

/// A session that blocked a migration statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocker {
    pub pid: i32,
    pub user: String,
    pub application_name: String,
    pub state: String,
    /// Age of the blocker's transaction.
    pub transaction_seconds: String,
    pub query: String,
}

/// What a guarded migration did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationSummary {
    /// The script file, or the external command.
    pub script: String,
    /// "rehearsal: nothing was committed", "committed: ...", ...
    pub mode: String,
    pub statements: Vec<StatementRun>,
    pub locks: Vec<LockHeld>,
    /// Renames read from the script's ALTER ... RENAME statements (old -> new).
    pub renames_inferred: Vec<(String, String)>,
    pub blockers: Vec<Blocker>,
    /// Output of an external command, kept for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_output: Option<String>,
}

impl MigrationSummary {
    /// Nothing run yet.
    pub fn new(script: &str, mode: &str) -> MigrationSummary {
        MigrationSummary {
            script: script.to_string(),
            mode: mode.to_string(),
            statements: Vec::new(),
            locks: Vec::new(),
            renames_inferred: Vec::new(),
            blockers: Vec::new(),
            command_output: None,
        }
    }
}

/// `text` with the integer part of a plain decimal number grouped by thousands
/// (`1,234,567.8900`, every digit kept); any other text (NaN, Infinity, words) unchanged. For
/// what people read (text and Markdown reports, the one-line summaries); JSON values keep the
/// plain digits.
#[must_use]
pub fn grouped_digits(text: &str) -> String {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()));
    if !plain || int.len() < 4 {
        return text.to_string();
    }
    let mut out = String::from(sign);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A count for reading: `1,234,567`.
#[must_use]
pub fn grouped_count(n: usize) -> String {
    grouped_digits(&n.to_string())
}

/// A value for reading: numbers grouped ([`grouped_digits`]), `(none)` when there is none.
#[must_use]
pub fn readable_value(v: Option<&Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v @ (Value::Int(_) | Value::Dec(_) | Value::BigNum(_))) => {
            grouped_digits(&v.to_string())
        }
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_kinds_are_written_as_reports_always_wrote_them() {
        // The JSON report and the text formats show the same words, the ones the strings of
        // earlier versions held: a JSON consumer sees no change.
        use ValueScope as S;
        let scopes = [
            (S::Value, "value"),
            (S::Total, "total"),
            (S::Group, "group"),
            (S::Changed, "changed"),
            (S::Appeared, "appeared"),
            (S::Disappeared, "disappeared"),
            (S::Add, "add"),
            (S::Drop, "drop"),
            (S::Alter, "alter"),
            (S::Rename, "rename"),
            (S::Missing, "missing"),
        ];
        for (scope, word) in scopes {
            assert_eq!(scope.to_string(), word);
            assert_eq!(
                serde_json::to_string(&scope).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(
                serde_json::from_str::<S>(&format!("\"{word}\"")).unwrap(),
                scope
            );
        }
        use ResultKind as K;
        let kinds = [
            (K::Metrics, "metrics"),
            (K::NullCount, "null count"),
            (K::Orphans, "orphans"),
            (K::CustomSql, "custom sql"),
            (K::Schema, "schema"),
            (K::Rows, "rows"),
            (K::Sizes, "sizes"),
            (K::SchemaDiff, "schema diff"),
            (K::Migration, "migration"),
        ];
        for (kind, word) in kinds {
            assert_eq!(kind.to_string(), word);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{word}\""));
            assert_eq!(
                serde_json::from_str::<K>(&format!("\"{word}\"")).unwrap(),
                kind
            );
        }
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn numeric_text_beyond_28_digits_is_kept_exact() {
        assert_eq!(
            numeric_from_text("12.34"),
            Value::Dec("12.34".parse().unwrap())
        );
        assert_eq!(
            numeric_from_text("0.00000000000000000000000000001"),
            Value::BigNum("0.00000000000000000000000000001".into())
        );
        assert_eq!(numeric_from_text("NaN"), Value::BigNum("NaN".into()));
    }

    #[test]
    fn null_is_not_zero_and_scale_is_ignored() {
        assert!(!Value::Null.same(&Value::Int(0)));
        assert!(Value::Dec("1.10".parse().unwrap()).same(&Value::Dec("1.1".parse().unwrap())));
        assert!(Value::Int(5).same(&Value::Dec("5.00".parse().unwrap())));
        assert!(Value::BigNum("1.500".into()).same(&Value::BigNum("1.5".into())));
    }

    #[test]
    fn table_round_trips_through_json_exactly() {
        let mut t = Table::new(
            vec![
                Column {
                    name: "k".into(),
                    kind: Kind::Text,
                },
                Column {
                    name: "sum".into(),
                    kind: Kind::Decimal,
                },
                Column {
                    name: "f".into(),
                    kind: Kind::Float,
                },
            ],
            1,
        );
        t.cells = vec![
            Value::Text("b".into()),
            Value::Dec("999999999999999.9999".parse().unwrap()),
            Value::Float(0.1),
            Value::Null,
            Value::BigNum("1e-40".into()),
            Value::Float(f64::NAN),
        ];
        t.sort_by_key();
        assert!(t.key(0)[0].is_null(), "NULL keys sort first");
        let json = serde_json::to_string(&t).unwrap();
        let mut back: Table = serde_json::from_str(&json).unwrap();
        back.restore_kinds().unwrap();
        assert_eq!(
            back.row(1)[1],
            Value::Dec("999999999999999.9999".parse().unwrap())
        );
        assert_eq!(back.row(1)[2], Value::Float(0.1));
        assert_eq!(back.row(0)[1], Value::BigNum("1e-40".into()));
        assert!(matches!(back.row(0)[2], Value::Float(x) if x.is_nan()));
    }

    #[test]
    fn decimal_text_is_display() {
        for s in [
            "1",
            "-1",
            "0.01",
            "-0.01",
            "1.50",
            "123456789.123456789",
            "0.0000000001",
            "-0.0000000000000000000000000001",
            "79228162514459353.9543950335",
            "79228162514459353954395033.5",
            "-79228162514459353954395033.5",
            "999999999999999.9999",
            "100",
            "1000000.0000",
            "0",
            "0.00",
            "-0.00",
        ] {
            let d: Decimal = s.parse().unwrap();
            assert_eq!(decimal_text(&d), d.to_string(), "{s}");
        }
        for (m, scale) in [(1i64, 28u32), (-12345, 3), (i64::MAX, 5), (i64::MIN + 1, 0)] {
            let d = Decimal::new(m, scale);
            assert_eq!(decimal_text(&d), d.to_string(), "{m} e-{scale}");
        }
        let max = Decimal::MAX;
        assert_eq!(decimal_text(&max), max.to_string());
        assert_eq!(decimal_text(&Decimal::MIN), Decimal::MIN.to_string());
    }

    fn int_table(keys: &[i64]) -> Table {
        let mut t = Table::new(
            vec![
                Column {
                    name: "k".into(),
                    kind: Kind::Int,
                },
                Column {
                    name: "v".into(),
                    kind: Kind::Text,
                },
            ],
            1,
        );
        for &k in keys {
            t.cells.push(Value::Int(k));
            t.cells.push(Value::Text(format!("row {k}").into()));
        }
        t
    }

    #[test]
    fn a_cell_takes_24_bytes() {
        // 8.5M rows of 5 columns are 42M cells: every byte here is 42 MB of client memory.
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn a_rotated_table_is_rotated_back_into_key_order() {
        // As a synchronized scan returns a table stored in key order: from the middle.
        let mut t = int_table(&[4, 5, 6, 1, 2, 3]);
        t.sort_by_key();
        let keys: Vec<i64> = (0..t.len())
            .map(|i| match t.key(i)[0] {
                Value::Int(x) => x,
                _ => panic!("int key"),
            })
            .collect();
        assert_eq!(keys, [1, 2, 3, 4, 5, 6]);
        for i in 0..t.len() {
            // Each row keeps its own value.
            assert_eq!(
                t.row(i)[1],
                Value::Text(format!("row {}", i + 1).into()),
                "row {i}"
            );
        }
        // Two descents: not a rotation, sorted the general way.
        let mut t = int_table(&[3, 1, 2, 0]);
        t.sort_by_key();
        assert_eq!(t.key(0)[0], Value::Int(0));
        assert_eq!(t.key(3)[0], Value::Int(3));
    }

    #[test]
    fn sorting_moves_whole_rows_into_key_order() {
        // A permutation with cycles of several lengths, negative and sparse keys.
        let keys = [7, -3, 1_000_000_000_000, 0, 5, 2, -10, 9, 1, 4];
        let mut t = int_table(&keys);
        t.sort_by_key();
        let mut sorted = keys.to_vec();
        sorted.sort();
        for (i, k) in sorted.iter().enumerate() {
            assert_eq!(
                t.row(i),
                &[Value::Int(*k), Value::Text(format!("row {k}").into())]
            );
        }
        // Composite keys (the general path) with NULLs and mixed int/decimal values.
        let mut t = Table::new(
            vec![
                Column {
                    name: "a".into(),
                    kind: Kind::Int,
                },
                Column {
                    name: "b".into(),
                    kind: Kind::Decimal,
                },
                Column {
                    name: "v".into(),
                    kind: Kind::Int,
                },
            ],
            2,
        );
        let rows = [
            (Value::Int(2), Value::Dec("1.5".parse().unwrap()), 1),
            (Value::Null, Value::Int(3), 2),
            (Value::Int(1), Value::Null, 3),
            (Value::Int(2), Value::Int(1), 4),
            (Value::Int(1), Value::Dec("0.5".parse().unwrap()), 5),
        ];
        for (a, b, v) in rows {
            t.cells.extend([a, b, Value::Int(v)]);
        }
        t.sort_by_key();
        let order: Vec<Value> = (0..t.len()).map(|i| t.row(i)[2].clone()).collect();
        assert_eq!(
            order,
            [2, 3, 5, 4, 1].map(Value::Int).to_vec(),
            "NULL first, then by value across int and decimal"
        );
    }
}
