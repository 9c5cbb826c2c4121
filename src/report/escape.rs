//! Values from the database (group keys, text cells, server messages, names) shown to people
//! must not be able to drive their terminal: an `ESC[2J ESC[H` in a group key would clear the
//! screen and a `\r` or a right-to-left override would let data paint a forged `PASS` over the
//! real line. The text, Markdown and JUnit renderers therefore see a copy of the report in which
//! every string has its control characters written out visibly (`\x1b`, `\r`, `\u{202e}`);
//! the JSON report keeps the exact values.
//!
//! Escaped: C0 controls and DEL, C1 controls (U+0080-U+009F, which some terminals read as CSI),
//! the bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and the
//! line/paragraph separators U+2028/U+2029. Backslashes are left alone: the display is for
//! people; the exact value is in the JSON report.

use crate::model::{
    BackfillOutcome, Blocker, CheckResult, Comparison, DbFailure, LockHeld, MigrationSummary,
    Origin, Report, StatementRun, Value,
};

/// Whether a string may keep its newlines and tabs: SQL, server DETAIL/HINT/CONTEXT, the output
/// of an external command are several lines by nature (each is shown indented or in a code
/// block). Everything else is one line: a name, a key, a value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

fn needs_escape(c: char, lines: Lines) -> bool {
    match c {
        '\n' | '\t' => lines == Lines::One,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `s` with every control character written out visibly.
pub fn visible(s: &str, lines: Lines) -> String {
    if !s.chars().any(|c| needs_escape(c, lines)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c, lines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x80 => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    out
}

/// One-line form, for names and values.
pub fn line(s: &str) -> String {
    visible(s, Lines::One)
}

/// Multi-line form, for messages and SQL.
pub fn block(s: &str) -> String {
    visible(s, Lines::Many)
}

fn one(s: &mut String) {
    if s.chars().any(|c| needs_escape(c, Lines::One)) {
        *s = line(s);
    }
}

fn many(s: &mut String) {
    if s.chars().any(|c| needs_escape(c, Lines::Many)) {
        *s = block(s);
    }
}

fn value(v: &mut Option<Value>) {
    if let Some(Value::Text(t) | Value::BigNum(t)) = v
        && t.chars().any(|c| needs_escape(c, Lines::One))
    {
        *t = line(t).into_boxed_str();
    }
}

/// A copy of `report` safe to print: every string it shows escaped.
///
/// The structs are destructured without `..`, so that a field added to the model later does not
/// compile until it is decided here how it is shown.
pub fn report(r: &Report) -> Report {
    let mut r = r.clone();
    let Report {
        command,
        banner,
        spec_path,
        baseline,
        after,
        renames,
        spec_changes,
        checks,
        verdict: _,
        migration,
        backup,
        backfill,
    } = &mut r;
    if let Some(b) = backup {
        one(&mut b.file);
        one(&mut b.database);
        one(&mut b.format);
    }
    one(command);
    banner.iter_mut().for_each(one);
    one(spec_path);
    origin(baseline);
    origin(after);
    for (a, b) in renames.iter_mut() {
        one(a);
        one(b);
    }
    spec_changes.iter_mut().for_each(one);
    checks.iter_mut().for_each(check);
    if let Some(m) = migration {
        migration_summary(m);
    }
    if let Some(b) = backfill {
        backfill_outcome(b);
    }
    r
}

fn origin(o: &mut Origin) {
    let Origin {
        target,
        database,
        server_version,
        snapshot_id,
        lsn,
        in_recovery: _,
        captured_at,
        connections: _,
        duration_ms: _,
    } = o;
    for s in [
        target,
        database,
        server_version,
        snapshot_id,
        lsn,
        captured_at,
    ] {
        one(s);
    }
}

fn check(c: &mut CheckResult) {
    let CheckResult {
        name,
        kind: _,
        status: _,
        after_only: _,
        summary,
        tolerance,
        expect,
        values,
        groups: _,
        worst,
        all_changes,
        baseline_sql,
        after_sql,
        error,
    } = c;
    // `kind` and the values' `scope` are enums: migval's own words, nothing to escape.
    for s in [name, summary, tolerance, expect] {
        one(s);
    }
    values.iter_mut().for_each(comparison);
    worst.iter_mut().for_each(comparison);
    all_changes.iter_mut().for_each(comparison);
    baseline_sql.iter_mut().for_each(many);
    after_sql.iter_mut().for_each(many);
    if let Some(e) = error {
        failure(e);
    }
}

fn comparison(v: &mut Comparison) {
    let Comparison {
        key,
        metric,
        scope: _,
        baseline,
        after,
        difference,
        rule,
        ok: _,
        note,
    } = v;
    key.iter_mut().for_each(one);
    for s in [metric, rule] {
        one(s);
    }
    value(baseline);
    value(after);
    difference.iter_mut().for_each(one);
    note.iter_mut().for_each(one);
}

fn failure(e: &mut DbFailure) {
    let DbFailure {
        message,
        sqlstate,
        detail,
        hint,
        server_context,
        context,
    } = e;
    many(message);
    if let Some(s) = sqlstate {
        let mut t = s.to_string();
        one(&mut t);
        *s = t.into();
    }
    detail.iter_mut().for_each(many);
    hint.iter_mut().for_each(many);
    server_context.iter_mut().for_each(|c| many(c));
    context.iter_mut().for_each(many);
}

pub(super) fn backfill_outcome(o: &mut BackfillOutcome) {
    let BackfillOutcome {
        backfill,
        table,
        committed: _,
        run_id: _,
        counters: _,
        this_invocation: _,
        finished: _,
        interrupted: _,
        elapsed_ms: _,
        estimated_total_ms: _,
        total_rows: _,
        pending_rows: _,
        batch_ms: _,
        log_path,
        ceiling,
        new_since_start: _,
        first_batch_plan,
    } = o;
    one(backfill);
    one(table);
    one(log_path);
    ceiling.iter_mut().flatten().for_each(one);
    first_batch_plan.iter_mut().flatten().for_each(one);
}

fn migration_summary(m: &mut MigrationSummary) {
    let MigrationSummary {
        script,
        mode,
        statements,
        locks,
        renames_inferred,
        blockers,
        command_output,
    } = m;
    one(script);
    one(mode);
    for StatementRun {
        file,
        line: _,
        sql,
        duration_ms: _,
        rows: _,
        attempts: _,
        ok: _,
    } in statements.iter_mut()
    {
        file.iter_mut().for_each(one);
        many(sql);
    }
    for LockHeld {
        relation,
        mode,
        held_ms: _,
    } in locks.iter_mut()
    {
        one(relation);
        one(mode);
    }
    for (a, b) in renames_inferred.iter_mut() {
        one(a);
        one(b);
    }
    for Blocker {
        pid: _,
        user,
        application_name,
        state,
        transaction_seconds,
        query,
    } in blockers.iter_mut()
    {
        for s in [user, application_name, state, transaction_seconds] {
            one(s);
        }
        many(query);
    }
    command_output.iter_mut().for_each(many);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(
            line("\u{1b}[2J\u{1b}[H\u{1b}[32m PASS\r\u{7}"),
            "\\x1b[2J\\x1b[H\\x1b[32m PASS\\r\\x07"
        );
        assert_eq!(
            line("a\u{202e}b\u{2066}c\u{9b}d"),
            "a\\u{202e}b\\u{2066}c\\u{9b}d"
        );
        assert_eq!(line("two\nlines"), "two\\nlines");
        assert_eq!(block("two\nlines\tok\r"), "two\nlines\tok\\r");
        assert_eq!(line("plain text, ünïcode ✅"), "plain text, ünïcode ✅");
    }
}
