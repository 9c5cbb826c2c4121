//! The schema diff: every change between the baseline's catalog and the post-state's, each
//! one declared (by `[schema] expect`, or by a rename) or not.
//!
//! ```text
//!   baseline objects --rename map--> expected names --merge on (kind, name)--> after objects
//!     only in baseline  -> drop        only in after -> add
//!     in both           -> alter (one line per attribute that differs), or rename
//! ```
//!
//! A definition that differs only by the renamed identifiers (a view recreated over the renamed
//! column) follows the rename and counts as declared. A column renamed on a partitioned table
//! is renamed on each of its partitions as well. An `expect` line naming one object that
//! matches no change means the migration did not do what it should, and fails too.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    CheckResult, Comparison, ResultKind, SchemaCapture, SchemaCatalog, SchemaObject, Status, Value,
    ValueScope,
};
use crate::spec::{Renames, SchemaDiff, Verb};
use crate::sql::ident;

/// Name of the check the schema diff adds to a report.
pub const CHECK_NAME: &str = "schema diff";

/// One change to one object.
#[derive(Debug, Clone, PartialEq)]
struct Change {
    verb: Verb,
    kind: String,
    /// After the migration (before it, for a drop).
    name: String,
    /// `name` split into its unquoted parts (see [`parts`]).
    key: Vec<String>,
    /// The name in the baseline, when a rename changed it.
    old_name: Option<String>,
    /// For alter: (attribute, before, after). For add: the new object's attributes.
    attrs: Vec<(String, Option<String>, Option<String>)>,
    /// Alter only: every difference is the rename map applied to the definition.
    follows_rename: bool,
    /// The object it belongs to (a column's table, a grant's object, an index's table, a
    /// sequence's owning column): adding or dropping that object declares this one too.
    parent: Option<Vec<String>>,
    /// The partitioned table, when the object lives on a partition: a column, index or
    /// constraint added to a partitioned table appears on every partition too.
    partition_of: Option<Vec<String>>,
}

/// A catalog name split into unquoted parts: `public."a.b".c` -> [public, a.b, c]; a grant's
/// role is the last part; a function signature stays whole.
fn parts(kind: &str, name: &str) -> Vec<String> {
    let split = |object: &str| -> Vec<String> {
        if object.contains('(') {
            vec![object.to_string()]
        } else {
            ident::parse_name(object).unwrap_or_else(|_| vec![object.to_string()])
        }
    };
    match kind {
        "function" => vec![name.to_string()],
        "grant" => match name.rsplit_once(':') {
            Some((object, role)) => {
                let mut p = split(object);
                p.push(role.to_string());
                p
            }
            None => vec![name.to_string()],
        },
        _ => split(name),
    }
}

/// The parts `kind` `p` should have after the renames: tables (and other relations) by the
/// table map, columns by the column map (keyed by the table's old or new name), objects that
/// live on a table under their table's new name. A column of a partition follows a rename of
/// the same column on its partitioned table (`parents`: the baseline's partition -> parent),
/// since PostgreSQL renames it on every partition.
fn renamed(
    kind: &str,
    p: &[String],
    r: &Renames,
    parents: &BTreeMap<Vec<String>, Vec<String>>,
) -> Vec<String> {
    let table = |t: &String| r.table(t).map_or_else(|| t.clone(), str::to_string);
    match (kind, p) {
        ("table" | "view" | "index" | "sequence", [s, t]) => vec![s.clone(), table(t)],
        ("column", [s, t, c]) => {
            let nt = table(t);
            let nc = r
                .column(t, c)
                .or_else(|| r.column(&nt, c))
                .or_else(|| {
                    ancestors(parents, &[s.clone(), t.clone()])
                        .iter()
                        .find_map(|a| a.last().and_then(|pt| r.column(pt, c)))
                })
                .map_or_else(|| c.clone(), str::to_string);
            vec![s.clone(), nt, nc]
        }
        ("constraint" | "trigger" | "policy", [s, t, x]) => vec![s.clone(), table(t), x.clone()],
        ("grant", [s, t, role]) => vec![s.clone(), table(t), role.clone()],
        _ => p.to_vec(),
    }
}

/// The partitioned tables `table` is a partition of, its own parent first (a sub-partition
/// has several). Bounded, so that a catalog read mid-change cannot loop.
fn ancestors(parents: &BTreeMap<Vec<String>, Vec<String>>, table: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut at = table;
    while let Some(parent) = parents.get(at) {
        if out.len() > parents.len() || out.contains(parent) {
            break;
        }
        out.push(parent.clone());
        at = parent;
    }
    out
}

