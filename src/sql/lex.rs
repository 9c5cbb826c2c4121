//! Whether a user's SQL fragment stays inside its slot once embedded in generated SQL: a
//! lexical scan with PostgreSQL's rules (string literals with `''` and `E'\''`, quoted
//! identifiers, dollar quotes, `--` line comments, nested `/* */` block comments). A fragment
//! that leaves a comment, literal or quoted identifier open would swallow the rest of the fused
//! query (the closing parenthesis, the other checks' metrics); one with a stray `*/` would close
//! more than it opened. Such fragments are refused during validation, naming the position.
//!
//! ```text
//!   "status = 'a' /* note"          -> `/*` at character 14 is never closed
//!   "x /* a /* b */ c */ > 0"       -> fine: PostgreSQL nests block comments
//!   "x > 0 */"                      -> `*/` at character 7 closes a comment never opened
//! ```
//! A `--` comment needs no check: every fragment is embedded followed by a newline
//! (`engine::plan::embed`), where the comment ends.

/// Why `fragment` would not stay inside its slot, or `None` when it does.
pub fn escapes(fragment: &str) -> Option<String> {
    let b = fragment.as_bytes();
    // Character (not byte) positions, 1-based, as an editor shows them.
    let at = |i: usize| fragment[..i].chars().count() + 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'\'' => {
                let escapes = i > 0
                    && b[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !is_ident_byte(b[i - 2]));
                match end_of_literal(b, i, escapes) {
                    Some(end) => i = end,
                    None => {
                        return Some(format!(
                            "the string literal opened at character {} is never closed (a `'` \
                             inside a literal is written `''`)",
                            at(i)
                        ));
                    }
                }
            }
            b'"' => match end_of_literal(b, i, false) {
                Some(end) => i = end,
                None => {
                    return Some(format!(
                        "the quoted identifier opened at character {} is never closed",
                        at(i)
                    ));
                }
            },
            b'-' if next == Some(b'-') => {
                i = fragment[i..].find('\n').map_or(b.len(), |p| i + p + 1);
            }
            b'/' if next == Some(b'*') => {
                let mut depth = 1usize;
                let mut j = i + 2;
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                if depth > 0 {
                    return Some(format!(
                        "the block comment `/*` opened at character {} is never closed \
                         (PostgreSQL nests block comments: each `/*` needs its own `*/`)",
                        at(i)
                    ));
                }
                i = j;
            }
            b'*' if next == Some(b'/') => {
                return Some(format!(
                    "`*/` at character {} closes a block comment that was never opened",
                    at(i)
                ));
            }
            b'$' if i == 0 || !is_ident_byte(b[i - 1]) => match dollar_tag(fragment, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    match fragment[body..].find(tag) {
                        Some(p) => i = body + p + tag.len(),
                        None => {
                            return Some(format!(
                                "the dollar-quoted string {tag} opened at character {} is never \
                                 closed",
                                at(i)
                            ));
                        }
                    }
                }
                None => i += 1,
            },
            _ if is_ident_byte(c) => {
                // A whole word at once, so that the `$` inside `a$b` is not a dollar quote.
                while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'$') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The end (one past the closing quote) of the literal opening at `start`, with `''` doubling,
/// and backslash escapes in an `E'...'` string.
fn end_of_literal(b: &[u8], start: usize, backslash: bool) -> Option<usize> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// `$tag$` (or `$$`) starting at `i`, if any.
fn dollar_tag(sql: &str, i: usize) -> Option<&str> {
    let rest = &sql[i + 1..];
    let close = rest.find('$')?;
    let tag = &rest[..close];
    (tag.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !tag.starts_with(|c: char| c.is_ascii_digit()))
    .then(|| &sql[i..i + close + 2])
}

#[cfg(test)]
mod tests {
    use super::escapes;

    #[test]
    fn balanced_fragments_pass() {
        for ok in [
            "status = 'active'",
            "status = 'it''s' -- note",
            "x /* a /* b */ c */ > 0",
            "note = '/* not a comment'",
            "\"odd */ name\" > 0",
            "body = $q$ /* $q$",
            "price > $1 AND a$b = 2",
            "s = E'a\\'b /*'",
            "a -- trailing /* comment",
            "a -- one\n AND b /* two */",
        ] {
            assert_eq!(escapes(ok), None, "{ok}");
        }
    }

    #[test]
    fn fragments_that_would_swallow_the_query_are_named() {
        for (bad, says) in [
            (
                "status = 'a' /* note",
                "opened at character 14 is never closed",
            ),
            ("x /* a /* b */ c", "opened at character 3"),
            ("x > 0 */", "`*/` at character 7"),
            ("x /* a */ */", "`*/` at character 11"),
            ("name = 'abc", "string literal opened at character 8"),
            ("\"abc = 1", "quoted identifier"),
            ("b = $x$ abc", "dollar-quoted string $x$"),
            ("s = E'a\\' /*", "string literal"),
        ] {
            let got = escapes(bad).unwrap_or_default();
            assert!(got.contains(says), "{bad}: {got}");
        }
    }
}
