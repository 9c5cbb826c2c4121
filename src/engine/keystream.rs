//! Capturing a keyed result (a grouped check's groups, a keyed custom query's rows) in key
//! order, so that a large one goes to a section ([`crate::section`]) instead of memory and
//! the compare merges it as it reads it ([`super::keyed::SectionSide`]).
//!
//! ```text
//!   run      SELECT q.c1, q.c2::text, ... FROM (probe) AS q(c1, c2, ...)
//!            ORDER BY q.c1 COLLATE "C" NULLS FIRST, ...        the key, in cmp_keys order
//!   each row, its key against the previous row's:
//!            greater -> each output's sink
//!            equal   -> the key does not identify rows: the probe fails (as a sorted table would)
//!            less    -> this key type orders differently on the server than migval compares
//!                       it: every sink goes back to memory and is sorted after, as before
//!   sink     a table in memory until it holds MIGVAL_SECTION_ROWS rows (default 100,000),
//!            then a section (1 MB buffer, hashed) in a spill file
//! ```
//!
//! Texts (and the values of types migval reads as text: dates, timestamps, uuids, ...) are
//! ordered `COLLATE "C"`, byte by byte like [`crate::model::cmp_keys`]; numbers by value, NULL
//! first. A small result stays a table, so small checks keep the in-memory path and snapshot
//! format 1; the order check makes the streamed path safe for any key type, since a key that
//! the server orders differently falls back to the in-memory sort instead of merging wrongly.

use std::cmp::Ordering;
use std::sync::OnceLock;

use futures_util::TryStreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::db::{self, decode::Decoder};
use crate::model::{Column, DbFailure, Table, Value};
use crate::section::{self, SectionWriter};

use super::capture::{Got, resolve_outputs, text_wrapped};
use super::plan::Output;

/// Rows a keyed result keeps in memory before it goes to a section.
const SECTION_ROWS: usize = 100_000;

/// [`SECTION_ROWS`], or `MIGVAL_SECTION_ROWS` when set to a number (tests set it low to take
/// the streamed path with few groups; 0 streams every keyed result).
pub fn section_rows() -> usize {
    static ROWS: OnceLock<usize> = OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("MIGVAL_SECTION_ROWS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(SECTION_ROWS)
    })
}

/// Whether a probe's outputs are keyed, so its result can be captured in key order.
pub(super) fn streams(outputs: &[Output]) -> bool {
    !outputs.is_empty()
        && outputs.iter().all(|o| match o {
            Output::Columns { key, .. } => !key.is_empty(),
            Output::Custom { key, .. } => !key.is_empty(),
        })
}

/// Where one output's rows go.
enum Sink {
    Memory(Table),
    // Boxed: the writer's buffers and state are several hundred bytes, a table a few dozen.
    Spill {
        writer: Box<SectionWriter>,
        columns: Vec<Column>,
        key_len: usize,
    },
}

struct Out {
    check: usize,
    /// The result columns of this output's table, in its order (key first).
    positions: Vec<usize>,
    /// `positions` is 0, 1, 2, ...: a row is pushed as it came.
    identity: bool,
    sink: Sink,
}

impl Out {
    fn push(&mut self, row: &[Value], cells: &mut Vec<Value>) -> Result<(), DbFailure> {
        match &mut self.sink {
            Sink::Memory(t) => {
                t.cells
                    .extend(self.positions.iter().map(|&p| row[p].clone()));
                Ok(())
            }
            Sink::Spill { writer, .. } => {
                let cells: &[Value] = if self.identity && row.len() == self.positions.len() {
                    row
                } else {
                    cells.clear();
                    cells.extend(self.positions.iter().map(|&p| row[p].clone()));
                    cells
                };
                writer
                    .push(cells)
                    .map_err(|e| DbFailure::message_only(e.to_string()))
            }
        }
    }

    /// A table that reached `limit` rows goes to a section (its rows are in key order).
    fn spill_if_over(&mut self, limit: usize) -> Result<(), DbFailure> {
        let Sink::Memory(t) = &self.sink else {
            return Ok(());
        };
        if t.len() < limit.max(1) {
            return Ok(());
        }
        let mut writer =
            SectionWriter::new(false).map_err(|e| DbFailure::message_only(e.to_string()))?;
        for i in 0..t.len() {
            writer
                .push(t.row(i))
                .map_err(|e| DbFailure::message_only(e.to_string()))?;
        }
        self.sink = Sink::Spill {
            writer: Box::new(writer),
            columns: t.columns.clone(),
            key_len: t.key_len,
        };
        Ok(())
    }

    /// Back to memory (the rows are not in migval's key order after all).
    fn back_to_memory(&mut self) -> Result<(), DbFailure> {
        let sink = std::mem::replace(&mut self.sink, Sink::Memory(Table::new(Vec::new(), 0)));
        self.sink = match sink {
            Sink::Spill {
                writer,
                columns,
                key_len,
            } => {
                let s = writer
                    .finish(columns, key_len)
                    .map_err(|e| DbFailure::message_only(e.to_string()))?;
                Sink::Memory(
                    section::to_table(&s, "(spilled result)")
                        .map_err(|e| DbFailure::message_only(e.to_string()))?,
                )
            }
            memory => memory,
        };
        Ok(())
    }

