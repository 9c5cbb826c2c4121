//! Migration scripts, read before anything runs: splitting a `.sql` file into statements the
//! way PostgreSQL's lexer (and psql) would, classifying each one (transaction control, commands
//! that cannot run inside a transaction block), taking off the file's own `BEGIN` ... `COMMIT`
//! wrapper (any other transaction control is refused), and reading the table/column renames the
//! script performs. Nothing here touches a database; `migval migrate` uses it to decide whether a file
//! can be rehearsed inside one transaction and rolled back.
//!
//! Limits of the heuristics, on purpose:
//! - Plain `'...'` strings are read with `standard_conforming_strings = on` (the default since
//!   PostgreSQL 9.1): a backslash is an ordinary character there; only `E'...'` escapes.
//! - A `;` inside parentheses does not end a statement (psql does the same; it is what keeps a
//!   multi-action `CREATE RULE ... DO ALSO (a; b)` whole). A `(` never closed is reported.
//! - `BEGIN ATOMIC` bodies follow psql's heuristic, slightly tightened: in a statement that
//!   starts `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, the words `BEGIN ATOMIC` outside
//!   parentheses open a body; inside it each `CASE` opens and each `END` closes one level, and
//!   `;` ends nothing until the level is back to zero. A column spelled `case` or `end` without
//!   quotes would confuse it, but both are reserved words, so valid SQL quotes them.
//! - Any backslash outside a string, identifier, comment or dollar quote is a psql
//!   meta-command. PostgreSQL's own grammar has no use for `\` there, and psql treats it the
//!   same way, so this also catches `SELECT ... \gexec` at the end of a line.
//! - psql variables (`:name`, `:'name'`) are not recognised; `\set` defining them is refused.
//! - Classification looks at the leading keywords only; it does not parse the statement.

use thiserror::Error;

/// One statement of a migration script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement text from its first token to its last, without the terminating `;`.
    /// Comments inside it are kept; comments before it (or between it and the `;`) are not.
    pub sql: String,
    /// 1-based line of the statement's first token (leading blank lines and comments skipped).
    pub line: usize,
    pub kind: StatementKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Normal,
    /// BEGIN / START TRANSACTION / COMMIT / END / ROLLBACK (not ROLLBACK TO SAVEPOINT) /
    /// ABORT / PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED: the file manages its
    /// own transaction. [`unwrap_transaction`] accepts only a BEGIN first and a COMMIT last.
    TransactionControl,
    /// Cannot run inside a transaction block; the string names it, e.g.
    /// "CREATE INDEX CONCURRENTLY".
    NonTransactional(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScriptError {
    #[error(
        "line {line}: `{command}` is a psql meta-command, but migval runs plain SQL, not psql scripts: {hint}",
        hint = meta_hint(.command)
    )]
    MetaCommand { line: usize, command: String },
    #[error(
        "line {line}: unterminated {what}: it opens on this line and is not closed before the end of the file"
    )]
    Unterminated { line: usize, what: &'static str },
}

/// What to do instead of a meta-command, for the ones migration files actually contain.
fn meta_hint(command: &str) -> &'static str {
    match command {
        "\\i" | "\\ir" | "\\include" | "\\include_relative" => {
            "inline the included file's statements into this file"
        }
        "\\set" | "\\unset" | "\\gset" | "\\getenv" => {
            "replace the psql variable with its value in the statements"
        }
        "\\c" | "\\connect" => "remove it; migval runs every statement on the database it is given",
        "\\gexec" => {
            "run the generating query yourself and put the statements it produces into the file"
        }
        "\\g" | "\\gx" | "\\;" => "end the statement with `;` instead",
        _ => "remove the command or rewrite it as SQL",
    }
}

/// Split a migration script into statements. See the module documentation for the rules.
pub fn split(text: &str) -> Result<Vec<Statement>, ScriptError> {
    let mut lexer = Lexer::new(text);
    let mut statements = Vec::new();
    let mut current: Vec<Token<'_>> = Vec::new();
    // Line of every `(` not yet closed: the first one is what an error points at.
    let mut open_parens: Vec<usize> = Vec::new();
    let mut atomic: Option<AtomicBody> = None;
    while let Some(token) = next_token(&mut lexer, text)? {
        match &token.tok {
            Tok::Punct(b';') if open_parens.is_empty() && atomic.is_none() => {
                finish(text, &mut current, &mut statements);
                continue;
            }
            Tok::Punct(b'(') => open_parens.push(token.line),
            Tok::Punct(b')') => {
                // An extra `)` is the server's syntax error to report; like psql, don't go
                // below zero.
                open_parens.pop();
            }
            Tok::Word(word) => {
                atomic = track_atomic(atomic, word, &current, open_parens.is_empty());
            }
            _ => {}
        }
        current.push(token);
    }
    if let Some(&line) = open_parens.first() {
        return Err(ScriptError::Unterminated {
            line,
            what: "parenthesis",
        });
    }
    if let Some(body) = atomic {
        return Err(ScriptError::Unterminated {
            line: body.line,
            what: "BEGIN ATOMIC body",
        });
    }
    finish(text, &mut current, &mut statements);
    Ok(statements)
}

/// An open `BEGIN ATOMIC ... END` routine body: where it starts, and how many `END`s are
/// still owed (the body's own, plus one per open `CASE`).
#[derive(Debug, Clone, Copy)]
struct AtomicBody {
    line: usize,
    depth: usize,
}