/// The object `kind name` belongs to, for adds and drops that follow their parent's.
fn parent_of(kind: &str, key: &[String], attrs: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let parsed = |v: &String| parts("table", v);
    match kind {
        "column" | "constraint" | "trigger" | "policy" | "grant" if key.len() > 1 => {
            Some(key[..key.len() - 1].to_vec())
        }
        "index" => attrs.get("table").map(parsed),
        "sequence" => attrs.get("owned_by").map(parsed),
        _ => None,
    }
}

/// Compare the catalogs of two snapshots under the `[schema]` rules.
pub fn diff(
    rules: &SchemaDiff,
    renames: &Renames,
    baseline: Option<&SchemaCapture>,
    after: Option<&SchemaCapture>,
) -> CheckResult {
    let (base, post) = match (baseline, after) {
        (Some(SchemaCapture::Captured(b)), Some(SchemaCapture::Captured(a))) => (b, a),
        (Some(SchemaCapture::Failed(f)), _) | (_, Some(SchemaCapture::Failed(f))) => {
            return result(
                Status::Error,
                format!("the catalog could not be read: {}", f.message),
                Vec::new(),
                Some(f.clone()),
            );
        }
        (None, _) => {
            return result(
                Status::Warn,
                "the baseline holds no catalog (taken by an older migval, or with [schema] \
                 diff = false): the schema was not compared; take a new baseline"
                    .into(),
                Vec::new(),
                None,
            );
        }
        (_, None) => {
            return result(
                Status::Warn,
                "the post-state holds no catalog: the schema was not compared".into(),
                Vec::new(),
                None,
            );
        }
    };
    // Compare only what both captures hold: a baseline taken before domains were captured has
    // none, and every domain of the post-state would otherwise show as added.
    let domains_compared = format_of(base).min(format_of(post)) >= DOMAINS_SINCE;
    let base = objects_only(base, domains_compared);
    let post = objects_only(post, domains_compared);
    let changes = changes(&base, &post, renames);
    let mut r = judge(rules, &changes, &base, &post);
    // Only the post-state can say whether a domain went unchecked (the one blind spot left: a
    // domain dropped since such a baseline, when no domain is left).
    let unchecked = if domains_compared {
        0
    } else {
        post_domains(after)
    };
    if unchecked > 0 {
        r.summary.push_str(&format!(
            "; {unchecked} domain{} not compared: the baseline was taken before migval \
             captured domains, take a new baseline",
            if unchecked == 1 { "" } else { "s" }
        ));
        if r.status == Status::Pass {
            r.status = Status::Warn;
        }
    }
    r
}

/// Kind of the row `queries/schema_catalog.sql` adds to say which kinds it captured.
const FORMAT_KIND: &str = "catalog";
/// The catalog format from which domains are captured (kind `type`, attribute kind `domain`).
const DOMAINS_SINCE: u32 = 2;

/// The catalog format of a capture: 1 when it has no format row (taken before the row existed).
fn format_of(c: &SchemaCatalog) -> u32 {
    c.objects
        .iter()
        .find(|o| o.kind == FORMAT_KIND)
        .and_then(|o| o.attrs.get("version")?.parse().ok())
        .unwrap_or(1)
}

fn is_domain(o: &SchemaObject) -> bool {
    o.kind == "type" && o.attrs.get("kind").is_some_and(|k| k == "domain")
}

/// The objects to diff: without the format row, and without domains unless both sides
/// captured them.
fn objects_only(c: &SchemaCatalog, domains: bool) -> SchemaCatalog {
    SchemaCatalog {
        schemas: c.schemas.clone(),
        objects: c
            .objects
            .iter()
            .filter(|o| o.kind != FORMAT_KIND && (domains || !is_domain(o)))
            .cloned()
            .collect(),
    }
}

fn post_domains(after: Option<&SchemaCapture>) -> usize {
    match after {
        Some(SchemaCapture::Captured(a)) => a.objects.iter().filter(|o| is_domain(o)).count(),
        _ => 0,
    }
}

fn result(
    status: Status,
    summary: String,
    values: Vec<Comparison>,
    error: Option<crate::model::DbFailure>,
) -> CheckResult {
    CheckResult {
        name: CHECK_NAME.to_string(),
        kind: ResultKind::SchemaDiff,
        status,
        after_only: false,
        summary,
        tolerance: "declared changes only".to_string(),
        expect: "[schema] expect".to_string(),
        values,
        groups: None,
        worst: Vec::new(),
        all_changes: Vec::new(),
        baseline_sql: vec![crate::sql::SCHEMA_CATALOG.name.to_string()],
        after_sql: vec![crate::sql::SCHEMA_CATALOG.name.to_string()],
        error,
    }
}

