//! Talking to PostgreSQL: connection settings resolved like libpq (`conninfo`), TLS (`tls`),
//! exact decoding of result cells (`decode`), savepoints and `SET LOCAL` (`txn`), connections and pools, and turning driver errors
//! into [`DbFailure`]s that keep SQLSTATE, DETAIL and HINT.
//!
//! ## No wait without a bound
//!
//! ```text
//!   network silent (cable, VPN, firewall drops packets)
//!     -> TCP keepalives (30 s idle, 3 probes 10 s apart) or tcp_user_timeout (60 s):
//!        the kernel ends the socket, every pending query fails
//!   TCP alive but nothing forwarded (frozen proxy or pooler, hung middlebox)
//!     -> within(): no answer to a probe or batch for statement_timeout + margin:
//!        migval closes every connection it has open and stops with NoAnswer
//!   on the server, either way
//!     -> idle_in_transaction_session_timeout (default 10 min, sent at startup) ends the
//!        abandoned transaction, and its locks go with it
//! ```

pub mod conninfo;
pub mod decode;
pub mod tls;
pub mod txn;
pub mod unnamed;

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::watch;
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
///
/// The whole handshake (TCP, TLS, authentication, the `target_session_attrs` check) is bounded
/// per host by `connect_timeout` (default [`DEFAULT_HANDSHAKE_BOUND`]): a proxy that accepts
/// the TCP connection and then forwards nothing must not hang migval.
pub async fn connect(info: &ConnInfo) -> Result<Client, ConnectError> {
    let fail = |cause: String| ConnectError {
        target: info.redacted(),
        cause,
    };
    let tls = tls::make_connector(info).map_err(|e| fail(e.to_string()))?;
    let bound = handshake_bound(info);
    let connecting = connect_with_fallback(info, info.pg_config(), tls);
    let (client, connection) = match tokio::time::timeout(bound, connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(fail(connect_cause(info, &e))),
        Err(_) => {
            return Err(fail(format!(
                "no answer to the connection handshake within {} s (the network or a proxy may \
                 be down; set connect_timeout in the URL to wait longer or shorter)",
                bound.as_secs()
            )));
        }
    };
    spawn_connection(connection);
    Ok(client)
}

type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
        tokio_postgres::Socket,
    >>::Stream,
>;

/// `config.connect`, and once more without migval's idle-in-transaction bound in the startup
/// packet when a pooler refuses the `options` parameter (PgBouncer: "unsupported startup
/// parameter: options") and the user gave no options of their own.
async fn connect_with_fallback(
    info: &ConnInfo,
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<(Client, Connection), tokio_postgres::Error> {
    match config.connect(tls.clone()).await {
        Err(e)
            if info.options.is_none()
                && failure(&e, None)
                    .message
                    .contains("unsupported startup parameter") =>
        {
            info.pg_config_without_idle_bound().connect(tls).await
        }
        other => other,
    }
}

/// The bound on one whole connection handshake when `connect_timeout` is not set.
pub const DEFAULT_HANDSHAKE_BOUND: Duration = Duration::from_secs(60);

fn handshake_bound(info: &ConnInfo) -> Duration {
    let hosts = u32::try_from(info.host.len().max(1)).unwrap_or(u32::MAX);
    info.connect_timeout
        .unwrap_or(DEFAULT_HANDSHAKE_BOUND)
        .saturating_mul(hosts)
}

/// The driver error of a failed connection attempt, explained where the driver is terse.
fn connect_cause(info: &ConnInfo, e: &tokio_postgres::Error) -> String {
    let text = failure(e, None).to_string();
    if text.contains("server did not use channel binding") {
        return format!(
            "{text}: channel_binding=require, but the server authenticated without SCRAM \
             channel binding (trust, password or md5 authentication, or SCRAM without TLS); \
             psql refuses it too. Use sslmode=require (or verify-full) with a scram-sha-256 \
             server, or drop channel_binding=require"
        );
    }
    if info.target_session_attrs != conninfo::TargetSessionAttrs::Any
        && (text.contains("does not allow writes") || text.contains("is not read only"))
    {
        return format!(
            "{text}: no host in the list ({}) accepts sessions with target_session_attrs={} \
             (a hot standby is read-only); add the primary to the URL",
            info.host.join(", "),
            info.target_session_attrs.as_str()
        );
    }
    text
}

/// Runs a connection's driver task until the connection ends or [`within`] declares the
/// server unreachable (then the task stops, and every query on its client fails at once with
/// "connection closed" instead of waiting).
fn spawn_connection<F>(connection: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    let mut cut = CUT.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            // The error, if any, surfaces on the next use of the client.
            _ = connection => {}
            _ = cut.changed() => {}
        }
    })
}

/// Bumped by [`within`] when a round trip got no answer: every connection open at that moment
/// is closed (connections opened later, e.g. by a retry, are not affected).
static CUT: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// No answer from the server within the client-side bound.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no answer from the server for {seconds} s: the network may be down (or a proxy stopped \
     forwarding); migval closed its connections. The server ends the abandoned transaction, \
     and releases its locks, after idle_in_transaction_session_timeout ({idle_s} s here); \
     check the connection to the server, then run the command again"
)]
pub struct NoAnswer {
    /// How long migval waited.
    pub seconds: u64,
    /// The server-side idle-in-transaction bound of migval's sessions, in seconds.
    pub idle_s: u64,
}