fn track_atomic(
    atomic: Option<AtomicBody>,
    word: &str,
    before: &[Token<'_>],
    outside_parens: bool,
) -> Option<AtomicBody> {
    match atomic {
        Some(mut body) => {
            if word.eq_ignore_ascii_case("case") {
                body.depth += 1;
            } else if word.eq_ignore_ascii_case("end") {
                body.depth = body.depth.saturating_sub(1);
            }
            (body.depth > 0).then_some(body)
        }
        None => {
            let begin = before.last().filter(|t| t.is_kw("begin"))?;
            let opens = word.eq_ignore_ascii_case("atomic") && outside_parens && is_routine(before);
            opens.then_some(AtomicBody {
                line: begin.line,
                depth: 1,
            })
        }
    }
}

/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE ...`
fn is_routine(tokens: &[Token<'_>]) -> bool {
    let kw = |i: usize, k: &str| tokens.get(i).is_some_and(|t| t.is_kw(k));
    let name_at = if kw(1, "or") && kw(2, "replace") {
        3
    } else {
        1
    };
    kw(0, "create") && (kw(name_at, "function") || kw(name_at, "procedure"))
}

/// Turn the tokens gathered so far into a statement (nothing for an empty one).
fn finish(text: &str, current: &mut Vec<Token<'_>>, out: &mut Vec<Statement>) {
    if let (Some(first), Some(last)) = (current.first(), current.last()) {
        out.push(Statement {
            sql: text
                .get(first.start..last.end)
                .unwrap_or_default()
                .to_string(),
            line: first.line,
            kind: classify(current),
        });
    }
    current.clear();
}

/// Classify a statement by its leading keywords.
fn classify(t: &[Token<'_>]) -> StatementKind {
    use StatementKind::{NonTransactional as Nt, Normal, TransactionControl as Tc};
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.is_kw(k));
    let Some(Tok::Word(first)) = t.first().map(|x| &x.tok) else {
        return Normal;
    };
    match first.to_ascii_lowercase().as_str() {
        // COMMIT PREPARED and COMMIT AND CHAIN included.
        "begin" | "end" | "abort" | "commit" => Tc,
        "start" if kw(1, "transaction") => Tc,
        "rollback" => {
            let i = if kw(1, "work") || kw(1, "transaction") {
                2
            } else {
                1
            };
            // ROLLBACK TO [SAVEPOINT] x undoes part of the transaction and keeps it open.
            if kw(i, "to") { Normal } else { Tc }
        }
        // PREPARE TRANSACTION 'gid', as opposed to PREPARE name [(types)] AS ...
        "prepare" if kw(1, "transaction") && t.get(2).is_some_and(|x| x.tok == Tok::Literal) => Tc,
        "vacuum" => Nt("VACUUM"),
        "create" => {
            let unique = kw(1, "unique");
            let i = 1 + usize::from(unique);
            if kw(i, "index") && kw(i + 1, "concurrently") {
                Nt(if unique {
                    "CREATE UNIQUE INDEX CONCURRENTLY"
                } else {
                    "CREATE INDEX CONCURRENTLY"
                })
            } else if kw(1, "database") {
                Nt("CREATE DATABASE")
            } else if kw(1, "tablespace") {
                Nt("CREATE TABLESPACE")
            } else if kw(1, "subscription") {
                // Only with create_slot = true (the default); flagged either way.
                Nt("CREATE SUBSCRIPTION")
            } else {
                Normal
            }
        }
        "drop" => {
            if kw(1, "index") && kw(2, "concurrently") {
                Nt("DROP INDEX CONCURRENTLY")
            } else if kw(1, "database") {
                Nt("DROP DATABASE")
            } else if kw(1, "tablespace") {
                Nt("DROP TABLESPACE")
            } else if kw(1, "subscription") {
                // Only when it has a replication slot; flagged either way.
                Nt("DROP SUBSCRIPTION")
            } else {
                Normal
            }
        }
        "reindex" => {
            // CONCURRENTLY may come after the object kind or among `(options)`.
            if t.iter().any(|x| x.is_kw("concurrently")) {
                return Nt("REINDEX CONCURRENTLY");
            }
            let i = skip_parenthesized(t, 1);
            if kw(i, "schema") {
                Nt("REINDEX SCHEMA")
            } else if kw(i, "database") {
                Nt("REINDEX DATABASE")
            } else if kw(i, "system") {
                Nt("REINDEX SYSTEM")
            } else {
                Normal
            }
        }
        "cluster" => {
            // CLUSTER [(options)] [VERBOSE] with no table reclusters every table, one
            // transaction each.
            let mut i = skip_parenthesized(t, 1);
            if kw(i, "verbose") {
                i += 1;
            }
            if i >= t.len() {
                Nt("CLUSTER (all tables)")
            } else {
                Normal
            }
        }
        "discard" if kw(1, "all") => Nt("DISCARD ALL"),
        "alter" => {
            if kw(1, "system") {
                Nt("ALTER SYSTEM")
            } else if kw(1, "database") && kw(3, "set") && kw(4, "tablespace") {
                Nt("ALTER DATABASE SET TABLESPACE")
            } else if kw(1, "subscription") {
                // REFRESH PUBLICATION, and SET/ADD/DROP PUBLICATION (which refresh by
                // default), cannot run in a transaction block; conservatively, everything but
                // the plainly catalog-only actions is flagged.
                let harmless = ["enable", "disable", "owner", "rename", "skip"];
                if harmless.iter().any(|k| kw(3, k)) {
                    Normal
                } else {
                    Nt("ALTER SUBSCRIPTION")
                }
            } else if kw(1, "table")
                && t.windows(2)
                    .position(|w| w[0].is_kw("detach") && w[1].is_kw("partition"))
                    .is_some_and(|p| t[p..].iter().any(|x| x.is_kw("concurrently")))
            {
                Nt("ALTER TABLE ... DETACH PARTITION CONCURRENTLY")
            } else {
                Normal
            }
        }
        // REFRESH MATERIALIZED VIEW CONCURRENTLY, ANALYZE, ALTER TYPE ... ADD VALUE
        // (PostgreSQL 12+) and the rest run inside a transaction.
        _ => Normal,
    }
}

/// If `t[i]` opens a parenthesized group, the index just after its matching `)`; else `i`.
fn skip_parenthesized(t: &[Token<'_>], i: usize) -> usize {
    if !t.get(i).is_some_and(|x| x.tok == Tok::Punct(b'(')) {
        return i;
    }
    let mut depth = 0usize;
    for (j, x) in t.iter().enumerate().skip(i) {
        match x.tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    t.len()
}

// ---------------------------------------------------------------------------------------------
// The file's own transaction. Files written for `psql -f` often wrap themselves in
// BEGIN ... COMMIT so that they apply atomically. migval already runs the whole file in one
// transaction, so that pair *is* migval's transaction and is not executed:
//
//   BEGIN;              first statement:  not run (migval's own BEGIN, READ COMMITTED)
//   ALTER TABLE ...;    the statements:   run one by one under savepoints, as always
//   COMMIT;             last statement:   not run (migval commits only with --commit and a pass)
//
// Any other transaction control would make the file something other than one transaction
// (a COMMIT in the middle, ROLLBACK, COMMIT AND CHAIN, two-phase commit, a BEGIN asking for
// another isolation level) and is refused with its line.

/// The file's own `BEGIN` (its first statement) and `COMMIT` (its last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapper {
    /// The statement as written, in upper case: "BEGIN", "START TRANSACTION", "BEGIN WORK".
    pub begin: String,
    pub begin_line: usize,
    /// "COMMIT", "END", "COMMIT WORK", ...
    pub commit: String,
    pub commit_line: usize,
}

impl Wrapper {
    /// What the report says about it.
    pub fn describe(&self) -> String {
        format!(
            "the file's own {} (line {}) and {} (line {}) wrap it: run as migval's transaction",
            self.begin, self.begin_line, self.commit, self.commit_line
        )
    }
}

/// Transaction control that would make the file something other than one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {reason}")]
pub struct TransactionError {
    pub line: usize,
    pub reason: String,
}

/// What a transaction-control statement does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    /// BEGIN [WORK | TRANSACTION] / START TRANSACTION, with why its modes cannot apply.
    Begin(Result<(), String>),
    /// COMMIT / END [WORK | TRANSACTION] [AND [NO] CHAIN].
    Commit { chain: bool },
    /// ROLLBACK / ABORT (ROLLBACK TO SAVEPOINT is a normal statement).
    Rollback,
    /// PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED.
    TwoPhase,
    /// Classified as transaction control but not read as any of those (a statement built by
    /// hand that does not lex).
    Other,
}

fn control(sql: &str, t: &[Token<'_>]) -> Control {
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.is_kw(k));
    let noise = |i: usize| {
        if kw(i, "work") || kw(i, "transaction") {
            i + 1
        } else {
            i
        }
    };
    if kw(0, "begin") {
        Control::Begin(modes(sql, t, noise(1)))
    } else if kw(0, "start") {
        Control::Begin(modes(sql, t, 2))
    } else if kw(0, "prepare") || kw(1, "prepared") {
        Control::TwoPhase
    } else if kw(0, "commit") || kw(0, "end") {
        let i = noise(1);
        Control::Commit {
            chain: kw(i, "and") && kw(i + 1, "chain"),
        }
    } else if kw(0, "rollback") || kw(0, "abort") {
        Control::Rollback
    } else {
        Control::Other
    }
}

/// The transaction modes after `BEGIN`: fine when they are what migval's own transaction is
/// anyway (READ COMMITTED, READ WRITE, NOT DEFERRABLE); otherwise why they cannot apply.
fn modes(sql: &str, t: &[Token<'_>], mut i: usize) -> Result<(), String> {
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.is_kw(k));
    while let Some(token) = t.get(i) {
        if token.tok == Tok::Punct(b',') {
            i += 1;
        } else if kw(i, "isolation") && kw(i + 1, "level") {
            i += 2;
            // PostgreSQL runs READ UNCOMMITTED as READ COMMITTED.
            if kw(i, "read") && (kw(i + 1, "committed") || kw(i + 1, "uncommitted")) {
                i += 2;
                continue;
            }
            let level = if kw(i, "serializable") {
                "SERIALIZABLE"
            } else if kw(i, "repeatable") && kw(i + 1, "read") {
                "REPEATABLE READ"
            } else {
                return Err("has ISOLATION LEVEL without a level PostgreSQL knows".into());
            };
            return Err(format!(
                "asks for ISOLATION LEVEL {level}, which cannot apply: migval runs the file in its \
                 own READ COMMITTED transaction, where a statement retried after a lock timeout \
                 sees what was committed while it waited (under {level} the retry would fail with a \
                 serialization error instead). Remove the isolation level to rehearse the file"
            ));
        } else if kw(i, "read") && kw(i + 1, "write") || kw(i, "not") && kw(i + 1, "deferrable") {
            i += 2;
        } else if kw(i, "read") && kw(i + 1, "only") {
            return Err(
                "asks for READ ONLY, which cannot apply to a migration: every DDL statement and \
                 write of the file would fail. Remove READ ONLY"
                    .into(),
            );
        } else if kw(i, "deferrable") {
            return Err(
                "asks for DEFERRABLE, which only means something in a SERIALIZABLE READ ONLY \
                 transaction, and migval runs migrations in a READ COMMITTED read-write one. \
                 Remove DEFERRABLE"
                    .into(),
            );
        } else {
            return Err(format!(
                "has `{}`, which is not a transaction mode (ISOLATION LEVEL ..., READ WRITE, \
                 READ ONLY, [NOT] DEFERRABLE)",
                sql.get(token.start..token.end).unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// A statement's tokens on one line, keywords in upper case: "COMMIT AND CHAIN".
fn shown(sql: &str, t: &[Token<'_>]) -> String {
    t.iter()
        .map(|x| match x.tok {
            Tok::Word(w) => w.to_ascii_uppercase(),
            _ => sql.get(x.start..x.end).unwrap_or_default().to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" ,", ",")
}

/// Take the file's own `BEGIN` ... `COMMIT` off its statements (see above). Without any
/// transaction control, the statements come back as they are; any transaction control other
/// than that one pair is an error naming its line and what to do.
pub fn unwrap_transaction(
    mut statements: Vec<Statement>,
) -> Result<(Vec<Statement>, Option<Wrapper>), TransactionError> {
    let last = statements.len().saturating_sub(1);
    let controls: Vec<(usize, Control, String)> = statements
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == StatementKind::TransactionControl)
        .map(|(i, s)| {
            // Statements from `split` always lex; one built by hand that does not is shown
            // as written.
            let tokens = tokenize(&s.sql).unwrap_or_default();
            let words = if tokens.is_empty() {
                s.sql.clone()
            } else {
                shown(&s.sql, &tokens)
            };
            (i, control(&s.sql, &tokens), words)
        })
        .collect();
    if controls.is_empty() {
        return Ok((statements, None));
    }
    let opened = matches!(controls.first(), Some((0, Control::Begin(_), _)));
    let begin_line = statements.first().map_or(0, |s| s.line);
    for (i, c, words) in &controls {
        let reason = match c {
            Control::Begin(Ok(())) if *i == 0 => continue,
            Control::Begin(Err(why)) if *i == 0 => format!("`{words}` {why}"),
            Control::Begin(_) if opened => format!(
                "`{words}` inside the transaction that the BEGIN at line {begin_line} opened \
                 (PostgreSQL only warns and ignores it): the file looks assembled from several \
                 migrations with their own BEGIN/COMMIT. Keep one BEGIN as the first statement \
                 and one COMMIT as the last"
            ),
            Control::Begin(_) => format!(
                "`{words}` after the file's first statement: under psql the statements before it \
                 commit on their own, so the file is not one transaction. Move it to the top \
                 (with COMMIT as the last statement), or remove it: migval runs the whole file \
                 as one transaction"
            ),
            Control::Commit { chain: false } if *i == last && opened => continue,
            Control::Commit { chain: true } if *i == last && opened => format!(
                "`{words}` starts a new transaction as soon as it commits, and nothing in the file \
                 ends that one. Write plain COMMIT"
            ),
            Control::Commit { .. } if *i == last => format!(
                "`{words}` ends a transaction that no BEGIN opens as the file's first statement \
                 (under psql each statement before it commits on its own). Add BEGIN as the \
                 first statement, or remove this line: migval runs the file as one transaction \
                 either way"
            ),
            Control::Commit { .. } => format!(
                "`{words}` in the middle of the file: under psql what follows runs in another \
                 transaction, so the file is not one atomic change, and migval runs a file as \
                 exactly one transaction. Split the file here into one migration per \
                 transaction, or remove this COMMIT (and any BEGIN after it)"
            ),
            Control::Rollback => format!(
                "`{words}` undoes the file's own changes: migval runs the file in its transaction \
                 and decides itself whether to commit (without --commit it always rolls back). \
                 Remove this line; to try the file without applying it, run migval migrate \
                 without --commit"
            ),
            Control::TwoPhase => format!(
                "`{words}` is two-phase commit (a prepared transaction), which cannot run inside \
                 the transaction migval rehearses the file in: run it separately with psql"
            ),
            Control::Other => format!(
                "`{words}` manages the transaction itself; only a BEGIN as the first statement \
                 and a COMMIT as the last are accepted (they become migval's transaction)"
            ),
        };
        return Err(TransactionError {
            line: statements[*i].line,
            reason,
        });
    }
    // The loop refused every combination but BEGIN first: is COMMIT last?
    let (begin_words, close) = match (controls.first(), controls.last()) {
        (Some((_, _, b)), Some((i, Control::Commit { .. }, c))) if *i == last && last > 0 => {
            (b.clone(), Some(c.clone()))
        }
        (first, _) => (first.map(|f| f.2.clone()).unwrap_or_default(), None),
    };
    let Some(commit_words) = close else {
        return Err(TransactionError {
            line: begin_line,
            reason: format!(
                "`{begin_words}` has no matching COMMIT (or END) as the file's last statement: \
                 under psql the transaction would stay open until the session ends, and then \
                 roll back. Add COMMIT as the last statement, or remove this line"
            ),
        });
    };
    let commit = statements.remove(last);
    let begin = statements.remove(0);
    Ok((
        statements,
        Some(Wrapper {
            begin: begin_words,
            begin_line: begin.line,
            commit: commit_words,
            commit_line: commit.line,
        }),
    ))
}

/// A rename written in the script.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InferredRename {
    pub schema: Option<String>,
    pub table: String,
    /// `None` when the relation itself is renamed.
    pub column: Option<String>,
    pub new_name: String,
}

/// The renames a script performs: `ALTER TABLE [IF EXISTS] [ONLY] t [*] RENAME [COLUMN] a TO
/// b`, `ALTER TABLE ... RENAME TO u`, and the same for `VIEW`, `MATERIALIZED VIEW` and
/// `FOREIGN TABLE`. Names are case-folded like PostgreSQL (unquoted to lower case, quoted
/// kept); `db.schema.table` keeps schema and table. Constraint and index renames are not
/// table or column renames and are skipped, as is anything else that does not read exactly
/// as one of those forms.
pub fn inferred_renames(statements: &[Statement]) -> Vec<InferredRename> {
    statements
        .iter()
        .filter_map(|s| {
            // A statement built by hand may not lex; it then renames nothing we can see.
            let tokens = tokenize(&s.sql).ok()?;
            rename_of(&tokens)
        })
        .collect()
}