/// Every change, in (kind, name) order.
fn changes(base: &SchemaCatalog, post: &SchemaCatalog, renames: &Renames) -> Vec<Change> {
    let pairs = rename_pairs(renames);
    // The same names on the post side, so both definitions quote them alike.
    let same: Vec<(String, String)> = pairs.iter().map(|(_, n)| (n.clone(), n.clone())).collect();
    let partitions = partition_parents(base.objects.iter().chain(&post.objects));
    let base_partitions = partition_parents(base.objects.iter());
    let partition_of = |kind: &str, key: &[String], attrs: &BTreeMap<String, String>| {
        let table = match kind {
            "column" | "constraint" if key.len() == 3 => key[..2].to_vec(),
            "index" => attrs.get("table").map(|t| parts("table", t))?,
            _ => return None,
        };
        partitions.get(&table).cloned()
    };
    let after: BTreeMap<(String, Vec<String>), &SchemaObject> = post
        .objects
        .iter()
        .map(|o| ((o.kind.clone(), parts(&o.kind, &o.name)), o))
        .collect();
    // Renamed objects claim their post-side object first; an object whose rename did not
    // happen is then matched under its own name, unless that name was claimed by a rename
    // (the old object was dropped and another renamed onto its name).
    let base_keys: Vec<(Vec<String>, Vec<String>)> = base
        .objects
        .iter()
        .map(|b| {
            let k = parts(&b.kind, &b.name);
            let n = renamed(&b.kind, &k, renames, &base_partitions);
            (k, n)
        })
        .collect();
    let mut claimed: BTreeSet<(String, Vec<String>)> = BTreeSet::new();
    let mut matched: Vec<Option<&SchemaObject>> = vec![None; base.objects.len()];
    for pass in [true, false] {
        for (i, b) in base.objects.iter().enumerate() {
            let (old, new) = &base_keys[i];
            if matched[i].is_some() || (pass && old == new) {
                continue;
            }
            let want = (b.kind.clone(), if pass { new.clone() } else { old.clone() });
            if claimed.contains(&want) {
                continue;
            }
            if let Some(a) = after.get(&want) {
                claimed.insert(want);
                matched[i] = Some(a);
            }
        }
    }
    let mut out = Vec::new();
    for (i, b) in base.objects.iter().enumerate() {
        let key = base_keys[i].0.clone();
        let Some(a) = matched[i] else {
            out.push(Change {
                verb: Verb::Drop,
                kind: b.kind.clone(),
                name: b.name.clone(),
                parent: parent_of(&b.kind, &key, &b.attrs),
                partition_of: partition_of(&b.kind, &key, &b.attrs),
                key,
                old_name: None,
                attrs: Vec::new(),
                follows_rename: false,
            });
            continue;
        };
        let attrs = attr_diff(&b.attrs, &a.attrs);
        let follows = !attrs.is_empty()
            && !pairs.is_empty()
            && attrs.iter().all(|(_, old, new)| {
                old.as_deref().map(|t| ident::rename_identifiers(t, &pairs))
                    == new.as_deref().map(|t| ident::rename_identifiers(t, &same))
            });
        let a_key = parts(&a.kind, &a.name);
        if a.name != b.name {
            out.push(Change {
                verb: Verb::Rename,
                kind: b.kind.clone(),
                name: a.name.clone(),
                key: a_key.clone(),
                old_name: Some(b.name.clone()),
                attrs: Vec::new(),
                follows_rename: true,
                parent: None,
                partition_of: None,
            });
        }
        if !attrs.is_empty() {
            out.push(Change {
                verb: Verb::Alter,
                kind: b.kind.clone(),
                name: a.name.clone(),
                partition_of: partition_of(&a.kind, &a_key, &a.attrs),
                key: a_key,
                old_name: (a.name != b.name).then(|| b.name.clone()),
                attrs,
                follows_rename: follows,
                parent: None,
            });
        }
    }
    for a in &post.objects {
        let key = parts(&a.kind, &a.name);
        if !claimed.contains(&(a.kind.clone(), key.clone())) {
            out.push(Change {
                verb: Verb::Add,
                kind: a.kind.clone(),
                name: a.name.clone(),
                parent: parent_of(&a.kind, &key, &a.attrs),
                partition_of: partition_of(&a.kind, &key, &a.attrs),
                key,
                old_name: None,
                attrs: a
                    .attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), None, Some(v.clone())))
                    .collect(),
                follows_rename: false,
            });
        }
    }
    out.sort_by(|x, y| (&x.kind, &x.name, x.verb).cmp(&(&y.kind, &y.name, y.verb)));
    out
}

/// Partition -> its partitioned table, from the objects of one side or both.
fn partition_parents<'a>(
    objects: impl Iterator<Item = &'a SchemaObject>,
) -> BTreeMap<Vec<String>, Vec<String>> {
    objects
        .filter(|o| o.kind == "table")
        .filter_map(|o| {
            let parent = o.attrs.get("partition_of")?;
            Some((parts("table", &o.name), parts("table", parent)))
        })
        .collect()
}

