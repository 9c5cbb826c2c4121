//! Talking to PostgreSQL: connection settings resolved like libpq (`conninfo`), TLS (`tls`),
//! exact decoding of result cells (`decode`), connections and pools, and turning driver errors
//! into [`DbFailure`]s that keep SQLSTATE, DETAIL and HINT.

pub mod conninfo;
pub mod decode;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Client;

use crate::model::DbFailure;
use conninfo::ConnInfo;

/// A connection could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot connect to {target}: {cause}\n  (set the server with --db URL, DATABASE_URL or the PG* variables; the password is read from the URL, PGPASSWORD or ~/.pgpass)"
)]
pub struct ConnectError {
    pub target: String,
    pub cause: String,
}

/// Open one connection; its driver task runs on the current tokio runtime.
pub async fn connect(info: &ConnInfo) -> Result<Client, ConnectError> {
    let fail = |cause: String| ConnectError {
        target: info.redacted(),
        cause,
    };
    let tls = tls::make_connector(info).map_err(|e| fail(e.to_string()))?;
    let (client, connection) = info
        .pg_config()
        .connect(tls)
        .await
        .map_err(|e| fail(failure(&e, None).to_string()))?;
    tokio::spawn(async move {
        // The error, if any, surfaces on the next use of the client.
        let _ = connection.await;
    });
    Ok(client)
}

/// A pool of up to `size` connections to the same target.
pub fn pool(info: &ConnInfo, size: usize) -> Result<Pool, ConnectError> {
    let fail = |cause: String| ConnectError {
        target: info.redacted(),
        cause,
    };
    let tls = tls::make_connector(info).map_err(|e| fail(e.to_string()))?;
    let mgr = Manager::from_config(
        info.pg_config(),
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size.max(1))
        .wait_timeout(Some(Duration::from_secs(60)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| fail(e.to_string()))
}

/// Get a pooled connection, with the pool's error turned into a [`ConnectError`].
pub async fn pooled(
    pool: &Pool,
    info: &ConnInfo,
) -> Result<deadpool_postgres::Object, ConnectError> {
    pool.get().await.map_err(|e| {
        let cause = match &e {
            deadpool_postgres::PoolError::Backend(pg) => failure(pg, None).to_string(),
            other => other.to_string(),
        };
        ConnectError {
            target: info.redacted(),
            cause,
        }
    })
}

/// Keep what PostgreSQL said: message, SQLSTATE, DETAIL, HINT. For non-server errors (I/O,
/// protocol, decoding), the whole cause chain, since the driver's own Display hides it.
pub fn failure(e: &tokio_postgres::Error, context: Option<String>) -> DbFailure {
    if let Some(db) = e.as_db_error() {
        let mut message = db.message().to_string();
        if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
            message.push_str(&format!(" (at character {p})"));
        }
        return DbFailure {
            message,
            sqlstate: Some(db.code().code().to_string()),
            detail: db.detail().map(str::to_string),
            hint: db.hint().map(str::to_string),
            context,
        };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    DbFailure {
        message,
        sqlstate: e.code().map(|c| c.code().to_string()),
        detail: None,
        hint: None,
        context,
    }
}

/// Wait before retry number `attempt` (1-based): 200 ms, 400 ms, 800 ms ... capped at 5 s.
pub fn backoff_ms(attempt: u32) -> u64 {
    200u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(5))
        .min(5_000)
}

/// Whether the error means the connection itself is gone (as opposed to a failed statement).
pub fn is_connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let s = c.code();
            s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03"
        })
}
