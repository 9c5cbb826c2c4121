//! The statements a batch runs, generated once per run from quoted identifiers and the spec's
//! SQL fragments. Key values travel as text and are cast back to the key's own type on the
//! server (`CAST($n::text AS bigint)`), so any key type works and values are always bound.
//!
//! ```text
//!   ceiling     the largest key when the run starts: no batch goes above it (rows inserted
//!               later are counted as "new since the run began", not chased)
//!   bound       WITH b AS (SELECT key, pending FROM t WHERE (key) > (last) AND (key) <= (ceiling)
//!                          ORDER BY key LIMIT n)
//!               -> first key, last key, rows in range, rows pending      (keyset, never OFFSET)
//!   ambiguous   rows of the ambiguity query inside [first, last] that are still pending
//!   change      UPDATE t SET <set> WHERE (key) BETWEEN first AND last AND (pending)
//!                                    AND key NOT IN <ambiguous keys>
//!               or the user's UPDATE with $1 = first, $2 = last
//!   left        keys in [first, last] still pending after the change (ambiguous + no match)
//! ```
//! The type names in the casts come from `format_type()` on the server, not from the user.

use crate::sql::ident::{quote, quote_qualified};

use super::spec::{BackfillSpec, Change};

/// The table and key as the server resolved them.
#[derive(Debug, Clone)]
pub struct Target {
    pub schema: String,
    pub table: String,
    /// (column, type as format_type() prints it).
    pub key: Vec<(String, String)>,
}

impl Target {
    pub fn qualified(&self) -> String {
        quote_qualified(&self.schema, &self.table)
    }

