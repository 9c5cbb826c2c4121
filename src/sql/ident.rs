//! Identifiers: the one quoting helper every generated statement goes through, parsing of
//! dotted names as PostgreSQL reads them, and the token-level renaming of identifiers inside
//! user-written SQL fragments (`where` filters, metric expressions, custom queries).

use std::fmt;

use super::lex::{Lexer, Tok};

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
/// case folding) becomes `quote(new)`. Tokens come from the one lexer ([`super::lex`]), so
/// string literals (`E'...'` too), dollar-quoted strings and comments are left alone:
/// `where status = 'fixed_cost'` is not touched. Text after a construct left open is copied as
/// it is (the server reports the error when the fragment runs).
pub fn rename_identifiers(sql: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return sql.to_string();
    }
    let lookup = |word: &str| pairs.iter().find(|(o, _)| o == word).map(|(_, n)| n);
    let mut out = String::with_capacity(sql.len() + 16);
    let mut lexer = Lexer::new(sql);
    // End of the text already copied: whitespace and comments between tokens go across as
    // they are.
    let mut done = 0;
    while let Ok(Some(t)) = lexer.next_token() {
        out.push_str(&sql[done..t.start]);
        let new = match &t.tok {
            Tok::Word(word) => lookup(&word.to_lowercase()),
            Tok::Quoted(inner) => lookup(inner),
            _ => None,
        };
        match new {
            Some(new) => out.push_str(&quote(new)),
            None => out.push_str(&sql[t.start..t.end]),
        }
        done = t.end;
    }
    out.push_str(&sql[done..]);
    out
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

    /// The rename once had its own lexer, which ended `E'it\'s fixed_cost'` at the `\'` and
    /// renamed the text after it; it also ended a nested comment at its first `*/`.
    #[test]
    fn rename_is_not_applied_inside_escape_strings_dollar_quotes_or_comments() {
        let pairs = vec![("fixed_cost".to_string(), "fixed_fee".to_string())];
        for (sql, renamed) in [
            (
                r"note = E'it\'s fixed_cost' AND fixed_cost > 0",
                r#"note = E'it\'s fixed_cost' AND "fixed_fee" > 0"#,
            ),
            (
                "note = $body$ fixed_cost $body$ AND fixed_cost > 0",
                "note = $body$ fixed_cost $body$ AND \"fixed_fee\" > 0",
            ),
            (
                "fixed_cost /* outer /* inner */ fixed_cost */ > 0 -- fixed_cost",
                "\"fixed_fee\" /* outer /* inner */ fixed_cost */ > 0 -- fixed_cost",
            ),
        ] {
            assert_eq!(rename_identifiers(sql, &pairs), renamed, "{sql}");
        }
    }
}
