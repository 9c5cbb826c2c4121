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

use crate::model::{CheckResult, Comparison, GroupStats, Status, Table, Value, cmp_keys};

/// What happened to one key.
const CHANGED: &str = "changed";
const APPEARED: &str = "appeared";
const DISAPPEARED: &str = "disappeared";

pub(super) fn compare(bt: &Table, at: &Table, worst_n: usize) -> CheckResult {
    let col = |t: &Table, name: &str| t.columns.iter().position(|c| c.name == name);
    let (Some(bf), Some(af)) = (col(bt, "fingerprint"), col(at, "fingerprint")) else {
        return fail_shape("the captures have no fingerprint column: take a new baseline");
    };
    if bt.key_len != at.key_len {
        return fail_shape(
            "the key has another number of columns than at baseline: take a new baseline",
        );
    }
    let allowed_col = col(at, "allowed");
    let mut stats = GroupStats {
        baseline_groups: bt.len(),
        after_groups: at.len(),
        ..GroupStats::default()
    };
    let mut allowed = 0usize;
    let mut all: Vec<Comparison> = Vec::new();
    let key_text = |t: &Table, i: usize| t.key(i).iter().map(ToString::to_string).collect();
    let (mut bi, mut ai) = (0usize, 0usize);
    while bi < bt.len() || ai < at.len() {
        let ord = match (bi < bt.len(), ai < at.len()) {
            (true, true) => cmp_keys(bt.key(bi), at.key(ai)),
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (what, b, a) = match ord {
            Ordering::Less => (Some(DISAPPEARED), Some(bi), None),
            Ordering::Greater => (Some(APPEARED), None, Some(ai)),
            Ordering::Equal => {
                let same = bt.row(bi)[bf].same(&at.row(ai)[af]);
                ((!same).then_some(CHANGED), Some(bi), Some(ai))
            }
        };
        if let Some(what) = what {
            let ok = match (a, allowed_col) {
                (Some(a), Some(c)) if what != DISAPPEARED => at.row(a)[c] == Value::Bool(true),
                _ => false,
            };
            match what {
                CHANGED => stats.changed += 1,
                APPEARED => stats.appeared += 1,
                _ => stats.disappeared += 1,
            }
            if ok {
                allowed += 1;
            } else {
                stats.failing += 1;
            }
            all.push(Comparison {
                key: match (b, a) {
                    (Some(b), _) => key_text(bt, b),
                    (None, Some(a)) => key_text(at, a),
                    _ => Vec::new(),
                },
                metric: "row".into(),
                scope: what.into(),
                baseline: b.map(|b| bt.row(b)[bf].clone()),
                after: a.map(|a| at.row(a)[af].clone()),
                difference: None,
                rule: if ok {
                    "allowed to change (allow_changes)".into()
                } else {
                    "unchanged".into()
                },
                ok,
                note: None,
            });
        }
        match ord {
            Ordering::Less => bi += 1,
            Ordering::Greater => ai += 1,
            Ordering::Equal => {
                bi += 1;
                ai += 1;
            }
        }
    }
    let status = if stats.failing > 0 {
        Status::Fail
    } else if allowed > 0 {
        Status::Warn
    } else {
        Status::Pass
    };
    let n = stats.baseline_groups.max(stats.after_groups);
    let mut summary = format!(
        "{n} row{}: {} changed, {} appeared, {} disappeared",
        if n == 1 { "" } else { "s" },
        stats.changed,
        stats.appeared,
        stats.disappeared
    );
    if allowed > 0 {
        summary.push_str(&format!(" ({allowed} allowed by allow_changes)"));
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
        kind: String::new(),
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

fn fail_shape(message: &str) -> CheckResult {
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
        .filter(|(_, c)| c.kind == "rows" && c.worst.iter().any(|w| w.scope != DISAPPEARED))
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
        let sql = format!(
            "SELECT ARRAY[{}]::text[], row_to_json(t)::text FROM {rel} AS t WHERE ({}) IN (SELECT * FROM unnest({}))",
            keys.iter()
                .map(|k| format!("t.{k}::text"))
                .collect::<Vec<_>>()
                .join(", "),
            keys.iter()
                .map(|k| format!("t.{k}::text"))
                .collect::<Vec<_>>()
                .join(", "),
            (1..=keys.len())
                .map(|n| format!("${n}::text[]"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let path = match &spec.settings.schemas {
            Some(s) => format!(
                "SET LOCAL search_path = {};",
                s.iter().map(|x| quote(x)).collect::<Vec<_>>().join(", ")
            ),
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
            let rows = client.query(&sql, &params).await;
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
                            w.note = Some(format!("after: {values}"));
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