    pub fn display(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    fn cols(&self, prefix: &str) -> String {
        self.key
            .iter()
            .map(|(c, _)| format!("{prefix}{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn tuple(&self, prefix: &str) -> String {
        if self.key.len() == 1 {
            self.cols(prefix)
        } else {
            format!("({})", self.cols(prefix))
        }
    }

    /// Placeholders `$start..` cast back to the key types.
    fn params(&self, start: usize) -> String {
        let p = self
            .key
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("CAST(${}::text AS {ty})", start + i))
            .collect::<Vec<_>>()
            .join(", ");
        if self.key.len() == 1 {
            p
        } else {
            format!("({p})")
        }
    }

    fn as_text(&self, prefix: &str) -> String {
        self.key
            .iter()
            .map(|(c, _)| format!("{prefix}{}::text", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(key) >= (first) AND (key) <= (last)`, bounds at `$start` and `$start + n`.
    fn between(&self, prefix: &str, start: usize) -> String {
        let n = self.key.len();
        format!(
            "{t} >= {lo} AND {t} <= {hi}",
            t = self.tuple(prefix),
            lo = self.params(start),
            hi = self.params(start + n)
        )
    }
}

/// Every generated statement of one run. The bound statements bind: limit int8, [last key
/// text...,] ceiling key text... (see `filter` in [`Statements::new`]).
#[derive(Debug, Clone)]
pub struct Statements {
    /// Binds: limit int8 [, last key text...]. Returns: first key..., last key..., in_range,
    /// pending (no row when the table has no key beyond `last`).
    pub bound_first: String,
    pub bound_next: String,
    /// The general (CTE) form of the two above, when they are the min()/max() form: used
    /// instead if the key type has no min()/max().
    pub bound_general: Option<(String, String)>,
    /// Binds: first key..., last key.... Returns: key text..., reason, candidates.
    pub ambiguous: Option<String>,
    /// Set mode binds: first..., last..., then one text[] per key column (the keys to skip).
    /// Update mode binds: $1 first, $2 last (typed as the statement says).
    pub change: String,
    pub set_mode: bool,
    /// Binds: first..., last.... Returns: key text... of rows still pending.
    pub left: String,
    /// Binds: first..., last.... Returns: key text... of every row in the range, in key order.
    pub keys_in_range: String,
    /// Binds: ceiling key.... Returns: total int8, pending int8 (rows at or below the ceiling).
    pub count: String,
    /// Returns: key text... of the largest key (no row on an empty table): the run's ceiling.
    pub ceiling: String,
    /// Binds: ceiling key.... Returns: int8 pending rows above the ceiling (inserted since
    /// the run began).
    pub new_since: String,
    /// `SELECT * FROM (<ambiguity>) LIMIT 0`, to check its columns before the first batch.
    pub ambiguity_probe: Option<String>,
}

impl Statements {
    pub fn new(spec: &BackfillSpec, t: &Target) -> Statements {
        let table = t.qualified();
        let n = t.key.len();
        // The newline ends a trailing `-- comment` of the fragment before the parenthesis.
        let pending = format!("coalesce(({}\n), false)", spec.pending);
        let order = t.cols("");
        let order_desc = t
            .key
            .iter()
            .map(|(c, _)| format!("{} DESC", quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        // Every batch stays at or below the run's ceiling, the largest key when it started
        // ($2.. for the first batch, after the last key's parameters for the others): rows an
        // application inserts above it meanwhile are not chased, so the run ends.
        let filter = |after: bool| {
            let ceiling = t.params(if after { 2 + n } else { 2 });
            if after {
                format!(
                    " WHERE {k} > {last} AND {k} <= {ceiling}",
                    k = t.tuple(""),
                    last = t.params(2)
                )
            } else {
                format!(" WHERE {} <= {ceiling}", t.tuple(""))
            }
        };
        let bound = |after: bool| {
            format!(
                "WITH b AS (SELECT {order}, {pending} AS migval_pending FROM {table}{filter} \
                 ORDER BY {order} LIMIT $1::int8) \
                 SELECT {first}, {last}, (SELECT count(*) FROM b) AS in_range, \
                 (SELECT count(*) FROM b WHERE migval_pending) AS pending \
                 FROM (SELECT * FROM b ORDER BY {order} LIMIT 1) f, \
                 (SELECT * FROM b ORDER BY {order_desc} LIMIT 1) l",
                filter = filter(after),
                first = t.as_text("f."),
                last = t.as_text("l."),
            )
        };
        // Single-column keys whose type has min()/max() (integers, text, timestamps, numeric):
        // one aggregate pass instead of materialising the batch and sorting it twice (about 3x
        // cheaper). Types without them (uuid) use the general form; `prepare` swaps it in.
        let bound_agg = |after: bool| {
            format!(
                "SELECT min({k})::text, max({k})::text, count(*) AS in_range, \
                 count(*) FILTER (WHERE migval_pending) AS pending \
                 FROM (SELECT {k}, {pending} AS migval_pending FROM {table}{filter} \
                 ORDER BY {k} LIMIT $1::int8) b HAVING count(*) > 0",
                k = order,
                filter = filter(after),
            )
        };
        let general = (bound(false), bound(true));
        let ((bound_first, bound_next), bound_general) = if n == 1 {
            ((bound_agg(false), bound_agg(true)), Some(general))
        } else {
            (general, None)
        };

        let ambiguous = spec.ambiguity.as_ref().map(|a| {
            let same = t
                .key
                .iter()
                .map(|(c, _)| format!("{table}.{q} = a.{q}", q = quote(c)))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "SELECT {keys}, coalesce(a.reason::text, '') AS reason, \
                 coalesce(a.candidates::int8, 0) AS candidates \
                 FROM ({a}\n) AS a \
                 WHERE {range} \
                 AND EXISTS (SELECT 1 FROM {table} WHERE {same} AND {own} AND {pending}) \
                 ORDER BY {ord}",
                keys = t.as_text("a."),
                range = t.between("a.", 1),
                // The range again on the table itself, so the planner scans only the batch.
                own = t.between(&format!("{table}."), 1),
                ord = t.cols("a."),
            )
        });

        let (change, set_mode) = match &spec.change {
            Change::Set(set) => {
                let skip_cols = (0..n)
                    .map(|i| format!("migval_k{i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let arrays = (0..n)
                    .map(|i| format!("${}::text[]", 2 * n + 1 + i))
                    .collect::<Vec<_>>()
                    .join(", ");
                let same = t
                    .key
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| {
                        format!("migval_skip.migval_k{i} = {table}.{}::text", quote(c))
                    })
                    .collect::<Vec<_>>()
                    .join(" AND ");
                (
                    format!(
                        "UPDATE {table} SET {set}\nWHERE {range} AND {pending} \
                         AND NOT EXISTS (SELECT 1 FROM unnest({arrays}) AS migval_skip({skip_cols}) WHERE {same})",
                        range = t.between("", 1),
                    ),
                    true,
                )
            }
            Change::Update(u) => (u.clone(), false),
        };

        // Order does not matter for the rows left (a set).
        let left = format!(
            "SELECT {keys} FROM {table} WHERE {range} AND {pending}",
            keys = t.as_text(""),
            range = t.between("", 1),
        );
        // Key order, not text order: the output columns are text and share the key's names, so
        // ORDER BY names the table's columns explicitly ("1000" sorts before "801" as text).
        let keys_in_range = format!(
            "SELECT {keys} FROM {table} WHERE {range} ORDER BY {qualified}",
            keys = t.as_text(""),
            range = t.between("", 1),
            qualified = t.cols(&format!("{table}.")),
        );
        let count = format!(
            "SELECT count(*)::int8 AS total, count(*) FILTER (WHERE {pending})::int8 AS pending \
             FROM {table} WHERE {} <= {}",
            t.tuple(""),
            t.params(1)
        );
        // Ordered by the table's columns, named explicitly: the text output columns share
        // their names, and "999" sorts after "1500" as text.
        let ceiling = format!(
            "SELECT {} FROM {table} ORDER BY {} LIMIT 1",
            t.as_text(""),
            t.key
                .iter()
                .map(|(c, _)| format!("{table}.{} DESC", quote(c)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let new_since = format!(
            "SELECT count(*)::int8 FROM {table} WHERE {} > {} AND {pending}",
            t.tuple(""),
            t.params(1)
        );
        let ambiguity_probe = spec
            .ambiguity
            .as_ref()
            .map(|a| format!("SELECT * FROM ({a}\n) AS a LIMIT 0"));
        Statements {
            bound_first,
            bound_next,
            bound_general,
            ambiguous,
            change,
            set_mode,
            left,
            keys_in_range,
            count,
            ceiling,
            new_since,
            ambiguity_probe,
        }
    }
}
