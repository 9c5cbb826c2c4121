//! Transaction plumbing written once: savepoints, and the `SET LOCAL` settings a transaction
//! runs under. Both build statement text only, so that a caller still sends one round trip per
//! step (`SAVEPOINT s; SET LOCAL ...` together) and keeps its own error handling. A savepoint's
//! name goes through the one quoting helper; every setting value is a typed integer, a name list
//! quoted the same way, or a constant: nothing a user wrote is formatted into these statements.
//!
//! ```text
//!   SAVEPOINT s; SET LOCAL ...      open: the settings end with the savepoint
//!     work
//!   RELEASE SAVEPOINT s             keep the work (and the settings, to the transaction's end)
//!   ROLLBACK TO SAVEPOINT s         undo it; the savepoint stays open for a retry
//!   ROLLBACK TO ...; RELEASE ...    discard: as if the savepoint had never been opened
//! ```

use crate::sql::ident::quote;

/// A named savepoint inside the transaction open on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint(&'static str);

impl Savepoint {
    pub const fn new(name: &'static str) -> Savepoint {
        Savepoint(name)
    }

    pub fn open(self) -> String {
        format!("SAVEPOINT {}", quote(self.0))
    }

    /// Keep what ran since [`Savepoint::open`].
    pub fn release(self) -> String {
        format!("RELEASE SAVEPOINT {}", quote(self.0))
    }

    /// Undo what ran since [`Savepoint::open`]; the savepoint stays open.
    pub fn rollback(self) -> String {
        format!("ROLLBACK TO SAVEPOINT {}", quote(self.0))
    }

    /// Undo and close: the transaction continues exactly as before the savepoint, `SET LOCAL`
    /// settings included.
    pub fn discard(self) -> String {
        format!("{}; {}", self.rollback(), self.release())
    }
}

/// `SET LOCAL` statements, in the order they are added; they last until the end of the
/// transaction, or of the savepoint they were set in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetLocal(Vec<String>);

impl SetLocal {
    pub fn new() -> SetLocal {
        SetLocal::default()
    }

    pub fn lock_timeout_ms(self, ms: u64) -> SetLocal {
        self.int("lock_timeout", ms.into())
    }

    pub fn statement_timeout_ms(self, ms: u64) -> SetLocal {
        self.int("statement_timeout", ms.into())
    }

    pub fn idle_in_transaction_ms(self, ms: u128) -> SetLocal {
        self.int("idle_in_transaction_session_timeout", ms)
    }

    /// PostgreSQL 14+: the backend notices a vanished client while a statement runs.
    pub fn client_connection_check_interval_ms(self, ms: u64) -> SetLocal {
        self.int("client_connection_check_interval", ms.into())
    }

    pub fn max_parallel_workers_per_gather(self, workers: u32) -> SetLocal {
        self.int("max_parallel_workers_per_gather", workers.into())
    }

    /// The output formats `db::decode` reads exactly: UTC times, ISO dates, `postgres`
    /// intervals and floats with every digit.
    pub fn decoding_formats(self) -> SetLocal {
        self.constant("TimeZone = 'UTC'")
            .constant("DateStyle = 'ISO, YMD'")
            .constant("IntervalStyle = 'postgres'")
            .int("extra_float_digits", 3)
    }

    /// Refuse writes until the transaction (or savepoint) ends.
    pub fn read_only(self) -> SetLocal {
        self.constant("transaction_read_only = on")
    }

    /// The schemas searched for unqualified names, each quoted.
    pub fn search_path<S: AsRef<str>>(self, schemas: &[S]) -> SetLocal {
        let path = schemas
            .iter()
            .map(|s| quote(s.as_ref()))
            .collect::<Vec<_>>()
            .join(", ");
        self.constant(&format!("search_path = {path}"))
    }

    /// The statements, separated by `; ` (empty when nothing was set).
    pub fn sql(&self) -> String {
        self.0.join("; ")
    }

    fn int(self, setting: &'static str, value: u128) -> SetLocal {
        self.constant(&format!("{setting} = {value}"))
    }

    fn constant(mut self, assignment: &str) -> SetLocal {
        self.0.push(format!("SET LOCAL {assignment}"));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_names_are_quoted_and_discard_closes_it() {
        let s = Savepoint::new("migval_x");
        assert_eq!(s.open(), "SAVEPOINT \"migval_x\"");
        assert_eq!(
            s.discard(),
            "ROLLBACK TO SAVEPOINT \"migval_x\"; RELEASE SAVEPOINT \"migval_x\""
        );
    }

    #[test]
    fn settings_keep_their_order_and_quote_schemas() {
        let sql = SetLocal::new()
            .lock_timeout_ms(5_000)
            .statement_timeout_ms(0)
            .search_path(&["public", "Odd\"Name"])
            .sql();
        assert_eq!(
            sql,
            "SET LOCAL lock_timeout = 5000; SET LOCAL statement_timeout = 0; \
             SET LOCAL search_path = \"public\", \"Odd\"\"Name\""
        );
        assert_eq!(SetLocal::new().sql(), "");
    }
}
