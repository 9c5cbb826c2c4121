//! `sizes = { tables = ["orders"], judge = ["total"] }`: the on-disk size of each table (heap,
//! indexes, TOAST, total) before and after, judged by `expect = { grows_at_most = "20%" }`
//! (or "50 MB") or reported only (`expect = "may_change"`, the default). Without `tables`, the
//! tables the other checks of the spec read (filled in by [`default_tables`] once every check
//! is validated).

use super::super::raw::{RawCheck, RawExpect};
use super::super::validate::Validator;
use super::super::{Check, CheckKind, Growth, SchemaDiff, SizePart, SizesCheck, fingerprint};
use super::At;
use crate::sql::ident::Name;
use rust_decimal::Decimal;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck) -> Option<CheckKind> {
    let raw = rc.sizes?;
    if rc.tolerance.is_some() {
        v.at(
            at,
            "tolerance",
            "a sizes check takes no tolerance: say how much may be added with expect = { grows_at_most = \"20%\" } (or \"50 MB\")",
        );
    }
    if rc.scope.is_some() {
        v.at(at, "scope", "`scope` does not apply to a sizes check");
    }
    let mut tables = Vec::new();
    if let Some(list) = &raw.tables {
        if list.is_empty() {
            v.at(
                at,
                "sizes.tables",
                "the list is empty: name the tables, or leave `tables` out for the tables the other checks read",
            );
        }
        for t in list {
            if let Some(n) = v.relation(at.line, at.name, "sizes.tables", t)
                && !tables.contains(&n)
            {
                tables.push(n);
            }
        }
    }
    let judge = match &raw.judge {
        None => vec![SizePart::Total],
        Some(parts) => {
            let mut out = Vec::new();
            for p in parts {
                match SizePart::ALL.iter().find(|x| x.label() == p.trim()) {
                    Some(x) if !out.contains(x) => out.push(*x),
                    Some(_) => {}
                    None => v.at(
                        at,
                        "sizes.judge",
                        format!("`{p}`: use \"table\", \"indexes\", \"toast\" or \"total\""),
                    ),
                }
            }
            if parts.is_empty() {
                v.at(
                    at,
                    "sizes.judge",
                    "the list is empty: leave `judge` out to judge the total",
                );
            }
            out
        }
    };
    let grows_at_most = match &rc.expect {
        None => None,
        Some(RawExpect::Word(w)) if matches!(w.as_str(), "may_change" | "may change") => None,
        Some(RawExpect::Growth(g)) => growth(v, at, &g.grows_at_most),
        Some(_) => {
            v.at(
                at,
                "expect",
                "a sizes check takes expect = { grows_at_most = \"20%\" } (or \"50 MB\") or \"may_change\": sizes are never exactly unchanged",
            );
            None
        }
    };
    Some(CheckKind::Sizes(SizesCheck {
        tables,
        judge,
        grows_at_most,
    }))
}

/// "20%" (of the baseline size) or "50 MB" (binary units, as pg_size_pretty prints them).
fn growth(v: &mut Validator, at: &At, text: &str) -> Option<Growth> {
    let key = "expect.grows_at_most";
    let t = text.trim();
    if let Some(pct) = t.strip_suffix('%') {
        return match Decimal::from_str_exact(pct.trim()) {
            Ok(d) if d.is_sign_negative() => {
                v.at(at, key, format!("`{text}`: a growth limit is not negative"));
                None
            }
            Ok(d) => Some(Growth::Fraction(d / Decimal::ONE_HUNDRED)),
            Err(_) => {
                v.at(
                    at,
                    key,
                    format!("`{text}` is not a percentage (write e.g. \"20%\" or \"0.5%\")"),
                );
                None
            }
        };
    }
    match crate::input::parse_size(t).map(i64::try_from) {
        Ok(Ok(b)) => Some(Growth::Bytes(b)),
        _ => {
            v.at(
                at,
                key,
                format!(
                    "`{text}`: write a percentage of the baseline size (\"20%\") or a size (\"50 MB\", \"1 GB\", \"8192\")"
                ),
            );
            None
        }
    }
}

/// Fill the tables of every sizes check that lists none: the tables the other checks read,
/// in the order they first appear (tables the migration creates left out: they have no
/// baseline size). Its fingerprint is recomputed with the list it gets.
pub(in crate::spec) fn default_tables(
    v: &mut Validator,
    checks: &mut [Check],
    schema: &SchemaDiff,
) {
    let mut touched: Vec<Name> = Vec::new();
    for c in checks.iter().filter(|c| !c.after_only) {
        let names: Vec<&Name> = match &c.kind {
            CheckKind::Metrics(m) => vec![&m.table],
            CheckKind::NullCount(n) => vec![&n.table],
            CheckKind::Orphans(o) => vec![&o.child, &o.parent],
            CheckKind::Rows(r) => vec![&r.table],
            CheckKind::Custom(_) | CheckKind::Schema(_) | CheckKind::Sizes(_) => Vec::new(),
        };
        for n in names {
            if !touched.contains(n) && !schema.declares_added("table", n, None) {
                touched.push(n.clone());
            }
        }
    }
    for c in checks.iter_mut() {
        let CheckKind::Sizes(s) = &mut c.kind else {
            continue;
        };
        if !s.tables.is_empty() {
            continue;
        }
        if touched.is_empty() {
            v.err(
                c.line,
                &c.name,
                "sizes.tables",
                "no other check reads a table: list the tables, e.g. sizes = { tables = [\"orders\"] }",
            );
            continue;
        }
        s.tables = touched.clone();
        c.fingerprint = fingerprint::of(&c.name, &c.kind, c.after_only);
        c.legacy_fingerprint = None;
    }
}
