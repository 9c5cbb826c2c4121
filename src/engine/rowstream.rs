//! Capturing a `rows` check as a stream: the server sends `(key..., fingerprint[, allowed])`
//! in key order, each row goes straight into a section ([`crate::section`]), nothing of the
//! table is held in memory.
//!
//! ```text
//!   prepare  SELECT k1, k2, fp[, allowed] FROM t           -> the key columns' types
//!   run      SELECT q.c1, q.c2::text, q.c3 ... FROM (that) AS q(c1, c2, c3 ...)
//!            ORDER BY q.c1 COLLATE "C", q.c2                text keys in byte order
//!   each row: NULL key?  key <= previous key?  -> the check fails (not unique / out of order)
//!             else -> SectionWriter (1 MB buffer, hashed) -> spill file
//! ```
//!
//! Both sides of a comparison are merged in [`crate::model::cmp_keys`] order, which compares
//! texts byte by byte: text keys are ordered `COLLATE "C"` on the server (whatever the
//! column's collation), integers and numerics by value, uuids by their bytes (the order of
//! their text). Every row is checked against the previous one, so a key type whose server
//! order differs from that (a date before year 1000, a `citext`) fails the check with a clear
//! message instead of merging wrongly, and a duplicate key is found on the way.

use futures_util::TryStreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::db::{self, decode::Decoder};
use crate::model::{Column, DbFailure, Kind, Section, Value, cmp_keys};
use crate::section::SectionWriter;

/// The column of a baseline that keeps row values (`keep = "values"`): `row_to_json` text.
pub const VALUES: &str = "row_values";

/// Stream one rows check into a section.
pub(super) async fn capture(
    client: &Client,
    sql: &str,
    keys: &[String],
) -> Result<Section, DbFailure> {
    let fail = |e: tokio_postgres::Error| db::failure(&e, None);
    let described = client.prepare(sql).await.map_err(fail)?;
    let types: Vec<Type> = described
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let names: Vec<String> = described
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let k = keys.len();
    if types.len() <= k {
        return Err(plain(format!(
            "internal: the rows probe returns {} columns for {k} key columns",
            types.len()
        )));
    }
    let native: Vec<Option<Decoder>> = types.iter().map(Decoder::for_type).collect();
    let (aliases, select) = super::capture::text_wrapped(&native);
    let order: Vec<String> = aliases[..k]
        .iter()
        .zip(&types)
        .map(|(a, t)| {
            if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(t) {
                format!("q.{a} COLLATE \"C\"")
            } else {
                format!("q.{a}")
            }
        })
        .collect();
    let run = format!(
        "SELECT {}\nFROM ({sql}\n) AS q({})\nORDER BY {}",
        select.join(", "),
        aliases.join(", "),
        order.join(", ")
    );
    let decoders: Vec<Decoder> = native.iter().map(|d| d.unwrap_or(Decoder::Text)).collect();
    let columns: Vec<Column> = keys
        .iter()
        .zip(&decoders)
        .map(|(label, d)| d.column(label))
        .chain(
            names[k..]
                .iter()
                .zip(&decoders[k..])
                .map(|(n, d)| d.column(n)),
        )
        .collect();
    if columns[k].kind != Kind::Int {
        return Err(plain(format!(
            "internal: the fingerprint is of type {}, not bigint",
            types[k]
        )));
    }

    let stmt = client.prepare(&run).await.map_err(fail)?;
    let params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let stream = client.query_raw(&stmt, params).await.map_err(fail)?;
    let mut stream = std::pin::pin!(stream);
    let keeps_values = columns.iter().any(|c| c.name == VALUES);
    let mut out = SectionWriter::new(keeps_values).map_err(|e| plain(e.to_string()))?;
    let mut row: Vec<Value> = Vec::with_capacity(decoders.len());
    let mut prev: Vec<Value> = Vec::with_capacity(decoders.len());
    while let Some(r) = stream.try_next().await.map_err(fail)? {
        row.clear();
        for (i, d) in decoders.iter().enumerate() {
            row.push(db::decode::decode(&r, i, *d).map_err(fail)?);
        }
        if row[..k].iter().any(Value::is_null) {
            return Err(plain(
                "a key column has NULLs: a rows key must identify every row (use the primary \
                 key or a unique NOT NULL column)"
                    .into(),
            ));
        }
        if out.rows() > 0 {
            match cmp_keys(&prev[..k], &row[..k]) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(plain(format!(
                        "the key columns do not identify rows uniquely: key ({}) appears more \
                         than once; declare more key columns",
                        key_text(&row[..k])
                    )));
                }
                std::cmp::Ordering::Greater => {
                    return Err(plain(format!(
                        "the server returned key ({}) after ({}): the key's type orders \
                         differently on the server than migval compares it (by value for \
                         numbers, byte by byte for text); use a key of integer, numeric, uuid \
                         or text type",
                        key_text(&row[..k]),
                        key_text(&prev[..k])
                    )));
                }
            }
        }
        out.push(&row).map_err(|e| plain(e.to_string()))?;
        std::mem::swap(&mut row, &mut prev);
    }
    out.finish(columns, k).map_err(|e| plain(e.to_string()))
}

fn key_text(key: &[Value]) -> String {
    key.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn plain(message: String) -> DbFailure {
    DbFailure {
        message,
        sqlstate: None,
        detail: None,
        hint: None,
        server_context: None,
        context: None,
    }
}