fn rename_of(tokens: &[Token<'_>]) -> Option<InferredRename> {
    let mut p = Cursor { tokens, i: 0 };
    p.expect("alter")?;
    if p.eat("materialized") {
        p.expect("view")?;
    } else if p.eat("foreign") {
        p.expect("table")?;
    } else if !(p.eat("table") || p.eat("view")) {
        return None;
    }
    if p.eat("if") {
        p.expect("exists")?;
    }
    p.eat("only");
    let mut parts = vec![p.ident()?];
    while p.eat_punct(b'.') {
        parts.push(p.ident()?);
    }
    p.eat_punct(b'*');
    p.expect("rename")?;
    let column = if p.eat("to") {
        None
    } else {
        // `constraint` is a reserved word: unquoted here it can only mean RENAME CONSTRAINT.
        if p.peek_kw("constraint") {
            return None;
        }
        p.eat("column");
        let column = p.ident()?;
        p.expect("to")?;
        Some(column)
    };
    let new_name = p.ident()?;
    if p.i != tokens.len() {
        return None;
    }
    let table = parts.pop()?;
    Some(InferredRename {
        schema: parts.pop(),
        table,
        column,
        new_name,
    })
}

pub(super) struct Cursor<'t, 'a> {
    pub(super) tokens: &'t [Token<'a>],
    pub(super) i: usize,
}

