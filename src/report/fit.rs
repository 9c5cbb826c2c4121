//! Fitting the text report's tables and lines to a width (the terminal's, or `--width`).
//!
//! ```text
//!   natural table fits?            -> as is
//!   else wrap the wide columns     -> the widest first, down to what fits; the kept columns
//!        (never the check name)       (status, check name) keep their width
//!   still too wide?                -> one block per row, psql's expanded mode:
//!                                       -[ 1 per account ]-----
//!                                       status     | FAIL
//!                                       baseline   | 40 groups
//! ```
//!
//! Without a width (not a terminal), tables keep their natural width.

use tabled::builder::Builder;
use tabled::grid::util::string::get_text_width;
use tabled::settings::Style;
use tabled::settings::width::Wrap;

/// Narrowest a wrapped column is made before switching to blocks.
const MIN_COLUMN: usize = 16;

/// A psql-style table of `rows` (the first is the header), indented by `indent` spaces, fitted
/// to `width` when given. Columns listed in `keep` are never wrapped.
pub fn table(
    rows: Vec<Vec<String>>,
    width: Option<usize>,
    indent: usize,
    keep: &[usize],
) -> String {
    let natural = build(&rows);
    let Some(width) = width else {
        return indented(&natural, indent);
    };
    let room = width.saturating_sub(indent);
    if widest_line(&natural) <= room {
        return indented(&natural, indent);
    }
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| get_text_width(s)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let overhead = widest_line(&natural).saturating_sub(widths.iter().sum());
    let kept: usize = (0..columns)
        .filter(|c| keep.contains(c))
        .map(|c| widths[c])
        .sum();
    let shrinkable: Vec<usize> = (0..columns).filter(|c| !keep.contains(c)).collect();
    let budget = room.saturating_sub(overhead + kept);
    if let Some(cap) = water_level(
        &shrinkable.iter().map(|&c| widths[c]).collect::<Vec<_>>(),
        budget,
    ) {
        let wrapped: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(c, s)| {
                        if !keep.contains(&c) && get_text_width(s) > cap {
                            Wrap::wrap(s, cap, true)
                        } else {
                            s.clone()
                        }
                    })
                    .collect()
            })
            .collect();
        let t = build(&wrapped);
        if widest_line(&t) <= room {
            return indented(&t, indent);
        }
    }
    expanded(&rows, room, indent, keep)
}

/// The largest cap such that the columns, each cut to at most `cap` (and no narrower than
/// [`MIN_COLUMN`] where it was wider), fit in `budget`; `None` when even that does not fit.
fn water_level(widths: &[usize], budget: usize) -> Option<usize> {
    let need = |cap: usize| -> usize { widths.iter().map(|&w| w.min(cap)).sum() };
    let widest = widths.iter().copied().max().unwrap_or(0);
    if need(widest) <= budget {
        return Some(widest);
    }
    (MIN_COLUMN..widest).rev().find(|&cap| need(cap) <= budget)
}

/// psql's expanded mode: one block per row, `header | value` lines, values wrapped to fit
/// (but those of the `keep` columns).
fn expanded(rows: &[Vec<String>], room: usize, indent: usize, keep: &[usize]) -> String {
    let Some((header, body)) = rows.split_first() else {
        return String::new();
    };
    let label = header.iter().map(|h| get_text_width(h)).max().unwrap_or(0);
    let value_room = room.saturating_sub(label + 3).max(MIN_COLUMN);
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, row) in body.iter().enumerate() {
        let title = format!("-[ {} ]", i + 1);
        let rule = room.saturating_sub(get_text_width(&title));
        out.push_str(&format!("{pad}{title}{}\n", "-".repeat(rule)));
        for (c, (h, v)) in header.iter().zip(row).enumerate() {
            let wrapped = if get_text_width(v) > value_room && !keep.contains(&c) {
                Wrap::wrap(v, value_room, true)
            } else {
                v.clone()
            };
            for (n, line) in wrapped.lines().enumerate() {
                let name = if n == 0 { h.as_str() } else { "" };
                let gap = label.saturating_sub(get_text_width(name));
                out.push_str(&format!("{pad}{name}{} | {line}\n", " ".repeat(gap)));
            }
            if v.is_empty() {
                let gap = label.saturating_sub(get_text_width(h));
                out.push_str(&format!("{pad}{h}{} |\n", " ".repeat(gap)));
            }
        }
    }
    out
}

/// Word-wrap one line of text to `width` (continuation lines indented by `hang` spaces);
/// unchanged without a width.
pub fn line(text: &str, width: Option<usize>, hang: usize) -> String {
    match width {
        Some(w) if get_text_width(text) > w => {
            let first_room = w;
            let wrapped = Wrap::wrap(text, first_room, true);
            let mut lines = wrapped.lines();
            let mut out = lines.next().unwrap_or("").trim_end().to_string();
            let rest: String = lines.map(str::trim).collect::<Vec<_>>().join(" ");
            if !rest.trim().is_empty() {
                let room = w.saturating_sub(hang).max(MIN_COLUMN);
                for l in Wrap::wrap(rest.trim(), room, true).lines() {
                    out.push('\n');
                    out.push_str(&" ".repeat(hang));
                    out.push_str(l.trim_end());
                }
            }
            out
        }
        _ => text.to_string(),
    }
}

fn build(rows: &[Vec<String>]) -> String {
    let mut b = Builder::default();
    for r in rows {
        b.push_record(r.iter().cloned());
    }
    let mut t = b.build();
    t.with(Style::psql());
    t.to_string()
}

fn widest_line(text: &str) -> usize {
    text.lines().map(get_text_width).max().unwrap_or(0)
}

fn indented(table: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for l in table.lines() {
        out.push_str(&pad);
        out.push_str(l);
        out.push('\n');
    }
    out
}
