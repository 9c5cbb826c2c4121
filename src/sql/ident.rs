//! Identifiers: the one quoting helper every generated statement goes through, parsing of
//! dotted names as PostgreSQL reads them, and the token-level renaming of identifiers inside
//! user-written SQL fragments (`where` filters, metric expressions, custom queries).

use std::fmt;

/// A possibly schema-qualified relation name, already case-folded as PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn from_parts(parts: &[String]) -> Name {
        match parts {
            [schema, name] => Name {
                schema: Some(schema.clone()),
                name: name.clone(),
            },
            [.., name] => Name {
                schema: None,
                name: name.clone(),
            },
            [] => Name {
                schema: None,
                name: String::new(),
            },
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Quote an identifier for SQL: always double-quoted, embedded quotes doubled. The only way a
/// name enters generated SQL.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `schema.table` quoted part by part.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote(schema), quote(name))
}

/// Quote a string literal (used only for server-generated tokens such as a snapshot id that
/// PostgreSQL does not accept as a bind parameter).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Split `a.b."C d"` into parts: unquoted parts are folded to lower case, quoted ones kept.
pub fn parse_name(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("unterminated quoted identifier".into()),
                }
            }
            if part.is_empty() {
                return Err("empty quoted identifier".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    part.push(c.to_ascii_lowercase());
                    chars.next();
                } else {
                    break;
                }
            }
            if part.is_empty() || part.starts_with(|c: char| c.is_ascii_digit() || c == '$') {
                return Err(
                    "not a valid name (quote it with double quotes if it is unusual)".into(),
                );
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected `{c}` in a name")),
        }
    }
}

/// Rewrite identifiers in a SQL fragment: every identifier token equal to an `old` name (after
/// case folding) becomes `quote(new)`. String literals, dollar-quoted strings and comments are
/// left alone, so `where status = 'fixed_cost'` is not touched.
pub fn rename_identifiers(sql: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return sql.to_string();
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    let lookup = |word: &str| pairs.iter().find(|(o, _)| o == word).map(|(_, n)| n);
    while i < b.len() {
        let c = b[i];
        // Literal-like regions copied verbatim.
        let end = if c == b'\'' {
            Some(skip_quoted(b, i, b'\''))
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            Some(sql[i..].find('\n').map_or(b.len(), |p| i + p))
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            Some(sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2))
        } else if c == b'$' {
            dollar_tag(sql, i).map(|tag| {
                let body = i + tag.len();
                sql[body..]
                    .find(tag)
                    .map_or(b.len(), |p| body + p + tag.len())
            })
        } else {
            None
        };
        if let Some(end) = end {
            out.push_str(&sql[i..end]);
            i = end;
            continue;
        }
        if c == b'"' {
            let end = skip_quoted(b, i, b'"');
            let inner = sql[i + 1..end.saturating_sub(1).max(i + 1)].replace("\"\"", "\"");
            match lookup(&inner) {
                Some(new) => out.push_str(&quote(new)),
                None => out.push_str(&sql[i..end]),
            }
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            let word = &sql[start..i];
            // Skip function-call-like words? No: a column can be followed by `(` only in odd
            // cases; keep it simple and rename by name.
            match lookup(&word.to_lowercase()) {
                Some(new) => out.push_str(&quote(new)),
                None => out.push_str(word),
            }
            continue;
        }
        // Copy one UTF-8 character.
        let ch_len = sql[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&sql[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn skip_quoted(b: &[u8], start: usize, q: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// `$tag$` starting at `i`, if any.
fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let rest = &sql[i + 1..];
    let close = rest.find('$')?;
    let tag = &rest[..close];
    if tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !tag.starts_with(|c: char| c.is_ascii_digit())
    {
        Some(&sql[i..i + close + 2])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn names_fold_unless_quoted() {
        assert_eq!(
            parse_name("Public.Client_Products").unwrap(),
            vec!["public", "client_products"]
        );
        assert_eq!(parse_name("\"My.Table\".x").unwrap(), vec!["My.Table", "x"]);
        assert!(parse_name("a b").is_err());
        assert!(parse_name("1abc").is_err());
    }

    #[test]
    fn rename_skips_literals_and_comments() {
        let pairs = vec![("fixed_cost".to_string(), "fixed_fee".to_string())];
        let sql = "fixed_cost > 0 AND note <> 'fixed_cost' -- fixed_cost\nAND \"fixed_cost\" IS NOT NULL AND x = $$fixed_cost$$";
        assert_eq!(
            rename_identifiers(sql, &pairs),
            "\"fixed_fee\" > 0 AND note <> 'fixed_cost' -- fixed_cost\nAND \"fixed_fee\" IS NOT NULL AND x = $$fixed_cost$$"
        );
        assert_eq!(
            rename_identifiers("FIXED_COST+1", &pairs),
            "\"fixed_fee\"+1"
        );
        assert_eq!(rename_identifiers("my_fixed_cost", &pairs), "my_fixed_cost");
    }
}
