//! Passwords written into command lines and their output, masked before anything echoes them:
//! `migrate --commit -- psql "postgres://u:secret@h/db" -c ...` must not put `secret` on the
//! terminal, in the report's `script` field or in the saved artifacts.
//!
//! Two spellings are recognised anywhere in a string:
//!
//! ```text
//!   scheme://user:PASSWORD@host/...       URL userinfo (up to the last `@` of the word, so a
//!                                         password with a raw `@`, `:` or `/` is covered)
//!   password=PASSWORD  password = 'PA SS'  key=value, quoted ('...' or "...", backslash
//!   PGPASSWORD=PASSWORD  ?password=...     escapes) or not (up to the next blank); any key
//!                                         ending in `password`, any case
//! ```
//!
//! Masking errs on the side of hiding too much: a word that looks like a URL with credentials
//! has everything between the user's `:` and its last `@` replaced by `***`.

const MASK: &str = "***";

/// The words of a command line, masked and joined by spaces (for display only).
pub fn command_line(argv: &[String]) -> String {
    argv.iter().map(|a| text(a)).collect::<Vec<_>>().join(" ")
}

/// `s` with every password it spells masked.
pub fn text(s: &str) -> String {
    key_values(&urls(s))
}

/// Mask `scheme://user:pass@` userinfo.
fn urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The word: up to a blank or a quote (a URL inside a quoted shell string).
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let word = &tail[..end];
        match (word.rfind('@'), word.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&word[..=colon]);
                out.push_str(MASK);
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Mask the value of every `...password = value`.
fn key_values(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password") {
        let key_end = search + found + "password".len();
        search = key_end;
        // `=` after optional blanks.
        let mut i = key_end;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i += 1;
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        let value_start = i;
        let value_end = match bytes.get(i) {
            Some(&q @ (b'\'' | b'"')) => {
                // Quoted: up to the closing quote (a backslash escapes the next character).
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != q {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                (j + 1).min(bytes.len())
            }
            _ => {
                let mut j = i;
                while j < bytes.len() && !bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                j
            }
        };
        if value_end == value_start {
            continue;
        }
        // Byte offsets are at ASCII characters (blanks, quotes, `=`) or the ends: char
        // boundaries.
        out.push_str(&s[copied..value_start]);
        out.push_str(MASK);
        copied = value_end;
        search = value_end;
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "p@ss:w/rd%?x";

    #[test]
    fn url_passwords_are_masked_even_with_raw_special_characters() {
        let raw = format!("postgres://u:{SECRET}@h:5432/db?sslmode=require");
        assert_eq!(text(&raw), "postgres://u:***@h:5432/db?sslmode=require");
        let encoded = "postgresql://app:p%40ss%3Aw%2Frd%25%3Fx@db.example.com/shop";
        assert_eq!(text(encoded), "postgresql://app:***@db.example.com/shop");
        assert_eq!(
            text("psql 'postgres://:s3cret@h/db' -c 'select 1'"),
            "psql 'postgres://:***@h/db' -c 'select 1'"
        );
        // No password: unchanged.
        assert_eq!(text("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            text("https://example.com:8080/x"),
            "https://example.com:8080/x"
        );
    }

    #[test]
    fn key_value_passwords_are_masked_quoted_or_not() {
        assert_eq!(
            text(&format!("host=h password={SECRET} dbname=d")),
            "host=h password=*** dbname=d"
        );
        assert_eq!(
            text(r"host=h password = 'a b\' c' dbname=d"),
            "host=h password = *** dbname=d"
        );
        assert_eq!(text(r#"PGPASSWORD="x y" psql"#), "PGPASSWORD=*** psql");
        assert_eq!(
            text(&format!("postgres://h/db?user=u&password={SECRET}")),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(text("no password here"), "no password here");
        assert_eq!(text("password="), "password=");
    }

    #[test]
    fn command_lines_are_masked_word_by_word() {
        let argv: Vec<String> = [
            "psql",
            &format!("postgres://u:{SECRET}@h/db"),
            "-c",
            "select 1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let shown = command_line(&argv);
        assert!(!shown.contains("w/rd"), "{shown}");
        assert_eq!(shown, "psql postgres://u:***@h/db -c select 1");
    }
}