impl NoAnswer {
    /// As a [`DbFailure`] (SQLSTATE 08006, connection failure, as libpq reports a lost
    /// connection).
    #[must_use]
    pub fn failure(&self, context: Option<String>) -> DbFailure {
        DbFailure {
            message: self.to_string(),
            sqlstate: Some("08006".into()),
            detail: None,
            hint: None,
            server_context: None,
            context,
        }
    }
}

/// The client-side bound on a round trip that runs under `statement_timeout_ms`: the server
/// cancels the statement first, so a wait beyond statement_timeout + margin (10 %, at least
/// 5 s) means nobody is answering. `None` when statement_timeout is off (0): keepalives and
/// tcp_user_timeout are then the only bound.
#[must_use]
pub fn answer_bound(statement_timeout_ms: u64) -> Option<Duration> {
    (statement_timeout_ms > 0).then(|| {
        let margin = (statement_timeout_ms / 10).max(5_000);
        Duration::from_millis(statement_timeout_ms.saturating_add(margin))
    })
}

/// The `idle_in_transaction_session_timeout` (ms) for a transaction whose connection may wait,
/// idle, for as long as another connection's statement runs (a capture's exporter waits for the
/// workers' probes): the session's bound, raised to [`answer_bound`] of the statement timeout.
/// 0 (disabled) when the session's bound is disabled.
#[must_use]
pub fn idle_bound_ms(info: &ConnInfo, statement_timeout_ms: u64) -> u128 {
    idle_bound(info, statement_timeout_ms).as_millis()
}

/// [`idle_bound_ms`] as a duration.
#[must_use]
pub fn idle_bound(info: &ConnInfo, statement_timeout_ms: u64) -> Duration {
    let session = info.idle_in_transaction;
    if session.is_zero() {
        return session;
    }
    session.max(answer_bound(statement_timeout_ms).unwrap_or_default())
}

/// Waits for `fut` at most `limit` (no limit when `None`). On timeout every connection this
/// process has open is closed (the server is presumed unreachable: the other waits would end
/// the same way, one bound later) and [`NoAnswer`] is returned; `idle` is the
/// idle-in-transaction bound of the session, for the message.
///
/// # Errors
///
/// [`NoAnswer`] when `limit` passed first.
pub async fn within<F: Future>(
    limit: Option<Duration>,
    idle: Duration,
    fut: F,
) -> Result<F::Output, NoAnswer> {
    let Some(limit) = limit else {
        return Ok(fut.await);
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => Ok(out),
        Err(_) => {
            let silence = NoAnswer {
                seconds: limit.as_secs(),
                idle_s: idle.as_secs(),
            };
            if let Ok(mut last) = LAST_SILENCE.lock() {
                *last = Some(silence.clone());
            }
            CUT.send_modify(|epoch| *epoch = epoch.wrapping_add(1));
            Err(silence)
        }
    }
}

/// The last bound that fired, for whoever sees its connections closed.
static LAST_SILENCE: std::sync::Mutex<Option<NoAnswer>> = std::sync::Mutex::new(None);

/// How many times a client-side bound has closed the process's connections.
pub fn cut_epoch() -> u64 {
    *CUT.borrow()
}

/// The bound that fired since `epoch` was read, if one did: connections closed because the
/// server went silent (not lost): starting over would only wait again.
pub fn silence_since(epoch: u64) -> Option<NoAnswer> {
    if cut_epoch() == epoch {
        return None;
    }
    LAST_SILENCE.lock().ok().and_then(|l| l.clone())
}

/// A pool of up to `size` connections to the same target.
pub fn pool(info: &ConnInfo, size: usize) -> Result<Pool, ConnectError> {
    let fail = |cause: String| ConnectError {
        target: info.redacted(),
        cause,
    };
    let tls = tls::make_connector(info).map_err(|e| fail(e.to_string()))?;
    let mgr = Manager::from_connect(
        info.pg_config(),
        PoolConnect {
            tls,
            info: info.clone(),
        },
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size.max(1))
        .wait_timeout(Some(Duration::from_secs(60)))
        .create_timeout(Some(handshake_bound(info)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| fail(e.to_string()))
}

/// How the pool opens connections: like [`connect`], the driver task closed by [`within`] (the
/// handshake is bounded by the pool's create timeout).
struct PoolConnect {
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    info: ConnInfo,
}

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let tls = self.tls.clone();
        let config = pg_config.clone();
        Box::pin(async move {
            let (client, connection) = connect_with_fallback(&self.info, config, tls).await?;
            Ok((client, spawn_connection(connection)))
        })
    }
}

/// Get a pooled connection, with the pool's error turned into a [`ConnectError`].
pub async fn pooled(
    pool: &Pool,
    info: &ConnInfo,
) -> Result<deadpool_postgres::Object, ConnectError> {
    pool.get().await.map_err(|e| {
        let cause = match &e {
            deadpool_postgres::PoolError::Backend(pg) => connect_cause(info, pg),
            deadpool_postgres::PoolError::Timeout(_) => format!(
                "no answer to the connection handshake within {} s (the network or a proxy may \
                 be down; set connect_timeout in the URL to wait longer or shorter)",
                handshake_bound(info).as_secs()
            ),
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
            sqlstate: Some(db.code().code().into()),
            detail: db.detail().map(str::to_string),
            hint: db.hint().map(str::to_string),
            server_context: db.where_().map(|w| Box::new(w.to_string())),
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
        sqlstate: e.code().map(|c| c.code().into()),
        detail: None,
        hint: None,
        server_context: None,
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
