//! Statements sent unnamed, for connections that may go through a pooler in transaction mode
//! (PgBouncer before 1.21): every value is bound with a declared type, so the driver sends
//! Parse, Bind, Execute and Sync in one go with no statement name, and nothing is left on the
//! server connection when the transaction ends.
//!
//! ```text
//!   named (Client::query with a &str)   Parse "s57" .. Execute .. COMMIT .. Close "s57"
//!     the Close goes out when the last Row is dropped, often after COMMIT, when the pooler
//!     may route it to another server connection: "s57" stays behind, and the next client to
//!     use that name there fails with 42P05 "prepared statement already exists"
//!   unnamed (query_typed)               Parse "" .. Execute .. Sync     nothing to close
//! ```
//!
//! [`Bind`] gives each Rust type its PostgreSQL type, so a call site reads like the driver's
//! own: `query_opt(c, sql, &[&name, &limit])`.

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Row};

/// A value with the PostgreSQL type it is bound as.
pub trait Bind: Sync {
    fn typed(&self) -> (&(dyn ToSql + Sync), Type);
}

macro_rules! bind_as {
    ($($rust:ty => $pg:expr),* $(,)?) => {
        $(impl Bind for $rust {
            fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
                (self, $pg)
            }
        })*
    };
}

bind_as! {
    String => Type::TEXT,
    &str => Type::TEXT,
    Option<String> => Type::TEXT,
    Vec<String> => Type::TEXT_ARRAY,
    i32 => Type::INT4,
    i64 => Type::INT8,
    bool => Type::BOOL,
}

/// A value already paired with its type (the user's UPDATE, typed as the server says).
pub struct Typed<'a>(pub &'a (dyn ToSql + Sync), pub Type);

impl Bind for Typed<'_> {
    fn typed(&self) -> (&(dyn ToSql + Sync), Type) {
        (self.0, self.1.clone())
    }
}

fn params<'a>(values: &'a [&'a dyn Bind]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    values.iter().map(|v| v.typed()).collect()
}

pub async fn query(c: &Client, sql: &str, values: &[&dyn Bind]) -> Result<Vec<Row>, Error> {
    c.query_typed(sql, &params(values)).await
}

pub async fn query_opt(c: &Client, sql: &str, values: &[&dyn Bind]) -> Result<Option<Row>, Error> {
    c.query_typed_opt(sql, &params(values)).await
}

pub async fn query_one(c: &Client, sql: &str, values: &[&dyn Bind]) -> Result<Row, Error> {
    c.query_typed_one(sql, &params(values)).await
}

/// Rows affected.
pub async fn execute(c: &Client, sql: &str, values: &[&dyn Bind]) -> Result<u64, Error> {
    c.execute_typed(sql, &params(values)).await
}
