use crate::common::{TestDb, rt};
use migval::sql::Query;

/// The `-- Returns:` paragraph of a query's opening comment block: its line and the indented
/// lines that continue it.
fn returns_header(q: &Query) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in q.sql.lines().take_while(|l| l.starts_with("--")) {
        let text = line.trim_start_matches('-');
        if let Some(rest) = text.trim_start().strip_prefix("Returns:") {
            inside = true;
            out.push_str(rest);
        } else if inside && text.starts_with("  ") {
            out.push(' ');
            out.push_str(text);
        } else if inside {
            break;
        }
    }
    out
}

/// Where `word` appears in `text` as a whole identifier at or after `from`.
fn find_word(text: &str, word: &str, from: usize) -> Option<usize> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut at = from;
    while let Some(i) = text.get(at..)?.find(word) {
        let start = at + i;
        let end = start + word.len();
        let before = text[..start].chars().next_back().is_none_or(|c| !ident(c));
        let after = text[end..].chars().next().is_none_or(|c| !ident(c));
        if before && after {
            return Some(start);
        }
        at = end;
    }
    None
}

/// The header that names `q`'s columns: its own, or that of the query it says it returns
/// the same columns as (`Returns: same columns as backfill_run_open.sql.`).
fn columns_header(q: &Query, all: &[Query]) -> String {
    let header = returns_header(q);
    let same = header
        .trim()
        .strip_prefix("same columns as ")
        .map(|rest| rest.trim_end_matches('.'));
    match same.and_then(|name| all.iter().find(|o| o.name == name)) {
        Some(other) => returns_header(other),
        None => header,
    }
}

/// Prepare `q` and check that its header names the columns the server says it returns, in
/// their order: the Rust reads them by these names, so a header that drifts from the SQL
/// would mislead the DBA reviewing `queries/` and the next person reading a row.
async fn check(client: &tokio_postgres::Client, q: &Query, all: &[Query]) -> Result<(), String> {
    let stmt = match client.prepare(q.sql).await {
        Ok(s) => s,
        Err(e) => panic!(
            "queries/{} does not prepare: {}",
            q.name,
            migval::db::failure(&e, None)
        ),
    };
    assert!(
        q.sql.trim_start().starts_with("--"),
        "queries/{} must open with a comment block",
        q.name
    );
    let header = columns_header(q, all);
    assert!(
        !header.trim().is_empty(),
        "queries/{} has no `-- Returns:` line in its header",
        q.name
    );
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    if names.is_empty() {
        assert!(
            header.trim_start().starts_with("nothing"),
            "queries/{} returns no column, its header says: {header}",
            q.name
        );
    }
    let mut at = 0;
    for name in &names {
        match find_word(&header, name, at) {
            Some(i) => at = i + name.len(),
            None => {
                return Err(format!(
                    "queries/{} returns the columns {names:?}, but its `-- Returns:` header \
                     does not name `{name}` in that order: {header}",
                    q.name
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_catalogue_query_prepares() {
    rt().block_on(async {
        let db = TestDb::new("catalogue").await;
        let client = db.client().await;
        let all: Vec<Query> = migval::sql::ALL
            .iter()
            .chain(migval::sql::BACKFILL_STATE)
            .copied()
            .collect();
        let mut wrong = Vec::new();
        for q in migval::sql::ALL {
            wrong.extend(check(&client, q, &all).await.err());
        }
        // The statements on the backfill progress table prepare once the table exists.
        db.exec(migval::sql::BACKFILL_STATE_DDL.sql).await;
        for q in migval::sql::BACKFILL_STATE {
            wrong.extend(check(&client, q, &all).await.err());
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    });
}

#[test]
fn a_header_naming_columns_out_of_order_is_caught() {
    // The check above must be able to fail: a header listing two columns swapped.
    let header = " lsn text, snapshot_id text";
    assert!(find_word(header, "snapshot_id", 0).is_some());
    let after_lsn = find_word(header, "lsn", 0).unwrap() + "lsn".len();
    assert!(find_word(header, "snapshot_id", after_lsn).is_some());
    let after_snapshot = find_word(header, "snapshot_id", 0).unwrap() + "snapshot_id".len();
    assert_eq!(find_word(header, "lsn", after_snapshot), None);
    // Whole words only: `rows` is not found inside `rows_checked`.
    assert_eq!(find_word("rows_checked int8", "rows", 0), None);
    let q = Query {
        name: "x.sql",
        sql: "-- Purpose: x.\n-- Returns: a text,\n--          b int8.\n-- Binds: none.\nSELECT 1",
    };
    assert_eq!(returns_header(&q), " a text,           b int8.");
}
