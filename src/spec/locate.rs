//! Where a TOML error is: the file's line, the `[[check]]` it falls in (by its name) and the
//! dotted key, so that a wrong value type reads like every other spec error:
//! `checks.toml:9: check `revenue`, key `group_by`: invalid type: string "a", expected a sequence`.

use super::{LineIndex, SpecError};

/// What to write instead, for serde's "did not match any variant" messages.
const SHAPES: &[(&str, &str)] = &[
    (
        "RawSided",
        "write a string, or { before = \"...\", after = \"...\" }",
    ),
    (
        "RawGroupKey",
        "write a column name, or { as = \"label\", expr = \"...\" }, or { as = \"label\", before = \"...\", after = \"...\" }",
    ),
    (
        "RawMetric",
        "write \"sum(col)\", or { metric = \"sum(col)\", after = \"...\", tolerance = ..., expect = ... }",
    ),
    (
        "RawTolerance",
        "write \"exact\", { abs = \"0.01\" } or { rel = \"0.1%\" } (with scope = \"group\" | \"total\" | \"both\")",
    ),
    (
        "RawExpect",
        "write \"unchanged\", \"zero\", \"may_change\", { equals = \"N\" }, { changes_by = \"N\" } or { between = [\"A\", \"B\"] }",
    ),
    ("RawNumber", "write the number as a string, e.g. \"0.01\""),
];

pub(super) fn toml_error(
    file: &str,
    text: &str,
    lines: &LineIndex,
    e: &toml::de::Error,
) -> SpecError {
    let mut message = e.message().trim().to_string();
    for (ty, shape) in SHAPES {
        if message.contains(&format!("untagged enum {ty}")) {
            message = format!("this value has the wrong shape: {shape}");
        }
    }
    let Some(span) = e.span() else {
        return SpecError {
            file: file.to_string(),
            line: 0,
            place: String::new(),
            message,
        };
    };
    let line = lines.line(span.start);
    let (check, key) = place(text, span.start);
    let place = match (check, key.is_empty()) {
        (Some(c), false) => format!("check `{c}`, key `{key}`: "),
        (Some(c), true) => format!("check `{c}`: "),
        (None, false) => format!("key `{key}`: "),
        (None, true) => String::new(),
    };
    SpecError {
        file: file.to_string(),
        line,
        place,
        message,
    }
}

/// The check name (when `offset` is inside a `[[check]]`) and the dotted key path there.
fn place(text: &str, offset: usize) -> (Option<String>, String) {
    let offset = offset.min(text.len());
    // The table header that `offset` falls under.
    let mut header_at = 0;
    let mut header = "";
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        let t = line.trim();
        if t.starts_with('[') && !t.contains('=') {
            header_at = pos + line.len();
            header = t;
        }
        pos += line.len();
    }
    let in_check = header.starts_with("[[check]]");
    let section_end = text[offset..]
        .find("\n[")
        .map_or(text.len(), |i| offset + i);
    let check = in_check
        .then(|| check_name(text.get(header_at..section_end).unwrap_or("")))
        .flatten();
    let key = key_path(text.get(header_at..offset).unwrap_or(""));
    let key = if in_check || header.is_empty() {
        key
    } else {
        let table = header.trim_matches(|c| c == '[' || c == ']').trim();
        if key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{key}")
        }
    };
    (check, key)
}

/// `name = "..."` at the top level of a check's section.
fn check_name(section: &str) -> Option<String> {
    section.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

/// The dotted path of the key whose value is being written at the end of `prefix` (the text
/// of the section up to the error): `tolerance.abs` inside `tolerance = { abs = ... }`.
fn key_path(prefix: &str) -> String {
    let mut stack: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut word = String::new();
    let mut arrays = 0usize;
    let mut chars = prefix.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                // Skip a string (basic strings honour backslash escapes).
                while let Some(d) = chars.next() {
                    if c == '"' && d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
                word.clear();
            }
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                word.clear();
            }
            '=' => {
                if !word.trim().is_empty() {
                    current = Some(word.trim().to_string());
                }
                word.clear();
            }
            '{' => {
                stack.push(current.take().unwrap_or_default());
                word.clear();
            }
            '}' => {
                current = stack.pop();
                word.clear();
            }
            '[' => arrays += 1,
            ']' => arrays = arrays.saturating_sub(1),
            '\n' if stack.is_empty() && arrays == 0 => {
                current = None;
                word.clear();
            }
            ',' => word.clear(),
            c if c.is_alphanumeric() || c == '_' || c == '-' => word.push(c),
            _ => {
                if !word.is_empty() && !word.ends_with(' ') {
                    word.push(' ');
                }
            }
        }
    }
    let mut parts: Vec<String> = stack.into_iter().filter(|s| !s.is_empty()).collect();
    if let Some(c) = current {
        parts.push(c);
    }
    parts.join(".")
}

/// The line of every key of a spec, so that a validation error points at the key it is about
/// (`checks.toml:9: check `revenue`, key `tolerance`: ...`), not at its `[[check]]` header.
/// Keys of a `[[check]]` entry are found by the entry's header line, the top-level tables'
/// (`settings.parallel`, `schema.expect`) under 0. Built from toml's spanned document in one
/// pass; a key not found (a computed path) leaves the error on the line it was given.
pub(super) struct KeyLines(std::collections::HashMap<(usize, String), usize>);

impl KeyLines {
    pub(super) fn new(text: &str, lines: &LineIndex) -> KeyLines {
        use toml::de::{DeTable, DeValue};
        fn walk(
            table: &DeTable<'_>,
            prefix: &str,
            entry: usize,
            lines: &LineIndex,
            out: &mut std::collections::HashMap<(usize, String), usize>,
        ) {
            for (k, v) in table {
                let key = format!("{prefix}{}", k.get_ref());
                if let DeValue::Table(t) = v.get_ref() {
                    walk(t, &format!("{key}."), entry, lines, out);
                }
                out.insert((entry, key), lines.line(k.span().start));
            }
        }
        let mut out = std::collections::HashMap::new();
        let Ok(doc) = DeTable::parse(text) else {
            return KeyLines(out);
        };
        for (k, v) in doc.get_ref() {
            match (k.get_ref().as_ref(), v.get_ref()) {
                ("check", DeValue::Array(checks)) => {
                    for c in checks {
                        if let DeValue::Table(t) = c.get_ref() {
                            walk(t, "", lines.line(c.span().start), lines, &mut out);
                        }
                    }
                }
                (name, DeValue::Table(t)) => walk(t, &format!("{name}."), 0, lines, &mut out),
                _ => {}
            }
        }
        KeyLines(out)
    }

    /// The line of `key` in the `[[check]]` whose header is on `entry` (0: top level).
    pub(super) fn line(&self, entry: usize, key: &str) -> Option<usize> {
        self.0.get(&(entry, key.to_string())).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_follow_inline_tables_and_arrays() {
        assert_eq!(key_path("name = \"x\"\ngroup_by = "), "group_by");
        assert_eq!(key_path("tolerance = { abs = "), "tolerance.abs");
        assert_eq!(key_path("metrics = [\n  \"a\",\n  "), "metrics");
        assert_eq!(
            key_path("metrics = [{ metric = \"sum(a)\", tolerance = { rel = "),
            "metrics.tolerance.rel"
        );
        assert_eq!(key_path("a = 1\n"), "");
    }
}