fn attr_diff(
    b: &BTreeMap<String, String>,
    a: &BTreeMap<String, String>,
) -> Vec<(String, Option<String>, Option<String>)> {
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| (k.clone(), b.get(k).cloned(), a.get(k).cloned()))
        .collect()
}

/// (old, new) identifiers of the rename map, for rewriting definitions (string literals and
/// comments are left alone by [`ident::rename_identifiers`]).
fn rename_pairs(r: &Renames) -> Vec<(String, String)> {
    let mut w: Vec<(String, String)> = r.tables.clone();
    w.extend(r.columns.iter().map(|(_, o, n)| (o.clone(), n.clone())));
    w
}

/// How a change stands against the rules.
enum Standing {
    Declared(String),
    Undeclared,
}

fn judge(
    rules: &SchemaDiff,
    changes: &[Change],
    base: &SchemaCatalog,
    post: &SchemaCatalog,
) -> CheckResult {
    let mut used = vec![false; rules.expect.len()];
    let mut standings: Vec<Standing> = changes
        .iter()
        .map(|c| {
            if c.verb == Verb::Rename {
                return Standing::Declared("the rename map".into());
            }
            // Every expectation that covers the change counts as met (a DBA may write the
            // same change with and without its schema).
            let mut first = None;
            for (i, e) in rules.expect.iter().enumerate() {
                let covers = e.covers(c.verb, &c.kind, &c.name)
                    || c.old_name
                        .as_deref()
                        .is_some_and(|old| e.covers(c.verb, &c.kind, old));
                if covers {
                    used[i] = true;
                    first.get_or_insert(i);
                }
            }
            match first {
                Some(i) => Standing::Declared(format!("declared: \"{}\"", rules.expect[i].text)),
                None if c.follows_rename => Standing::Declared("follows the rename map".into()),
                None => Standing::Undeclared,
            }
        })
        .collect();
    // Columns, constraints, grants... of a declared new (or dropped) table come with it, and
    // so do the parts of those parts (the grants of a serial column's sequence). What a
    // declared change to a partitioned table does to its partitions comes with it too.
    loop {
        let declared: Vec<(&Change, String)> = changes
            .iter()
            .zip(&standings)
            .filter_map(|(c, s)| match s {
                Standing::Declared(_) if c.verb != Verb::Rename => {
                    Some((c, format!("follows {} {} {}", c.verb, c.kind, c.name)))
                }
                _ => None,
            })
            .collect();
        let follows = |c: &Change| -> Option<String> {
            let parent = c
                .parent
                .as_ref()
                .filter(|_| matches!(c.verb, Verb::Add | Verb::Drop));
            if let Some(by) = parent.and_then(|p| {
                declared
                    .iter()
                    .find(|(d, _)| d.verb == c.verb && &d.key == p)
                    .map(|(_, by)| by.clone())
            }) {
                return Some(by);
            }
            let table = c.partition_of.as_ref()?;
            declared
                .iter()
                .find(|(d, _)| {
                    d.verb == c.verb
                        && d.kind == c.kind
                        && match c.kind.as_str() {
                            // The same column on the partitioned table.
                            "column" => {
                                d.key.len() == 3
                                    && d.key[..2] == table[..]
                                    && c.key.last() == d.key.last()
                            }
                            // An index or constraint on the partitioned table.
                            _ => d.parent.as_ref() == Some(table) || d.key.get(..2) == Some(table),
                        }
                })
                .map(|(_, by)| by.clone())
        };
        let found: Vec<(usize, String)> = changes
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(standings[*i], Standing::Undeclared))
            .filter_map(|(i, c)| follows(c).map(|by| (i, by)))
            .collect();
        if found.is_empty() {
            break;
        }
        for (i, by) in found {
            standings[i] = Standing::Declared(by);
        }
    }
    let mut values = Vec::new();
    let mut undeclared: Vec<String> = Vec::new();
    let mut hazards: Vec<String> = Vec::new();
    for (c, standing) in changes.iter().zip(&standings) {
        let (mut rule, mut ok) = match standing {
            Standing::Declared(by) => (by.clone(), true),
            Standing::Undeclared => {
                undeclared.push(describe(c));
                ("undeclared".to_string(), !rules.undeclared_fails)
            }
        };
        if let Some(h) = hazard(c) {
            hazards.push(format!("{} {}: {h}", c.kind, c.name));
            rule = format!("{rule}; but {h}");
            ok = ok && !rules.hazards_fail;
        }
        values.extend(rows(c, &rule, ok));
    }
    let missing: Vec<&str> = rules
        .expect
        .iter()
        .zip(&used)
        .filter(|(e, used)| e.is_exact() && !**used)
        .map(|(e, _)| e.text.as_str())
        .collect();
    for m in &missing {
        values.push(Comparison {
            key: vec!["expected".into(), (*m).to_string()],
            metric: "did not happen".into(),
            scope: ValueScope::Missing,
            baseline: None,
            after: None,
            difference: None,
            rule: format!("declared: \"{m}\""),
            ok: false,
            note: Some("the spec expects this change and the migration did not make it".into()),
        });
    }
    let schemas = base.schemas.join(", ");
    let scope_changed = base.schemas != post.schemas;
    let status = if (rules.undeclared_fails && !undeclared.is_empty())
        || (rules.hazards_fail && !hazards.is_empty())
        || !missing.is_empty()
    {
        Status::Fail
    } else if !undeclared.is_empty() || !hazards.is_empty() || scope_changed {
        Status::Warn
    } else {
        Status::Pass
    };
    let mut summary = if changes.is_empty() {
        format!(
            "no schema change in {schemas} ({} objects)",
            base.objects.len()
        )
    } else {
        format!(
            "{} change{} in {schemas}, {} undeclared",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" },
            undeclared.len()
        )
    };
    if !undeclared.is_empty() {
        let shown: Vec<&str> = undeclared.iter().take(5).map(String::as_str).collect();
        summary.push_str(&format!(": {}", shown.join("; ")));
        if undeclared.len() > shown.len() {
            summary.push_str(&format!("; and {} more", undeclared.len() - shown.len()));
        }
    }
    if !hazards.is_empty() {
        summary.push_str(&format!("; hazard: {}", hazards.join("; ")));
    }
    if scope_changed {
        summary.push_str(&format!(
            "; the schemas in scope differ (baseline: {schemas}; now: {}): set settings.schemas",
            post.schemas.join(", ")
        ));
    }
    if !missing.is_empty() {
        summary.push_str(&format!(
            "; expected but not made: {}",
            missing
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    result(status, summary, values, None)
}

/// A state the migration leaves behind that breaks production even when the change itself
/// was intended: a constraint that was never validated, an index a failed build left
/// invalid, a disabled trigger, a sequence behind the ids already in its column.
fn hazard(c: &Change) -> Option<&'static str> {
    if !matches!(c.verb, Verb::Add | Verb::Alter) {
        return None;
    }
    c.attrs.iter().find_map(|(k, _, new)| {
        match (k.as_str(), new.as_deref()?) {
            ("validated", "NOT VALID") => Some(
                "it is NOT VALID: existing rows were never checked (ALTER TABLE ... VALIDATE CONSTRAINT)",
            ),
            ("valid", "INVALID") => Some(
                "the index is INVALID (a failed concurrent build): queries ignore it; drop and re-create it",
            ),
            ("enabled", "DISABLED") => Some("the trigger is DISABLED"),
            ("triggers", "DISABLED") => Some(
                "its enforcement triggers are DISABLED (DISABLE TRIGGER ALL): it is not checked",
            ),
            ("behind_max", v) if v.starts_with("BEHIND") => Some(
                "the sequence is behind max() of its column: the next insert fails with a duplicate key (setval it)",
            ),
            _ => None,
        }
    })
}

/// "drop index public.ix_orders_customer", "alter table public.accounts (row_security
/// enabled -> disabled)".
fn describe(c: &Change) -> String {
    match c.verb {
        Verb::Alter => {
            let what: Vec<String> = c
                .attrs
                .iter()
                .map(|(k, b, a)| {
                    format!(
                        "{k} {} -> {}",
                        short(b.as_deref().unwrap_or("(not set)")),
                        short(a.as_deref().unwrap_or("(not set)"))
                    )
                })
                .collect();
            format!("alter {} {} ({})", c.kind, c.name, what.join(", "))
        }
        v => format!("{v} {} {}", c.kind, c.name),
    }
}

fn short(s: &str) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= 40 {
        one
    } else {
        format!("{}…", one.chars().take(39).collect::<String>())
    }
}

