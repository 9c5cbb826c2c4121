//! The `[schema]` table: which schema changes a migration is expected to make.
//!
//! ```toml
//! [schema]
//! undeclared = "fail"            # or "warn"; `diff = false` turns the schema diff off
//! hazards = "fail"               # NOT VALID constraints, INVALID indexes, disabled triggers,
//!                                # sequences behind their column: "fail" or "warn"
//! expect = [
//!   "add column public.plan_subscriptions.subscriber_id",
//!   "drop column accounts.is_active",      # the schema may be left out
//!   "alter view public.*",                 # `*` matches any run of characters
//!   "change grant *",                      # change = add, drop or alter
//! ]
//! ```

use std::fmt;

/// Kinds of catalog objects the schema diff knows (see `queries/schema_catalog.sql`).
pub const KINDS: &[&str] = &[
    "table",
    "column",
    "constraint",
    "index",
    "view",
    "function",
    "trigger",
    "type",
    "policy",
    "grant",
    "sequence",
];

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Add,
    Drop,
    Alter,
    /// Only through [rename] or a rename the migration script writes.
    Rename,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Add => "add",
            Verb::Drop => "drop",
            Verb::Alter => "alter",
            Verb::Rename => "rename",
        })
    }
}

/// One line of `expect`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedChange {
    /// As written, for the report.
    pub text: String,
    pub line: usize,
    /// `None`: any of add, drop, alter (`change`).
    pub verb: Option<Verb>,
    /// `None`: any kind (`*`).
    pub kind: Option<String>,
    /// Name pattern, `*` a wildcard; matched against the qualified name and, when it has no
    /// schema, against the name without its schema. A function is named with its argument
    /// types: `public.fee_of(numeric, integer)`.
    pub pattern: String,
}

impl ExpectedChange {
    /// Parse "verb kind name".
    pub fn parse(text: &str, line: usize) -> Result<ExpectedChange, String> {
        let mut words = text.trim().splitn(3, char::is_whitespace);
        let (Some(verb), Some(kind), Some(pattern)) = (words.next(), words.next(), words.next())
        else {
            return Err(format!(
                "`{text}` is not \"<verb> <kind> <name>\" (e.g. \"add column public.accounts.status\")"
            ));
        };
        let verb = match verb.to_ascii_lowercase().as_str() {
            "add" => Some(Verb::Add),
            "drop" => Some(Verb::Drop),
            "alter" => Some(Verb::Alter),
            "change" => None,
            other => {
                return Err(format!(
                    "`{other}` in `{text}` is not a verb: write add, drop, alter or change"
                ));
            }
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "*" => None,
            k if KINDS.contains(&k) => Some(k.to_string()),
            other => {
                return Err(format!(
                    "`{other}` in `{text}` is not a kind of object: write one of {} or *",
                    KINDS.join(", ")
                ));
            }
        };
        Ok(ExpectedChange {
            text: text.to_string(),
            line,
            verb,
            kind,
            pattern: pattern.trim().to_string(),
        })
    }

    /// Whether it declares `verb` on the object `kind` `name` (a rename is declared by the
    /// rename map, never here).
    pub fn covers(&self, verb: Verb, kind: &str, name: &str) -> bool {
        if verb == Verb::Rename {
            return false;
        }
        if self.verb.is_some_and(|v| v != verb) {
            return false;
        }
        if self.kind.as_deref().is_some_and(|k| k != kind) {
            return false;
        }
        glob(&self.pattern, name)
            || name
                .split_once('.')
                .is_some_and(|(_, unqualified)| glob(&self.pattern, unqualified))
    }

    /// Whether the pattern names one object (no wildcard, one verb, one kind): such a
    /// declaration that matches nothing means the migration did not do what it should.
    pub fn is_exact(&self) -> bool {
        self.verb.is_some() && self.kind.is_some() && !self.pattern.contains('*')
    }
}

/// `*` matches any run of characters (dots included); everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The validated `[schema]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaDiff {
    pub enabled: bool,
    /// An undeclared change fails the verdict (else it is a warning).
    pub undeclared_fails: bool,
    /// A constraint left NOT VALID, an INVALID index, a disabled trigger or a sequence behind
    /// its column fails the verdict even when declared (else it is a warning).
    pub hazards_fail: bool,
    pub expect: Vec<ExpectedChange>,
}

impl SchemaDiff {
    /// Whether one exact `add <kind> <name>` line names `table` (or its `column`): the
    /// migration creates it. The check's name may leave out the schema the line gives.
    pub fn declares_added(
        &self,
        kind: &str,
        table: &crate::sql::ident::Name,
        column: Option<&str>,
    ) -> bool {
        let mut want: Vec<&str> = Vec::new();
        if let Some(s) = &table.schema {
            want.push(s);
        }
        want.push(&table.name);
        if let Some(c) = column {
            want.push(c);
        }
        self.expect.iter().any(|e| {
            if !e.is_exact() || e.verb != Some(Verb::Add) || e.kind.as_deref() != Some(kind) {
                return false;
            }
            let parts = match crate::sql::ident::parse_name(&e.pattern) {
                Ok(p) => p,
                Err(_) => return false,
            };
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            parts == want
                || (table.schema.is_none()
                    && parts.len() == want.len() + 1
                    && parts[1..] == want[..])
        })
    }
}

impl Default for SchemaDiff {
    fn default() -> Self {
        SchemaDiff {
            enabled: true,
            undeclared_fails: true,
            hazards_fail: true,
            expect: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_runs_and_literals() {
        assert!(glob("public.*", "public.accounts.status"));
        assert!(glob("*_idx", "public.accounts_email_idx"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("*", ""));
        assert!(!glob("accounts", "accounts2"));
    }

    #[test]
    fn expectations_parse_and_cover() {
        let e = ExpectedChange::parse("add column accounts.status", 3).unwrap();
        assert!(e.covers(Verb::Add, "column", "public.accounts.status"));
        assert!(!e.covers(Verb::Drop, "column", "public.accounts.status"));
        assert!(!e.covers(Verb::Add, "index", "public.accounts.status"));
        assert!(e.is_exact());
        let any = ExpectedChange::parse("change * public.*", 4).unwrap();
        assert!(any.covers(Verb::Alter, "policy", "public.t.p"));
        assert!(!any.covers(Verb::Rename, "column", "public.t.c"));
        assert!(!any.is_exact());
        let err = ExpectedChange::parse("create column x", 1).unwrap_err();
        assert!(err.contains("write add, drop, alter or change"), "{err}");
        let err = ExpectedChange::parse("add colum x", 1).unwrap_err();
        assert!(err.contains("not a kind of object"), "{err}");
        assert!(ExpectedChange::parse("add column", 1).is_err());
        let f = ExpectedChange::parse("add function fee_of(numeric, integer)", 1).unwrap();
        assert!(f.covers(Verb::Add, "function", "public.fee_of(numeric, integer)"));
    }
}