    fn finish(self) -> Result<(usize, Got), DbFailure> {
        let got = match self.sink {
            Sink::Memory(t) => Got::Table(t),
            Sink::Spill {
                writer,
                columns,
                key_len,
            } => Got::Section(
                writer
                    .finish(columns, key_len)
                    .map_err(|e| DbFailure::message_only(e.to_string()))?,
            ),
        };
        Ok((self.check, got))
    }
}

/// Run a keyed probe ordered by its key; each output becomes a table, or a section when it
/// is large (see the module comment). Outputs come back in `outputs` order.
pub(super) async fn capture(
    client: &Client,
    sql: &str,
    outputs: &[Output],
) -> Result<Vec<(usize, Got)>, DbFailure> {
    let fail = |e: tokio_postgres::Error| db::failure(&e, None);
    let inner = client.prepare(sql).await.map_err(fail)?;
    let (names, native) = super::capture::columns_of(&inner);
    let decoders: Vec<Decoder> = native.iter().map(|d| d.unwrap_or(Decoder::Text)).collect();
    let plans = resolve_outputs(&names, &decoders, outputs)?;
    // The outputs of one grouped scan share its group key; if they did not, the result is
    // taken unordered and sorted in memory.
    let key: Option<Vec<usize>> = plans
        .first()
        .map(|p| p.1.clone())
        .filter(|k| !k.is_empty() && plans.iter().all(|p| &p.1 == k));
    let (aliases, select) = text_wrapped(&native);
    let mut run = format!(
        "SELECT {}\nFROM ({sql}\n) AS q({})",
        select.join(", "),
        aliases.join(", ")
    );
    if let Some(k) = &key {
        let order: Vec<String> = k
            .iter()
            .map(|&p| match native[p] {
                Some(Decoder::Text) => format!("q.{} COLLATE \"C\" NULLS FIRST", aliases[p]),
                None => format!("q.{}::text COLLATE \"C\" NULLS FIRST", aliases[p]),
                Some(_) => format!("q.{} NULLS FIRST", aliases[p]),
            })
            .collect();
        run.push_str(&format!("\nORDER BY {}", order.join(", ")));
    }
    let stmt = client.prepare(&run).await.map_err(fail)?;

    let mut outs: Vec<Out> = plans
        .into_iter()
        .map(|(check, k, v, t)| {
            let positions: Vec<usize> = k.into_iter().chain(v).collect();
            Out {
                check,
                identity: positions.iter().enumerate().all(|(i, &p)| i == p),
                positions,
                sink: Sink::Memory(t),
            }
        })
        .collect();
    let key_pos = key.clone().unwrap_or_default();
    let mut ordered = key.is_some();
    let limit = section_rows();

    let params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let stream = client.query_raw(&stmt, params).await.map_err(fail)?;
    let mut stream = std::pin::pin!(stream);
    let mut row: Vec<Value> = Vec::with_capacity(decoders.len());
    let mut prev: Option<Vec<Value>> = None;
    let mut cells: Vec<Value> = Vec::new();
    while let Some(r) = stream.try_next().await.map_err(fail)? {
        row.clear();
        for (i, d) in decoders.iter().enumerate() {
            row.push(db::decode::decode(&r, i, *d).map_err(fail)?);
        }
        if ordered {
            if let Some(p) = &prev {
                match cmp_at(p, &row, &key_pos) {
                    Ordering::Less => {}
                    Ordering::Equal => {
                        return Err(DbFailure::message_only(format!(
                            "the key columns do not identify rows uniquely: key ({}) appears \
                             more than once; declare more key columns",
                            key_pos
                                .iter()
                                .map(|&k| row[k].to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                    Ordering::Greater => {
                        crate::trace!(
                            "keyed result not in migval's key order (a key type the server \
                             orders differently): sorted in memory"
                        );
                        ordered = false;
                        for o in &mut outs {
                            o.back_to_memory()?;
                        }
                    }
                }
            }
            let p = prev.get_or_insert_with(Vec::new);
            p.clear();
            p.extend(key_pos.iter().map(|&k| row[k].clone()));
        }
        for o in &mut outs {
            o.push(&row, &mut cells)?;
            if ordered {
                o.spill_if_over(limit)?;
            }
        }
    }
    outs.into_iter().map(Out::finish).collect()
}

/// [`crate::model::cmp_keys`] of the key cells at `pos` of `row` against the previous key.
fn cmp_at(prev: &[Value], row: &[Value], pos: &[usize]) -> Ordering {
    for (x, &p) in prev.iter().zip(pos) {
        match x.key_cmp(&row[p]) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    Ordering::Equal
}