/// The report rows of one change.
fn rows(c: &Change, rule: &str, ok: bool) -> Vec<Comparison> {
    let row = |metric: String, baseline: Option<Value>, after: Option<Value>| Comparison {
        key: vec![c.kind.clone(), c.name.clone()],
        metric,
        scope: match c.verb {
            Verb::Add => ValueScope::Add,
            Verb::Drop => ValueScope::Drop,
            Verb::Alter => ValueScope::Alter,
            Verb::Rename => ValueScope::Rename,
        },
        baseline,
        after,
        difference: None,
        rule: rule.to_string(),
        ok,
        note: None,
    };
    let text = |s: &str| Some(Value::Text(s.into()));
    let summary = |attrs: &[(String, Option<String>, Option<String>)]| {
        attrs
            .iter()
            .filter_map(|(k, _, v)| v.as_ref().map(|v| format!("{k}: {}", short(v))))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match c.verb {
        Verb::Add => vec![row("added".into(), None, text(&summary(&c.attrs)))],
        Verb::Drop => vec![row("dropped".into(), text("exists"), None)],
        Verb::Rename => vec![row(
            "renamed".into(),
            text(c.old_name.as_deref().unwrap_or("")),
            text(&c.name),
        )],
        Verb::Alter => c
            .attrs
            .iter()
            .map(|(k, b, a)| {
                row(
                    k.clone(),
                    Some(b.as_deref().map_or(Value::Null, |s| Value::Text(s.into()))),
                    Some(a.as_deref().map_or(Value::Null, |s| Value::Text(s.into()))),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ExpectedChange;

    fn obj(kind: &str, name: &str, attrs: &[(&str, &str)]) -> SchemaObject {
        SchemaObject {
            kind: kind.into(),
            name: name.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    fn cat(objects: Vec<SchemaObject>) -> SchemaCapture {
        SchemaCapture::Captured(SchemaCatalog {
            schemas: vec!["public".into()],
            objects,
        })
    }

    fn rules(expect: &[&str]) -> SchemaDiff {
        SchemaDiff {
            expect: expect
                .iter()
                .map(|e| ExpectedChange::parse(e, 1).unwrap())
                .collect(),
            ..SchemaDiff::default()
        }
    }

    #[test]
    fn a_dropped_index_and_disabled_rls_fail_when_undeclared() {
        let before = cat(vec![
            obj("index", "public.ix_a", &[("valid", "valid")]),
            obj("table", "public.t", &[("row_security", "enabled")]),
        ]);
        let after = cat(vec![obj(
            "table",
            "public.t",
            &[("row_security", "disabled")],
        )]);
        let r = diff(
            &rules(&[]),
            &Renames::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(r.status, Status::Fail, "{r:#?}");
        assert!(
            r.summary.contains("drop index public.ix_a"),
            "{}",
            r.summary
        );
        assert!(
            r.summary
                .contains("alter table public.t (row_security enabled -> disabled)"),
            "{}",
            r.summary
        );
        let warn = SchemaDiff {
            undeclared_fails: false,
            ..rules(&[])
        };
        let r = diff(&warn, &Renames::default(), Some(&before), Some(&after));
        assert_eq!(r.status, Status::Warn);
        let declared = rules(&["drop index ix_a", "alter table public.*"]);
        let r = diff(&declared, &Renames::default(), Some(&before), Some(&after));
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        assert!(r.values.iter().all(|v| v.rule.starts_with("declared")));
    }

    #[test]
    fn the_parts_of_a_declared_new_table_come_with_it() {
        let before = cat(vec![]);
        let after = cat(vec![
            obj("column", "public.t.id", &[("type", "integer")]),
            obj("grant", "public.t:app", &[("privileges", "SELECT")]),
            obj("index", "public.t_x", &[("table", "public.t")]),
            obj(
                "sequence",
                "public.t_id_seq",
                &[("owned_by", "public.t.id")],
            ),
            obj("table", "public.t", &[]),
            obj("table", "public.u", &[]),
        ]);
        let declared = rules(&["add table t"]);
        let r = diff(&declared, &Renames::default(), Some(&before), Some(&after));
        assert_eq!(r.status, Status::Fail, "u is not declared");
        assert_eq!(
            r.summary,
            "6 changes in public, 1 undeclared: add table public.u"
        );
        let declared = rules(&["add table t", "add table u"]);
        let r = diff(&declared, &Renames::default(), Some(&before), Some(&after));
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        let seq = r.values.iter().find(|v| v.key[0] == "sequence").unwrap();
        assert_eq!(seq.rule, "follows add column public.t.id");
    }

    #[test]
    fn renames_and_definitions_that_follow_them_are_declared() {
        let before = cat(vec![
            obj("column", "public.cp.fixed_cost", &[("type", "numeric")]),
            obj(
                "view",
                "public.v",
                &[("definition", "SELECT cp.fixed_cost FROM cp")],
            ),
        ]);
        let after = cat(vec![
            obj("column", "public.cp.fixed_fee", &[("type", "numeric")]),
            obj(
                "view",
                "public.v",
                &[("definition", "SELECT cp.fixed_fee FROM cp")],
            ),
        ]);
        let ren = Renames {
            tables: vec![],
            columns: vec![("cp".into(), "fixed_cost".into(), "fixed_fee".into())],
        };
        let r = diff(&rules(&[]), &ren, Some(&before), Some(&after));
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        assert_eq!(r.values.len(), 2);
        // Without the rename it is a drop, an add and an undeclared view change.
        let r = diff(
            &rules(&[]),
            &Renames::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.starts_with("3 changes"), "{}", r.summary);
    }

    #[test]
    fn an_exact_expectation_that_did_not_happen_fails() {
        let same = cat(vec![obj("table", "public.t", &[])]);
        let r = diff(
            &rules(&["add index public.ix_new", "change grant *"]),
            &Renames::default(),
            Some(&same),
            Some(&same),
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.summary
                .contains("expected but not made: \"add index public.ix_new\""),
            "{}",
            r.summary
        );
    }

    #[test]
    fn an_old_baseline_without_catalog_warns() {
        let r = diff(&rules(&[]), &Renames::default(), None, Some(&cat(vec![])));
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.contains("take a new baseline"));
    }

    #[test]
    fn a_renamed_word_inside_a_string_literal_is_a_real_change() {
        let before = cat(vec![obj(
            "column",
            "public.t.state",
            &[("default", "'active'::text")],
        )]);
        let after = cat(vec![obj(
            "column",
            "public.t.state",
            &[("default", "'enabled'::text")],
        )]);
        let ren = Renames {
            tables: vec![],
            columns: vec![("t".into(), "active".into(), "enabled".into())],
        };
        let r = diff(&rules(&[]), &ren, Some(&before), Some(&after));
        assert_eq!(r.status, Status::Fail, "{r:#?}");
    }

    #[test]
    fn a_table_dropped_and_another_renamed_onto_its_name_is_a_drop_and_a_rename() {
        let before = cat(vec![
            obj("table", "public.orders", &[("owner", "a")]),
            obj("table", "public.orders_v2", &[("owner", "b")]),
        ]);
        let after = cat(vec![obj("table", "public.orders_v2", &[("owner", "a")])]);
        let ren = Renames {
            tables: vec![("orders".into(), "orders_v2".into())],
            columns: vec![],
        };
        let r = diff(&rules(&[]), &ren, Some(&before), Some(&after));
        assert_eq!(r.status, Status::Fail, "{r:#?}");
        assert!(
            r.summary
                .contains("1 undeclared: drop table public.orders_v2"),
            "{}",
            r.summary
        );
    }

    /// `events` partitioned three ways plus a default partition, with a check constraint and
    /// an index on `ts` (copied onto every partition), and `note`.
    fn events(ts: &str, drop_on: Option<(&str, &str)>) -> SchemaCapture {
        let mut objects = vec![obj("table", "public.events", &[])];
        for part in ["events_p1", "events_p2", "events_p3", "events_default"] {
            objects.push(obj(
                "table",
                &format!("public.{part}"),
                &[("partition_of", "public.events")],
            ));
        }
        for table in [
            "events",
            "events_p1",
            "events_p2",
            "events_p3",
            "events_default",
        ] {
            for column in [ts, "note"] {
                if drop_on != Some((table, column)) {
                    objects.push(obj(
                        "column",
                        &format!("public.{table}.{column}"),
                        &[("type", "timestamptz")],
                    ));
                }
            }
            objects.push(obj(
                "constraint",
                &format!("public.{table}.events_ts_check"),
                &[("definition", &format!("CHECK ({ts} > '2000-01-01'::date)"))],
            ));
            objects.push(obj(
                "index",
                &format!("public.{table}_ts_idx"),
                &[
                    ("table", &format!("public.{table}")),
                    (
                        "definition",
                        &format!(
                            "CREATE INDEX {table}_ts_idx ON public.{table} USING btree ({ts})"
                        ),
                    ),
                ],
            ));
        }
        cat(objects)
    }

    #[test]
    fn a_column_renamed_on_a_partitioned_table_is_renamed_on_its_partitions() {
        let before = events("ts", None);
        let ren = Renames {
            tables: vec![],
            columns: vec![("events".into(), "ts".into(), "occurred_at".into())],
        };
        let after = events("occurred_at", None);
        let r = diff(&rules(&[]), &ren, Some(&before), Some(&after));
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        assert!(
            r.summary.starts_with("15 changes in public, 0 undeclared"),
            "5 column renames, 5 constraints and 5 indexes following them: {}",
            r.summary
        );
        let p2 = r
            .values
            .iter()
            .find(|v| v.key == ["column", "public.events_p2.occurred_at"])
            .expect("the partition's column is a rename");
        assert_eq!(
            (p2.scope, p2.rule.as_str()),
            (ValueScope::Rename, "the rename map")
        );

        // Without the rename, every partition shows a drop and an add.
        let r = diff(
            &rules(&[]),
            &Renames::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.summary.starts_with("20 changes in public, 20 undeclared"),
            "{}",
            r.summary
        );

        // The rename does not cover a partition that lost the column, nor another column.
        for (table, column, change) in [
            (
                "events_p2",
                "occurred_at",
                "drop column public.events_p2.ts",
            ),
            (
                "events_default",
                "note",
                "drop column public.events_default.note",
            ),
        ] {
            let after = events("occurred_at", Some((table, column)));
            let r = diff(&rules(&[]), &ren, Some(&before), Some(&after));
            assert_eq!(r.status, Status::Fail, "{r:#?}");
            assert!(
                r.summary.contains(&format!("1 undeclared: {change}")),
                "{}",
                r.summary
            );
        }
    }

    fn domain(name: &str, checks: &str) -> SchemaObject {
        obj(
            "type",
            name,
            &[
                ("kind", "domain"),
                ("base_type", "numeric(12,2)"),
                ("not_null", "nullable"),
                ("checks", checks),
            ],
        )
    }

    fn format_2() -> SchemaObject {
        obj("catalog", "format", &[("version", "2")])
    }

    #[test]
    fn domains_are_diffed_as_types_when_both_sides_captured_them() {
        let before = cat(vec![format_2(), obj("table", "public.t", &[])]);
        let after = cat(vec![
            format_2(),
            domain("public.amount", "CHECK (VALUE >= 0::numeric)"),
            obj("table", "public.t", &[]),
        ]);
        let r = diff(
            &rules(&[]),
            &Renames::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(r.status, Status::Fail, "{r:#?}");
        assert_eq!(
            r.summary,
            "1 change in public, 1 undeclared: add type public.amount"
        );
        let r = diff(
            &rules(&["add type public.amount"]),
            &Renames::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        // A new CHECK on the domain is an alter of the type.
        let stricter = cat(vec![
            format_2(),
            domain(
                "public.amount",
                "CHECK (VALUE < 1000000::numeric); CHECK (VALUE >= 0::numeric)",
            ),
            obj("table", "public.t", &[]),
        ]);
        let r = diff(
            &rules(&[]),
            &Renames::default(),
            Some(&after),
            Some(&stricter),
        );
        assert_eq!(r.status, Status::Fail, "{r:#?}");
        assert!(
            r.summary
                .contains("1 undeclared: alter type public.amount (checks CHECK"),
            "{}",
            r.summary
        );
        let r = diff(
            &rules(&["alter type amount"]),
            &Renames::default(),
            Some(&after),
            Some(&stricter),
        );
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        // The format row itself is never a change.
        assert!(r.values.iter().all(|v| v.key[0] != "catalog"), "{r:#?}");
    }

    #[test]
    fn a_baseline_taken_before_domains_were_captured_does_not_show_them_as_added() {
        let old = cat(vec![obj("table", "public.t", &[])]);
        let now = cat(vec![
            format_2(),
            domain("public.amount", "CHECK (VALUE >= 0::numeric)"),
            obj("table", "public.t", &[]),
        ]);
        let r = diff(&rules(&[]), &Renames::default(), Some(&old), Some(&now));
        assert_eq!(r.status, Status::Warn, "{r:#?}");
        assert_eq!(
            r.summary,
            "no schema change in public (1 objects); 1 domain not compared: the baseline was \
             taken before migval captured domains, take a new baseline"
        );
        // A real change next to it still fails.
        let changed = cat(vec![
            format_2(),
            domain("public.amount", "CHECK (VALUE >= 0::numeric)"),
            obj("table", "public.t", &[("row_security", "enabled")]),
        ]);
        let r = diff(&rules(&[]), &Renames::default(), Some(&old), Some(&changed));
        assert_eq!(r.status, Status::Fail, "{r:#?}");
        assert!(r.summary.contains("1 domain not compared"), "{}", r.summary);
        // Without domains in the post-state nothing went unchecked.
        let plain = cat(vec![format_2(), obj("table", "public.t", &[])]);
        let r = diff(&rules(&[]), &Renames::default(), Some(&old), Some(&plain));
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        assert_eq!(r.summary, "no schema change in public (1 objects)");
    }

    #[test]
    fn a_column_added_to_a_partitioned_table_covers_its_partitions() {
        let before = cat(vec![
            obj("table", "public.p", &[]),
            obj("table", "public.p1", &[("partition_of", "public.p")]),
        ]);
        let mut objects = vec![
            obj("column", "public.p.z", &[]),
            obj("column", "public.p1.z", &[]),
        ];
        if let SchemaCapture::Captured(c) = &before {
            objects.extend(c.objects.clone());
        }
        let after = cat(objects);
        let r = diff(
            &rules(&["add column p.z"]),
            &Renames::default(),
            Some(&before),
            Some(&after),
        );
        assert_eq!(r.status, Status::Pass, "{r:#?}");
    }
}