impl Cursor<'_, '_> {
    pub(super) fn peek_kw(&self, kw: &str) -> bool {
        self.tokens.get(self.i).is_some_and(|t| t.is_kw(kw))
    }

    pub(super) fn eat(&mut self, kw: &str) -> bool {
        let hit = self.peek_kw(kw);
        self.i += usize::from(hit);
        hit
    }

    pub(super) fn expect(&mut self, kw: &str) -> Option<()> {
        self.eat(kw).then_some(())
    }

    pub(super) fn eat_punct(&mut self, c: u8) -> bool {
        let hit = self
            .tokens
            .get(self.i)
            .is_some_and(|t| t.tok == Tok::Punct(c));
        self.i += usize::from(hit);
        hit
    }

    /// An identifier, folded as PostgreSQL does: unquoted to lower case (ASCII only, as the
    /// server does in UTF-8), quoted kept.
    pub(super) fn ident(&mut self) -> Option<String> {
        let name = match &self.tokens.get(self.i)?.tok {
            Tok::Word(w) => w.to_ascii_lowercase(),
            Tok::Quoted(q) => q.clone(),
            _ => return None,
        };
        self.i += 1;
        Some(name)
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens come from the one lexer, `sql::lex`; a script adds one rule of its own: a backslash
// outside any literal is a psql meta-command.

use crate::sql::lex::{LexError, Lexer};
pub(super) use crate::sql::lex::{Tok, Token};

pub(super) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, ScriptError> {
    let mut lexer = Lexer::new(text);
    let mut tokens = Vec::new();
    while let Some(t) = next_token(&mut lexer, text)? {
        tokens.push(t);
    }
    Ok(tokens)
}

/// The next token of a script, `None` at its end.
fn next_token<'a>(lexer: &mut Lexer<'a>, text: &'a str) -> Result<Option<Token<'a>>, ScriptError> {
    let token =
        lexer
            .next_token()
            .map_err(|LexError { what, line, .. }| ScriptError::Unterminated {
                line,
                what: what.noun(),
            })?;
    match token {
        Some(t) if t.tok == Tok::Punct(b'\\') => Err(meta_command(text, t.start, t.line)),
        t => Ok(t),
    }
}

/// The error for a backslash at byte `at`, outside any literal: psql reads a meta-command there.
fn meta_command(text: &str, at: usize, line: usize) -> ScriptError {
    let rest = text.get(at + 1..).unwrap_or_default();
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    // psql's command names are a word or one other character (`\!`, `\?`, `\\`, `\;`).
    let name = match name_len {
        0 => rest
            .chars()
            .next()
            .filter(|c| !c.is_whitespace())
            .map(String::from)
            .unwrap_or_default(),
        n => rest.get(..n).unwrap_or_default().to_string(),
    };
    ScriptError::MetaCommand {
        line,
        command: format!("\\{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(text: &str) -> Vec<String> {
        split(text).unwrap().into_iter().map(|s| s.sql).collect()
    }

    fn kind(sql: &str) -> StatementKind {
        let statements = split(sql).unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        statements[0].kind
    }

    #[test]
    fn plpgsql_bodies_in_dollar_quotes_are_one_statement() {
        let text = "CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  PERFORM 1;\n  RETURN 2;\nEND\n$$ LANGUAGE plpgsql;\n\
                    CREATE OR REPLACE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $body$\n\
                    BEGIN\n  EXECUTE $$UPDATE t SET a = 1; DELETE FROM u$$;\nEND;\n$body$;\n\
                    SELECT f();";
        let got = split(text).unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            got[0].sql.ends_with("$$ LANGUAGE plpgsql"),
            "{}",
            got[0].sql
        );
        assert!(got[1].sql.ends_with("END;\n$body$"), "{}", got[1].sql);
        assert_eq!(got[2].sql, "SELECT f()");
        assert_eq!(
            got.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![1, 7, 12]
        );
        assert!(got.iter().all(|s| s.kind == StatementKind::Normal));
    }

    #[test]
    fn strings_and_quoted_identifiers_hide_semicolons_and_dashes() {
        assert_eq!(
            sqls("SELECT 'a;b', 'it''s -- not a comment;' FROM \"we;ird--name\"; SELECT 2"),
            vec![
                "SELECT 'a;b', 'it''s -- not a comment;' FROM \"we;ird--name\"",
                "SELECT 2"
            ]
        );
        assert_eq!(
            sqls("SELECT \"a\"\";b\" FROM t; SELECT /* ; */ 1 -- ; trailing\n;"),
            vec!["SELECT \"a\"\";b\" FROM t", "SELECT /* ; */ 1"]
        );
    }

    #[test]
    fn nested_block_comments() {
        assert_eq!(
            sqls("/* outer /* inner; */ still comment; */ SELECT 1; /* a */ /* b */ SELECT 2"),
            vec!["SELECT 1", "SELECT 2"]
        );
    }

    #[test]
    fn escape_strings_let_backslash_protect_a_quote() {
        assert_eq!(
            sqls(r"SELECT E'\'; still string', e'a\\'; SELECT 'plain\'; SELECT 3"),
            vec![
                r"SELECT E'\'; still string', e'a\\'",
                r"SELECT 'plain\'",
                "SELECT 3"
            ]
        );
        // `name'...'`: only a lone E is a prefix; `some_e` is an identifier before a string.
        assert_eq!(sqls(r"SELECT some_e'\'; SELECT 2").len(), 2);
    }

    #[test]
    fn positional_parameters_are_not_dollar_tags() {
        assert_eq!(
            sqls("PREPARE q(int, int) AS SELECT $1 + $2; EXECUTE q(1, 2); SELECT $$;$$"),
            vec![
                "PREPARE q(int, int) AS SELECT $1 + $2",
                "EXECUTE q(1, 2)",
                "SELECT $$;$$"
            ]
        );
        // `$` inside an identifier is not a quote either.
        assert_eq!(sqls("SELECT a$b$ FROM t; SELECT 2").len(), 2);
    }

    #[test]
    fn lines_point_at_the_first_token_and_empty_statements_are_dropped() {
        let text = "\n-- header\n/* block\n comment */\n  SELECT 1;;\n;\nSELECT\n  'two\nlines';\n\n-- trailing comment only\nSELECT 3 -- no semicolon\n";
        let got = split(text).unwrap();
        assert_eq!(
            got.iter()
                .map(|s| (s.line, s.sql.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (5, "SELECT 1"),
                (7, "SELECT\n  'two\nlines'"),
                (12, "SELECT 3")
            ]
        );
        assert!(split("  -- nothing\n/* at all */\n;\n").unwrap().is_empty());
    }

    #[test]
    fn psql_meta_commands_are_refused_with_their_line() {
        let cases = [
            ("SELECT 1;\n\\i other.sql\n", 2, "\\i"),
            ("\\set x 1\nSELECT :x;", 1, "\\set"),
            ("BEGIN;\n\n   \\c db\nSELECT 1;", 3, "\\c"),
            ("\\connect other", 1, "\\connect"),
            ("SELECT format('SELECT %s', 1)\n\\gexec\n", 2, "\\gexec"),
        ];
        for (text, line, command) in cases {
            match split(text) {
                Err(ScriptError::MetaCommand {
                    line: l,
                    command: c,
                }) => {
                    assert_eq!((l, c.as_str()), (line, command), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = split("\\i other.sql").unwrap_err().to_string();
        assert!(message.contains("line 1"), "{message}");
        assert!(message.contains("inline the included file"), "{message}");
        let message = split("\\set x 1").unwrap_err().to_string();
        assert!(message.contains("replace the psql variable"), "{message}");
    }

    #[test]
    fn backslashes_inside_literals_and_comments_are_not_meta_commands() {
        let text = "INSERT INTO t VALUES ('\n\\i not.sql\n');\n-- \\set x 1\n/*\n\\c db\n*/\nSELECT $$\n\\gexec\n$$, \"\n\\x\";";
        assert_eq!(split(text).unwrap().len(), 2);
    }

    #[test]
    fn unterminated_constructs_are_reported_where_they_start() {
        let cases = [
            (
                "SELECT 1;\n\nCREATE FUNCTION f() AS $body$\nBEGIN; END;\n$$;\n",
                3,
                "dollar-quoted string",
            ),
            ("SELECT 1;\nSELECT 'abc;\nSELECT 2;", 2, "string literal"),
            ("SELECT 1;\nSELECT E'abc\\';", 2, "string literal"),
            ("SELECT \"abc;", 1, "quoted identifier"),
            ("SELECT 1;\n/* /* */\nSELECT 2;", 2, "block comment"),
            (
                "CREATE TABLE t (\n  a int CHECK (a > 0);\nSELECT 1;",
                1,
                "parenthesis",
            ),
        ];
        for (text, line, what) in cases {
            assert_eq!(
                split(text),
                Err(ScriptError::Unterminated { line, what }),
                "{text}"
            );
        }
    }

    #[test]
    fn transaction_control_is_classified() {
        for sql in [
            "BEGIN",
            "begin work",
            "BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION",
            "COMMIT",
            "commit and chain",
            "END",
            "ROLLBACK",
            "ROLLBACK WORK",
            "ABORT",
            "PREPARE TRANSACTION 'migration-1'",
            "COMMIT PREPARED 'migration-1'",
            "ROLLBACK PREPARED 'migration-1'",
            "/* leading */ -- comment\n Commit",
        ] {
            assert_eq!(kind(sql), StatementKind::TransactionControl, "{sql}");
        }
        let got = split("BEGIN;\nALTER TABLE t ADD c int;\nCOMMIT;").unwrap();
        assert_eq!(
            got.iter().map(|s| s.kind).collect::<Vec<_>>(),
            vec![
                StatementKind::TransactionControl,
                StatementKind::Normal,
                StatementKind::TransactionControl
            ]
        );
    }

    fn unwrapped(text: &str) -> Result<(Vec<String>, Option<Wrapper>), TransactionError> {
        unwrap_transaction(split(text).unwrap())
            .map(|(s, w)| (s.into_iter().map(|s| s.sql).collect(), w))
    }

    #[test]
    fn a_file_wrapped_in_begin_commit_runs_as_migvals_transaction() {
        let forms = [
            ("BEGIN", "COMMIT"),
            ("begin transaction", "end"),
            ("BEGIN WORK", "COMMIT WORK"),
            ("START TRANSACTION", "END TRANSACTION"),
            (
                "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE",
                "COMMIT AND NO CHAIN",
            ),
            ("start transaction not deferrable", "commit transaction"),
        ];
        for (begin, commit) in forms {
            let text = format!(
                "-- 001 add a column\n{begin};\n\nALTER TABLE t ADD c int;\nUPDATE t SET c = 1;\n{commit};\n-- done\n"
            );
            let (statements, wrapper) = unwrapped(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                statements,
                vec!["ALTER TABLE t ADD c int", "UPDATE t SET c = 1"],
                "{text}"
            );
            let w = wrapper.expect("a wrapper");
            assert_eq!(
                (
                    w.begin.as_str(),
                    w.begin_line,
                    w.commit.as_str(),
                    w.commit_line
                ),
                (
                    begin.to_ascii_uppercase().as_str(),
                    2,
                    commit.to_ascii_uppercase().as_str(),
                    6
                ),
                "{text}"
            );
        }
        let (_, w) = unwrapped("BEGIN;\nSELECT 1;\nCOMMIT;").unwrap();
        assert_eq!(
            w.unwrap().describe(),
            "the file's own BEGIN (line 1) and COMMIT (line 3) wrap it: run as migval's transaction"
        );
        // No transaction control: nothing to take off.
        assert_eq!(
            unwrapped("SELECT 1;\nSELECT 2;").unwrap(),
            (vec!["SELECT 1".into(), "SELECT 2".into()], None)
        );
        // A BEGIN inside a routine body or a savepoint is not transaction control.
        let (statements, w) = unwrapped(
            "BEGIN;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nSAVEPOINT a;\nROLLBACK TO a;\nCOMMIT;",
        )
        .unwrap();
        assert_eq!(statements.len(), 3, "{statements:?}");
        assert!(w.is_some());
    }

    #[test]
    fn other_transaction_control_is_refused_with_its_line_and_why() {
        let cases = [
            (
                "BEGIN;\nALTER TABLE t ADD a int;\nCOMMIT;\nALTER TABLE t ADD b int;\n",
                3,
                "`COMMIT` in the middle of the file",
            ),
            (
                "BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;\n",
                3,
                "Split the file here into one migration per transaction",
            ),
            (
                "BEGIN;\nSELECT 1;\nROLLBACK;\n",
                3,
                "`ROLLBACK` undoes the file's own changes",
            ),
            ("SELECT 1;\nabort;\n", 2, "`ABORT` undoes"),
            (
                "BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;",
                1,
                "asks for ISOLATION LEVEL SERIALIZABLE, which cannot apply",
            ),
            (
                "START TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nSELECT 1;\nCOMMIT;",
                1,
                "ISOLATION LEVEL REPEATABLE READ",
            ),
            (
                "BEGIN READ ONLY;\nSELECT 1;\nCOMMIT;",
                1,
                "every DDL statement and write of the file would fail",
            ),
            (
                "BEGIN ISOLATION LEVEL READ COMMITTED DEFERRABLE;\nSELECT 1;\nCOMMIT;",
                1,
                "Remove DEFERRABLE",
            ),
            (
                "BEGIN FAST;\nSELECT 1;\nCOMMIT;",
                1,
                "`FAST`, which is not a transaction mode",
            ),
            (
                "BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;",
                3,
                "`COMMIT AND CHAIN` starts a new transaction",
            ),
            (
                "-- header\nBEGIN;\nSELECT 1;\n",
                2,
                "`BEGIN` has no matching COMMIT (or END) as the file's last statement",
            ),
            ("BEGIN;", 1, "has no matching COMMIT"),
            (
                "BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;",
                3,
                "in the middle of the file",
            ),
            (
                "SELECT 1;\nCOMMIT;\n",
                2,
                "ends a transaction that no BEGIN opens as the file's first statement",
            ),
            (
                "SELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;\n",
                2,
                "`BEGIN` after the file's first statement",
            ),
            (
                "BEGIN;\nSELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;\n",
                3,
                "inside the transaction that the BEGIN at line 1 opened",
            ),
            (
                "BEGIN;\nSELECT 1;\nPREPARE TRANSACTION 'm1';\n",
                3,
                "two-phase commit",
            ),
            ("COMMIT PREPARED 'm1';", 1, "two-phase commit"),
        ];
        for (text, line, reason) in cases {
            match unwrapped(text) {
                Err(e) => {
                    assert_eq!(e.line, line, "{text}: {e}");
                    assert!(e.reason.contains(reason), "{text}: {e}");
                    assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
                }
                Ok(ok) => panic!("{text}: accepted as {ok:?}"),
            }
        }
    }

    #[test]
    fn savepoints_and_prepared_statements_are_normal() {
        for sql in [
            "ROLLBACK TO SAVEPOINT x",
            "rollback to x",
            "ROLLBACK TRANSACTION TO SAVEPOINT x",
            "SAVEPOINT x",
            "RELEASE SAVEPOINT x",
            "PREPARE q AS SELECT 1",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SELECT begin FROM t",
        ] {
            assert_eq!(kind(sql), StatementKind::Normal, "{sql}");
        }
    }

    #[test]
    fn create_index_concurrently_is_non_transactional_in_any_case() {
        assert_eq!(
            kind("-- speed up lookups\n/* big table */ create index concurrently idx_a on t (a)"),
            StatementKind::NonTransactional("CREATE INDEX CONCURRENTLY")
        );
        assert_eq!(
            kind("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u ON t (a)"),
            StatementKind::NonTransactional("CREATE UNIQUE INDEX CONCURRENTLY")
        );
        assert_eq!(kind("CREATE INDEX idx ON t (a)"), StatementKind::Normal);
        assert_eq!(
            kind("DROP INDEX CONCURRENTLY idx"),
            StatementKind::NonTransactional("DROP INDEX CONCURRENTLY")
        );
    }

    #[test]
    fn other_non_transactional_commands() {
        let nt = StatementKind::NonTransactional;
        for (sql, expected) in [
            ("VACUUM", nt("VACUUM")),
            ("vacuum (analyze) client_products", nt("VACUUM")),
            ("ALTER SYSTEM SET work_mem = '64MB'", nt("ALTER SYSTEM")),
            ("CREATE DATABASE x", nt("CREATE DATABASE")),
            ("DROP DATABASE IF EXISTS x", nt("DROP DATABASE")),
            (
                "CREATE TABLESPACE fast LOCATION '/ssd'",
                nt("CREATE TABLESPACE"),
            ),
            ("DROP TABLESPACE fast", nt("DROP TABLESPACE")),
            (
                "ALTER DATABASE x SET TABLESPACE fast",
                nt("ALTER DATABASE SET TABLESPACE"),
            ),
            (
                "ALTER DATABASE x SET work_mem = '1MB'",
                StatementKind::Normal,
            ),
            ("REINDEX INDEX CONCURRENTLY i", nt("REINDEX CONCURRENTLY")),
            (
                "REINDEX (VERBOSE, CONCURRENTLY) TABLE t",
                nt("REINDEX CONCURRENTLY"),
            ),
            ("REINDEX (VERBOSE) SCHEMA s", nt("REINDEX SCHEMA")),
            ("REINDEX TABLE t", StatementKind::Normal),
            ("CLUSTER", nt("CLUSTER (all tables)")),
            ("CLUSTER VERBOSE", nt("CLUSTER (all tables)")),
            ("CLUSTER t USING idx", StatementKind::Normal),
            ("DISCARD ALL", nt("DISCARD ALL")),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
                nt("CREATE SUBSCRIPTION"),
            ),
            ("DROP SUBSCRIPTION s", nt("DROP SUBSCRIPTION")),
            (
                "ALTER SUBSCRIPTION s REFRESH PUBLICATION",
                nt("ALTER SUBSCRIPTION"),
            ),
            ("ALTER SUBSCRIPTION s DISABLE", StatementKind::Normal),
            (
                "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
                nt("ALTER TABLE ... DETACH PARTITION CONCURRENTLY"),
            ),
            ("ALTER TABLE p DETACH PARTITION p1", StatementKind::Normal),
            (
                "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
                StatementKind::Normal,
            ),
            ("ANALYZE t", StatementKind::Normal),
        ] {
            assert_eq!(kind(sql), expected, "{sql}");
        }
    }

    #[test]
    fn begin_atomic_bodies_are_one_statement() {
        let text = "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\n\
                    BEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN a + b ELSE b END;\nEND;\n\
                    create or replace procedure p(x int)\nlanguage sql\nbegin atomic\n  \
                    insert into t values (x);\n  update t set y = case x when 1 then 2 end;\nend;\n\
                    BEGIN;\nSELECT add(1, 2);\nEND;";
        let got = split(text).unwrap();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert!(got[0].sql.ends_with("ELSE b END;\nEND"), "{}", got[0].sql);
        assert!(got[1].sql.ends_with("end;\nend"), "{}", got[1].sql);
        assert_eq!(got[1].line, 5);
        assert_eq!(
            got.iter().map(|s| s.kind).collect::<Vec<_>>(),
            vec![
                StatementKind::Normal,
                StatementKind::Normal,
                StatementKind::TransactionControl,
                StatementKind::Normal,
                StatementKind::TransactionControl
            ]
        );
        assert_eq!(
            split("CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\nSELECT 1;\n"),
            Err(ScriptError::Unterminated {
                line: 2,
                what: "BEGIN ATOMIC body"
            })
        );
    }

    #[test]
    fn semicolons_inside_parentheses_do_not_split() {
        assert_eq!(
            sqls(
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 1"
            ),
            vec![
                "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
                "SELECT 1"
            ]
        );
    }

    fn renames(text: &str) -> Vec<InferredRename> {
        inferred_renames(&split(text).unwrap())
    }

    fn rename(
        schema: Option<&str>,
        table: &str,
        column: Option<&str>,
        new_name: &str,
    ) -> InferredRename {
        InferredRename {
            schema: schema.map(String::from),
            table: table.into(),
            column: column.map(String::from),
            new_name: new_name.into(),
        }
    }

    #[test]
    fn renames_are_inferred_and_case_folded() {
        let text = "ALTER TABLE client_products RENAME COLUMN fixed_cost TO fixed_fee_facilitated;\n\
                    ALTER TABLE IF EXISTS ONLY public.\"Orders\" RENAME TO orders_v2;\n\
                    ALTER VIEW v RENAME COLUMN a TO b;\n\
                    alter materialized view Reporting.MV rename Total to \"Grand Total\";\n\
                    ALTER TABLE t RENAME CONSTRAINT t_pkey TO t2_pkey;\n\
                    ALTER INDEX i RENAME TO j;\n\
                    ALTER TABLE t ADD COLUMN c int;\n\
                    ALTER TABLE ONLY t* RENAME x TO y;\n\
                    ALTER FOREIGN TABLE db.s.ft RENAME TO ft2;";
        assert_eq!(
            renames(text),
            vec![
                rename(
                    None,
                    "client_products",
                    Some("fixed_cost"),
                    "fixed_fee_facilitated"
                ),
                rename(Some("public"), "Orders", None, "orders_v2"),
                rename(None, "v", Some("a"), "b"),
                rename(Some("reporting"), "mv", Some("total"), "Grand Total"),
                rename(None, "t", Some("x"), "y"),
                rename(Some("s"), "ft", None, "ft2"),
            ]
        );
    }

    const MIGRATION: &str = r#"-- 001_rename.sql: fixed_cost becomes fixed_fee_facilitated.
-- The reporting views read the column, so they go first and come back after.

DROP VIEW IF EXISTS reporting.product_costs;
DROP VIEW IF EXISTS reporting.client_margin;
DROP MATERIALIZED VIEW IF EXISTS reporting.monthly_fees;

ALTER TABLE client_products RENAME COLUMN fixed_cost TO fixed_fee_facilitated;

CREATE VIEW reporting.product_costs AS
SELECT cp.client_id, cp.product_id,
       cp.fixed_fee_facilitated AS fixed_cost -- old name kept for the BI tool; really
  FROM client_products cp
 WHERE cp.note <> 'legacy; do not use';

CREATE VIEW reporting.client_margin AS
SELECT client_id, sum(fixed_fee_facilitated) AS total_fee
  FROM client_products
 GROUP BY client_id;

CREATE MATERIALIZED VIEW reporting.monthly_fees AS
SELECT date_trunc('month', created_at) AS month, sum(fixed_fee_facilitated) AS fees
  FROM client_products
 GROUP BY 1
WITH NO DATA;

CREATE OR REPLACE FUNCTION reporting.fee_for(p_client bigint)
RETURNS numeric
LANGUAGE plpgsql STABLE AS $$
DECLARE
    total numeric;
BEGIN
    SELECT sum(fixed_fee_facilitated) INTO total
      FROM client_products WHERE client_id = p_client;
    RETURN coalesce(total, 0);
END;
$$;

COMMENT ON COLUMN client_products.fixed_fee_facilitated IS 'Fixed fee (was fixed_cost); facilitated';
"#;

    #[test]
    fn a_realistic_migration_splits_into_its_statements() {
        let got = split(MIGRATION).unwrap();
        assert_eq!(got.len(), 9, "{got:#?}");
        assert_eq!(
            got.iter().map(|s| s.line).collect::<Vec<_>>(),
            vec![4, 5, 6, 8, 10, 16, 21, 27, 39]
        );
        assert!(got.iter().all(|s| s.kind == StatementKind::Normal));
        assert!(got[7].sql.starts_with("CREATE OR REPLACE FUNCTION"));
        assert!(got[7].sql.ends_with("END;\n$$"));
        assert!(got[4].sql.ends_with("'legacy; do not use'"));
        assert_eq!(
            inferred_renames(&got),
            vec![rename(
                None,
                "client_products",
                Some("fixed_cost"),
                "fixed_fee_facilitated"
            )]
        );
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for text in [
            "",
            ";",
            "$",
            "'",
            "/*",
            "\\",
            "$a",
            "$a$",
            "E'\\",
            "'é;ü'",
            "é;ü",
            "\"",
            "(",
            ")",
            "--",
            "-",
            "/",
            "*/",
            ".",
            ".5",
            "$1",
            "$é$x$é$",
            "\u{feff}SELECT 1",
            "\u{feff}",
            "BEGIN ATOMIC",
            "CREATE FUNCTION f() BEGIN ATOMIC END END END;",
            "\\é",
            "ALTER TABLE",
            "ALTER TABLE t RENAME",
            "ALTER TABLE t RENAME COLUMN",
            "ALTER TABLE \"\" RENAME TO \"\"",
        ] {
            if let Ok(statements) = split(text) {
                let _ = inferred_renames(&statements);
                let _ = unwrap_transaction(statements);
            }
            let _ = split(text).map_err(|e| e.to_string());
        }
        assert_eq!(sqls("'é;ü'"), vec!["'é;ü'"]);
        assert_eq!(sqls("é;ü"), vec!["é", "ü"]);
        assert_eq!(split("\u{feff}SELECT 1").unwrap()[0].sql, "SELECT 1");
        assert_eq!(sqls("$é$x;$é$; SELECT 1").len(), 2);
        // Statements built by hand may not lex at all.
        let bad = Statement {
            sql: "ALTER TABLE 't RENAME TO u".into(),
            line: 1,
            kind: StatementKind::Normal,
        };
        assert!(inferred_renames(std::slice::from_ref(&bad)).is_empty());
        let bad = Statement {
            sql: "COMMIT 'x".into(),
            kind: StatementKind::TransactionControl,
            ..bad
        };
        assert!(unwrap_transaction(vec![bad]).is_err());
    }
}
