//! Connection settings, resolved the way libpq (psql, pg_dump, ...) resolves them.
//!
//! tokio-postgres reads neither the `PG*` environment variables nor `~/.pgpass`, and its
//! connection-string parser rejects options that hosted PostgreSQL providers put in the URLs
//! they hand out (`sslmode=verify-full`, `sslrootcert=...`). This module owns the whole path
//! from "what the user typed or exported" to a [`tokio_postgres::Config`]: it parses
//! `postgres://` URLs and libpq `key=value` strings, overlays the `PG*` environment variables
//! and libpq's defaults, looks the password up in the password file, and renders the result
//! for humans without ever revealing the password. The TLS side of `sslmode` (which
//! certificates to trust) is built from the resolved settings by [`super::tls`].
//!
//! Nothing here opens a connection.
//!
//! This file holds the resolved [`ConnInfo`] ([`ConnInfo::resolve`], [`ConnInfo::pg_config`],
//! [`ConnInfo::redacted`]) and its error type; the parts: `parse` (URL and `key=value` syntax,
//! percent escapes), `keys` (option names, hints, suggestions), `env` (the `PG*` variables,
//! libpq's defaults and the network options) and `pgpass` (the password file).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod env;
mod keys;
mod parse;
mod pgpass;
mod service;

use env::*;
use keys::*;
use parse::*;
use pgpass::*;

/// The port used when none is given, like libpq.
pub const DEFAULT_PORT: u16 = 5432;

/// The `application_name` reported to the server when none is given.
pub const DEFAULT_APPLICATION_NAME: &str = "migval";

/// The unix socket directory used as the default host when it exists (Debian/Ubuntu/RHEL
/// packages of PostgreSQL put the socket there).
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Value of `sslrootcert` that selects the public (Mozilla, via webpki-roots) CA roots.
pub const SYSTEM_ROOT_CERTS: &str = "system";

/// libpq's `sslmode`: whether TLS is used and what is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// libpq tries plain text first; migval (like tokio-postgres) treats it as `prefer`.
    Allow,
    /// Use TLS when the server offers it, without verifying the certificate (libpq's default).
    #[default]
    Prefer,
    /// Always use TLS, without verifying the certificate (encrypted, not authenticated).
    Require,
    /// Always use TLS and verify that the certificate chains to a trusted root; the host name is
    /// not checked.
    VerifyCa,
    /// Always use TLS, verify the chain and check that the certificate names the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling: `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses the libpq spelling (ASCII case-insensitive).
    #[must_use]
    pub fn parse(value: &str) -> Option<SslMode> {
        const ALL: [SslMode; 6] = [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ];
        ALL.into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(value.trim()))
    }

    /// Whether this mode verifies the server certificate chain (`verify-ca`, `verify-full`).
    #[must_use]
    pub fn verifies_certificate(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The explicit connection string (`--db` / `DATABASE_URL`).
    ConnectionString,
    /// An environment variable such as `PGPORT`.
    Env(&'static str),
    /// The entry of the service named by `service=` / `PGSERVICE` in a pg_service.conf.
    Service,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ConnectionString => f.write_str("in the connection string"),
            Origin::Env(var) => write!(f, "in environment variable {var}"),
            Origin::Service => f.write_str("in the service file's entry"),
        }
    }
}

/// Everything that can be wrong with connection settings. No variant ever carries a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    /// The connection string could not be parsed.
    #[error(
        "invalid connection string: {reason}. Expected a URL such as \
         postgres://user:password@host:5432/dbname?sslmode=require or key=value pairs such as \
         \"host=localhost port=5432 dbname=shop\""
    )]
    Syntax {
        /// What is wrong (never contains a value from the string).
        reason: String,
    },
    /// `service=NAME` / `PGSERVICE` names a service no service file has.
    #[error(
        "definition of service \"{name}\" not found (looked in: {searched}); add a [{name}] \
         entry to ~/.pg_service.conf (or the file PGSERVICEFILE names), or fix the name"
    )]
    ServiceNotFound {
        name: String,
        /// The files read, in order.
        searched: String,
    },
    /// A service file that cannot be read or has a line migval cannot take.
    #[error("service file {file}, line {line}: {reason}")]
    ServiceFile {
        file: String,
        /// 1-based; 0 when the file as a whole is the problem.
        line: usize,
        /// What is wrong (never a value from the file).
        reason: String,
    },
    /// A `%XX` escape in a URL is malformed or decodes to something unusable.
    #[error(
        "invalid connection URL: {what} contains an invalid percent-encoding (or decodes to a NUL \
         byte or invalid UTF-8); write a literal '%' as %25"
    )]
    PercentEncoding {
        /// Which part of the URL, e.g. "the password" (never its value).
        what: String,
    },
    /// An option neither migval nor libpq knows.
    #[error(
        "unknown connection option \"{key}\" in the connection string{suggestion}: PostgreSQL's \
         libpq does not know it either, so remove it (flags meant for other tools, such as \
         pgbouncer=true, do not belong in a PostgreSQL connection string)"
    )]
    UnknownKey {
        /// The option name.
        key: String,
        /// `" (did you mean \"sslmode\"?)"` or empty.
        suggestion: String,
    },
    /// A libpq option (or its environment variable) that migval does not implement.
    #[error("connection option \"{key}\" ({origin}) is not supported by migval: {hint}")]
    Unsupported {
        /// The libpq option name.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// What to do instead.
        hint: &'static str,
    },
    /// A value libpq accepts but migval cannot honour (`target_session_attrs=standby`,
    /// `gssencmode=require`, ...): refused rather than silently weakened.
    #[error("connection option {key}={value} ({origin}) is not supported by migval: {hint}")]
    UnsupportedValue {
        /// The libpq option name.
        key: &'static str,
        /// The value given (never a password).
        value: String,
        /// Where it was set.
        origin: Origin,
        /// What to do instead.
        hint: &'static str,
    },
    /// A value that does not parse (ports, timeouts, sslmode). Never used for passwords.
    #[error(
        "invalid value \"{value}\" for connection option \"{key}\" ({origin}): expected {expected}"
    )]
    InvalidValue {
        /// The option name.
        key: &'static str,
        /// The offending value.
        value: String,
        /// Where it was set.
        origin: Origin,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The number of ports fits neither "one for all hosts" nor "one per host".
    #[error(
        "cannot match {ports} port numbers to {hosts} hosts ({origin}): give a single port for \
         all hosts or exactly one port per host"
    )]
    PortCount {
        /// Number of hosts.
        hosts: usize,
        /// Number of ports.
        ports: usize,
        /// Where the ports were set.
        origin: Origin,
    },
    /// `sslrootcert=system` with an sslmode that would not verify the host name.
    #[error(
        "sslmode={sslmode} ({origin}) may not be used with sslrootcert=system: trusting the \
         public CAs only makes sense when the host name is checked; use sslmode=verify-full"
    )]
    WeakSslModeWithSystemRoots {
        /// The weak mode.
        sslmode: SslMode,
        /// Where the sslmode was set.
        origin: Origin,
    },
    /// The root certificate file is missing, unreadable or holds no usable certificate.
    #[error(
        "sslmode={sslmode}: cannot use root certificate file \"{path}\": {reason}. Set sslrootcert \
         (or PGSSLROOTCERT) to a readable PEM file containing the CA certificate of the server, \
         use sslrootcert=system with sslmode=verify-full to trust the public CAs, or choose a \
         weaker sslmode such as require",
        path = .path.display()
    )]
    RootCert {
        /// The file.
        path: PathBuf,
        /// The mode that needed it.
        sslmode: SslMode,
        /// What went wrong.
        reason: String,
    },
    /// `verify-ca` without any root certificate to verify against.
    #[error(
        "sslmode={sslmode} needs a root certificate to verify the server against: set \
         sslrootcert (or PGSSLROOTCERT) to a PEM file with the CA certificate of the server, or \
         create ~/.postgresql/root.crt"
    )]
    MissingRootCert {
        /// The mode that needed it.
        sslmode: SslMode,
    },
    /// The client certificate or key (`sslcert` / `sslkey`) cannot be used.
    #[error("{option} \"{path}\": {reason}", path = .path.display())]
    ClientCert {
        /// `sslcert` or `sslkey` (with where it came from when it was a default).
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// rustls refused to build a configuration (not expected to happen).
    #[error("could not set up TLS: {reason}")]
    Tls {
        /// The rustls error.
        reason: String,
    },
}

/// Resolved connection settings.
///
/// `host` and `port` always have the same, non-zero length when produced by
/// [`ConnInfo::resolve`]. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Host names, IP addresses or unix socket directories (starting with '/'), tried in order.
    pub host: Vec<String>,
    /// One port per host.
    /// Numeric addresses to connect to (libpq `hostaddr`); `host` then only names the server
    /// for certificate checks. Empty when not given.
    pub hostaddr: Vec<std::net::IpAddr>,
    pub port: Vec<u16>,
    /// The user name.
    pub user: String,
    /// The password, if any (never displayed).
    pub password: Option<String>,
    /// The database name.
    pub dbname: String,
    /// Reported to the server as `application_name`; default "migval".
    pub application_name: String,
    /// Time limit per connection attempt; `None` waits indefinitely.
    pub connect_timeout: Option<Duration>,
    /// libpq sslmode; default `prefer`.
    pub sslmode: SslMode,
    /// Trusted root certificates (PEM file), or `system` for the public CAs.
    ///
    /// For `verify-ca`/`verify-full` without `sslrootcert` or `PGSSLROOTCERT`, libpq reads
    /// `~/.postgresql/root.crt`; so does [`ConnInfo::resolve`]. When that file does not exist,
    /// `verify-full` falls back to the Mozilla root store shipped in webpki-roots (this field is
    /// then `None`), while `verify-ca` keeps the path so that the error names the missing file.
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate (PEM; libpq `sslcert` / `PGSSLCERT`), sent when the server asks for
    /// one (`clientcert=verify-ca|verify-full` in pg_hba.conf, or `cert` authentication).
    /// Without the option, `~/.postgresql/postgresql.crt` when that file exists (as libpq).
    pub sslcert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1/RSA or SEC1/EC; libpq `sslkey` / `PGSSLKEY`);
    /// default `~/.postgresql/postgresql.key`. Checked for permissions as libpq does.
    pub sslkey: Option<PathBuf>,
    /// The passphrase of an encrypted `sslkey` (libpq `sslpassword`; connection string or
    /// service file only, as libpq has no variable for it). Never shown.
    pub sslpassword: Option<String>,
    /// libpq `options` / `PGOPTIONS` (command-line options sent to the server, e.g. `-c x=y`).
    pub options: Option<String>,
    /// TCP keepalives, libpq `keepalives` (default on) and `keepalives_idle`,
    /// `keepalives_interval`, `keepalives_count`.
    pub keepalives: Keepalives,
    /// libpq `tcp_user_timeout`: how long sent data may stay unacknowledged before the kernel
    /// drops the connection. Default [`DEFAULT_TCP_USER_TIMEOUT`]; `None` (given as 0) leaves
    /// the system default.
    pub tcp_user_timeout: Option<Duration>,
    /// libpq `target_session_attrs`: which of several hosts is acceptable.
    pub target_session_attrs: TargetSessionAttrs,
    /// libpq `channel_binding`: whether SCRAM channel binding is used or required.
    pub channel_binding: ChannelBinding,
    /// libpq `load_balance_hosts=random`: try the hosts in random order.
    pub load_balance_random: bool,
    /// libpq `sslnegotiation=direct` (PostgreSQL 17+): TLS handshake without the SSLRequest.
    pub ssl_direct: bool,
    /// libpq `sslsni` (default on): send the host name in the TLS handshake.
    pub sslsni: bool,
    /// TLS 1.3 only (`ssl_min_protocol_version=TLSv1.3`).
    pub tls13_only: bool,
    /// TLS 1.2 only (`ssl_max_protocol_version=TLSv1.2`).
    pub tls12_only: bool,
    /// The server's `idle_in_transaction_session_timeout` for migval's sessions: taken from
    /// `options` (`-c idle_in_transaction_session_timeout=...`) when given there, else
    /// [`DEFAULT_IDLE_IN_TRANSACTION`], sent in the startup packet. Zero: disabled.
    pub idle_in_transaction: Duration,
}

/// TCP keepalive settings (libpq names). A `None` duration or count means "the system
/// default" (libpq: a value of 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalives {
    /// `keepalives`: on unless `keepalives=0`.
    pub enabled: bool,
    /// `keepalives_idle`: silence before the first probe.
    pub idle: Option<Duration>,
    /// `keepalives_interval`: between unanswered probes.
    pub interval: Option<Duration>,
    /// `keepalives_count`: unanswered probes before the connection is dead.
    pub count: Option<u32>,
}

impl Default for Keepalives {
    fn default() -> Keepalives {
        Keepalives {
            enabled: true,
            idle: Some(DEFAULT_KEEPALIVES_IDLE),
            interval: Some(DEFAULT_KEEPALIVES_INTERVAL),
            count: Some(DEFAULT_KEEPALIVES_COUNT),
        }
    }
}

/// libpq `target_session_attrs` values tokio-postgres can check (`read-write`, `read-only`,
/// `any`). `primary`, `standby` and `prefer-standby` are refused with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server.
    #[default]
    Any,
    /// A server whose sessions are read-write by default (a primary, not a hot standby).
    ReadWrite,
    /// A server whose sessions are read-only by default.
    ReadOnly,
}

impl TargetSessionAttrs {
    /// The libpq spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
        }
    }
}

/// libpq `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    /// Never use channel binding.
    Disable,
    /// Use it when the server offers SCRAM-SHA-256-PLUS over TLS (libpq's default).
    #[default]
    Prefer,
    /// Refuse a server that does not authenticate with channel binding.
    Require,
}

impl ChannelBinding {
    /// The libpq spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

/// Default `keepalives_idle`: a silent connection is probed after 30 s.
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// Default `keepalives_interval`: then every 10 s.
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
/// Default `keepalives_count`: 3 unanswered probes and the connection is dead (about 60 s
/// after the network went silent).
pub const DEFAULT_KEEPALIVES_COUNT: u32 = 3;
/// Default `tcp_user_timeout`: data unacknowledged for 60 s ends the connection.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `idle_in_transaction_session_timeout` on migval's sessions: the server ends a
/// transaction migval abandoned (network cut, killed client) after 10 minutes.
pub const DEFAULT_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(600);

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("sslpassword", &self.sslpassword.as_ref().map(|_| "***"))
            .field("options", &self.options)
            .field("keepalives", &self.keepalives)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("channel_binding", &self.channel_binding)
            .field("load_balance_random", &self.load_balance_random)
            .field("ssl_direct", &self.ssl_direct)
            .field("sslsni", &self.sslsni)
            .field("tls13_only", &self.tls13_only)
            .field("tls12_only", &self.tls12_only)
            .field("idle_in_transaction", &self.idle_in_transaction)
            .finish()
    }
}

impl ConnInfo {
    /// Resolves connection settings like libpq.
    ///
    /// `explicit` is the `--db` / `DATABASE_URL` value, if any: a `postgres://` or
    /// `postgresql://` URL, or libpq `key=value key2='quoted value'` pairs. `env` looks up
    /// environment variables (production passes `|k| std::env::var(k).ok()`).
    ///
    /// Precedence for every setting: the connection string, then the `PG*` environment
    /// variable, then libpq's default. Empty values count as unset. Without a password, the
    /// password file (`passfile`, `PGPASSFILE` or `~/.pgpass`) is consulted; with several
    /// hosts, the first host that has a matching entry supplies the password.
    ///
    /// # Errors
    ///
    /// Malformed strings, unknown options, options migval does not implement (client
    /// certificates, service files, ...), and values that do not parse.
    pub fn resolve(
        explicit: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnInfo, ConnInfoError> {
        let given = match explicit.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => parse_connection_string(s)?,
            None => HashMap::new(),
        };
        for (var, key, hint) in UNSUPPORTED_ENV {
            if env(var).is_some_and(|v| !v.trim().is_empty()) {
                return Err(ConnInfoError::Unsupported {
                    key: (*key).to_owned(),
                    origin: Origin::Env(var),
                    hint,
                });
            }
        }
        let service = service::lookup(&given, env)?;
        let src = Sources {
            given,
            service,
            env,
        };

        // libpq: hostaddr is where to connect; host, when also given, is the name the
        // certificate is checked against (and the name .pgpass matches).
        let hostaddr_setting = src.get("hostaddr", "PGHOSTADDR");
        let mut hostaddr = Vec::new();
        if let Some((list, origin)) = &hostaddr_setting {
            for item in list.split(',') {
                let ip = item.trim().parse::<std::net::IpAddr>().map_err(|_| {
                    ConnInfoError::InvalidValue {
                        key: "hostaddr",
                        value: item.trim().to_owned(),
                        origin: *origin,
                        expected: "numeric IP addresses (use host for names)",
                    }
                })?;
                hostaddr.push(ip);
            }
        }
        let host_setting = src
            .get("host", "PGHOST")
            .or_else(|| hostaddr_setting.clone());
        let host: Vec<String> = match host_setting {
            Some((list, _)) => list
                .split(',')
                .map(|h| match h.trim() {
                    "" => default_host(),
                    h => h.to_owned(),
                })
                .collect(),
            None => vec![default_host()],
        };

        let port = match src.get("port", "PGPORT") {
            Some((list, origin)) => {
                let ports = list
                    .split(',')
                    .map(|p| parse_port(p, origin))
                    .collect::<Result<Vec<u16>, _>>()?;
                if ports.len() == host.len() {
                    ports
                } else if let [single] = ports.as_slice() {
                    vec![*single; host.len()]
                } else {
                    return Err(ConnInfoError::PortCount {
                        hosts: host.len(),
                        ports: ports.len(),
                        origin,
                    });
                }
            }
            None => vec![DEFAULT_PORT; host.len()],
        };

        let user = src
            .get("user", "PGUSER")
            .map(|(u, _)| u)
            .or_else(|| nonempty(src.env_raw("USER")))
            .or_else(|| nonempty(src.env_raw("USERNAME")))
            .unwrap_or_else(|| "postgres".to_owned());
        let dbname = src
            .get("dbname", "PGDATABASE")
            .map_or_else(|| user.clone(), |(d, _)| d);

        let sslrootcert = src
            .get("sslrootcert", "PGSSLROOTCERT")
            .map(|(p, _)| PathBuf::from(p));
        let system_roots = sslrootcert
            .as_deref()
            .is_some_and(|p| p == Path::new(SYSTEM_ROOT_CERTS));
        let sslmode = match src.get("sslmode", "PGSSLMODE") {
            Some((value, origin)) => {
                let mode = SslMode::parse(&value).ok_or(ConnInfoError::InvalidValue {
                    key: "sslmode",
                    value,
                    origin,
                    expected: "one of disable, allow, prefer, require, verify-ca, verify-full",
                })?;
                if system_roots && mode != SslMode::VerifyFull {
                    return Err(ConnInfoError::WeakSslModeWithSystemRoots {
                        sslmode: mode,
                        origin,
                    });
                }
                mode
            }
            // libpq >= 16: sslrootcert=system makes verify-full the default.
            None if system_roots => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        let sslrootcert = match (sslrootcert, sslmode) {
            (Some(path), _) => Some(path),
            (None, SslMode::VerifyCa) => default_root_cert(&src),
            (None, SslMode::VerifyFull) => default_root_cert(&src).filter(|p| p.is_file()),
            (None, _) => None,
        };

        // Client certificate: given, or libpq's default files when the certificate exists.
        let sslcert = src
            .get("sslcert", "PGSSLCERT")
            .map(|(p, _)| PathBuf::from(p))
            .or_else(|| default_client_file(&src, "postgresql.crt").filter(|p| p.is_file()));
        // sslcertmode=disable: never send one, whatever is configured (libpq).
        let cert_disabled = src
            .get("sslcertmode", "PGSSLCERTMODE")
            .is_some_and(|(v, _)| v.trim() == "disable");
        let sslcert = sslcert.filter(|_| !cert_disabled);
        let sslkey = src
            .get("sslkey", "PGSSLKEY")
            .map(|(p, _)| PathBuf::from(p))
            .or_else(|| {
                sslcert
                    .as_ref()
                    .and_then(|_| default_client_file(&src, "postgresql.key"))
            });

        let sslpassword = src.given("sslpassword").map(|(p, _)| p);

        let application_name = src
            .get("application_name", "PGAPPNAME")
            .or_else(|| src.given("fallback_application_name"))
            .map_or_else(|| DEFAULT_APPLICATION_NAME.to_owned(), |(a, _)| a);
        let connect_timeout = match src.get("connect_timeout", "PGCONNECT_TIMEOUT") {
            Some((value, origin)) => parse_connect_timeout(value, origin)?,
            None => None,
        };
        let options = src.get("options", "PGOPTIONS").map(|(o, _)| o);
        let network = network_settings(&src, options.as_deref())?;

        let mut password = src.get("password", "PGPASSWORD").map(|(p, _)| p);
        if password.is_none() {
            let passfile = src
                .get("passfile", "PGPASSFILE")
                .map(|(p, _)| PathBuf::from(p))
                .or_else(|| default_passfile(&src));
            if let Some(passfile) = passfile {
                password = password_from_file(&passfile, &host, &port, &dbname, &user);
            }
        }

        Ok(ConnInfo {
            host,
            hostaddr,
            port,
            user,
            password,
            dbname,
            application_name,
            connect_timeout,
            sslmode,
            sslrootcert,
            sslcert,
            sslkey,
            sslpassword,
            options,
            keepalives: network.keepalives,
            tcp_user_timeout: network.tcp_user_timeout,
            target_session_attrs: network.target_session_attrs,
            channel_binding: network.channel_binding,
            load_balance_random: network.load_balance_random,
            ssl_direct: network.ssl_direct,
            sslsni: network.sslsni,
            tls13_only: network.tls13_only,
            tls12_only: network.tls12_only,
            idle_in_transaction: network.idle_in_transaction,
        })
    }

    /// A URL describing these settings, safe to print: the password is replaced by `***`
    /// (and `:***` only appears when a password is set), e.g.
    /// `postgres://alice:***@db.example.com:5432/shop?sslmode=verify-full`.
    ///
    /// Apart from the password, the result parses back to the same settings.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut out = String::from("postgres://");
        out.push_str(&percent_encode(&self.user));
        if self.password.is_some() {
            out.push_str(":***");
        }
        out.push('@');
        for (i, host) in self.host.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if host.contains(':') && !host.starts_with('/') {
                out.push('[');
                out.push_str(&host.replace('%', "%25"));
                out.push(']');
            } else {
                out.push_str(&percent_encode(host));
            }
            if let Some(port) = self.port.get(i).or_else(|| self.port.first()) {
                out.push(':');
                out.push_str(&port.to_string());
            }
        }
        out.push('/');
        out.push_str(&percent_encode(&self.dbname));
        out.push_str("?sslmode=");
        out.push_str(self.sslmode.as_str());
        if !self.hostaddr.is_empty() {
            let addrs: Vec<String> = self.hostaddr.iter().map(ToString::to_string).collect();
            out.push_str("&hostaddr=");
            out.push_str(&percent_encode(&addrs.join(",")));
        }
        if let Some(root) = &self.sslrootcert {
            out.push_str("&sslrootcert=");
            out.push_str(&percent_encode(&root.to_string_lossy()));
        }
        if let Some(cert) = &self.sslcert {
            out.push_str("&sslcert=");
            out.push_str(&percent_encode(&cert.to_string_lossy()));
        }
        if let Some(key) = &self.sslkey {
            out.push_str("&sslkey=");
            out.push_str(&percent_encode(&key.to_string_lossy()));
        }
        if self.application_name != DEFAULT_APPLICATION_NAME {
            out.push_str("&application_name=");
            out.push_str(&percent_encode(&self.application_name));
        }
        if let Some(timeout) = self.connect_timeout {
            out.push_str("&connect_timeout=");
            out.push_str(&timeout.as_secs().to_string());
        }
        if let Some(options) = &self.options {
            out.push_str("&options=");
            out.push_str(&percent_encode(options));
        }
        let secs = |d: Option<Duration>| d.map_or(0, |d| d.as_secs());
        let k = self.keepalives;
        let defaults = Keepalives::default();
        if !k.enabled {
            out.push_str("&keepalives=0");
        }
        if k.idle != defaults.idle {
            out.push_str(&format!("&keepalives_idle={}", secs(k.idle)));
        }
        if k.interval != defaults.interval {
            out.push_str(&format!("&keepalives_interval={}", secs(k.interval)));
        }
        if k.count != defaults.count {
            out.push_str(&format!("&keepalives_count={}", k.count.unwrap_or(0)));
        }
        if self.tcp_user_timeout != Some(DEFAULT_TCP_USER_TIMEOUT) {
            let ms = self.tcp_user_timeout.map_or(0, |d| d.as_millis());
            out.push_str(&format!("&tcp_user_timeout={ms}"));
        }
        if self.target_session_attrs != TargetSessionAttrs::Any {
            out.push_str("&target_session_attrs=");
            out.push_str(self.target_session_attrs.as_str());
        }
        if self.channel_binding != ChannelBinding::Prefer {
            out.push_str("&channel_binding=");
            out.push_str(self.channel_binding.as_str());
        }
        if self.load_balance_random {
            out.push_str("&load_balance_hosts=random");
        }
        if self.ssl_direct {
            out.push_str("&sslnegotiation=direct");
        }
        if !self.sslsni {
            out.push_str("&sslsni=0");
        }
        if self.tls13_only {
            out.push_str("&ssl_min_protocol_version=TLSv1.3");
        }
        if self.tls12_only {
            out.push_str("&ssl_max_protocol_version=TLSv1.2");
        }
        out
    }

    /// Same settings, another database (used to create and drop scratch databases).
    ///
    /// The password is kept as is, even if it came from a password file entry for the
    /// original database only.
    #[must_use]
    pub fn with_dbname(&self, dbname: &str) -> ConnInfo {
        ConnInfo {
            dbname: dbname.to_owned(),
            ..self.clone()
        }
    }

    /// The tokio-postgres configuration for these settings.
    ///
    /// sslmode maps to tokio-postgres as `disable` -> `Disable`, `allow`/`prefer` -> `Prefer`,
    /// `require`/`verify-ca`/`verify-full` -> `Require` (certificate verification is done by the
    /// connector from [`super::tls::make_connector`]). As in libpq, TLS is never attempted over
    /// unix sockets: when every host is a socket directory the mode is `Disable`, so that
    /// `PGSSLMODE=require` does not break local socket connections.
    ///
    /// The startup packet carries `options` with migval's
    /// `idle_in_transaction_session_timeout` (see [`ConnInfo::pg_config_without_idle_bound`]
    /// for servers and poolers that refuse the `options` startup parameter).
    #[must_use]
    pub fn pg_config(&self) -> tokio_postgres::Config {
        self.config_with(true)
    }

    /// [`ConnInfo::pg_config`] without migval's idle-in-transaction bound in the startup
    /// packet: for PgBouncer and other poolers that refuse the `options` startup parameter
    /// ("unsupported startup parameter: options") when the user gave no options. Captures
    /// still set the bound on their own transactions (`SET LOCAL`).
    #[must_use]
    pub fn pg_config_without_idle_bound(&self) -> tokio_postgres::Config {
        self.config_with(false)
    }

    fn config_with(&self, idle_bound: bool) -> tokio_postgres::Config {
        use tokio_postgres::config::SslMode as PgSslMode;

        let mut config = tokio_postgres::Config::new();
        for host in &self.host {
            config.host(host.as_str());
        }
        for port in &self.port {
            config.port(*port);
        }
        for addr in &self.hostaddr {
            config.hostaddr(*addr);
        }
        config.user(self.user.as_str());
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        config.dbname(self.dbname.as_str());
        config.application_name(self.application_name.as_str());
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout(timeout);
        }
        // The user's options first; migval's idle-in-transaction bound only when they do not
        // set one themselves.
        let mut options = self.options.clone().unwrap_or_default();
        if idle_bound && !mentions_idle_timeout(&options) {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!(
                "-c idle_in_transaction_session_timeout={}",
                self.idle_in_transaction.as_millis()
            ));
        }
        if !options.is_empty() {
            config.options(options.as_str());
        }
        config.keepalives(self.keepalives.enabled);
        // tokio-postgres has no "system default" for the idle time; libpq's 0 means the
        // kernel's, which is 2 hours on Linux.
        config.keepalives_idle(self.keepalives.idle.unwrap_or(Duration::from_secs(7200)));
        if let Some(interval) = self.keepalives.interval {
            config.keepalives_interval(interval);
        }
        if let Some(count) = self.keepalives.count {
            config.keepalives_retries(count);
        }
        if let Some(timeout) = self.tcp_user_timeout {
            config.tcp_user_timeout(timeout);
        }
        config.target_session_attrs(match self.target_session_attrs {
            TargetSessionAttrs::Any => tokio_postgres::config::TargetSessionAttrs::Any,
            TargetSessionAttrs::ReadWrite => tokio_postgres::config::TargetSessionAttrs::ReadWrite,
            TargetSessionAttrs::ReadOnly => tokio_postgres::config::TargetSessionAttrs::ReadOnly,
        });
        config.channel_binding(match self.channel_binding {
            ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
            ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
            ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
        });
        if self.load_balance_random {
            config.load_balance_hosts(tokio_postgres::config::LoadBalanceHosts::Random);
        }
        if self.ssl_direct {
            config.ssl_negotiation(tokio_postgres::config::SslNegotiation::Direct);
        }
        let only_sockets =
            cfg!(unix) && !self.host.is_empty() && self.host.iter().all(|h| h.starts_with('/'));
        config.ssl_mode(if only_sockets {
            PgSslMode::Disable
        } else {
            match self.sslmode {
                SslMode::Disable => PgSslMode::Disable,
                SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
            }
        });
        config
    }
}

/// Helpers shared by the unit tests of every part of this module.
#[cfg(test)]
mod test_support {
    pub(super) use super::*;
    pub(super) use tokio_postgres::config::{Host, SslMode as PgSslMode};

    /// A distinctive password: no test output may ever contain it.
    pub(super) const SECRET: &str = "Zq9-UNIQUE-pw-71";

    pub(super) fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key: &str| map.get(key).cloned()
    }

    pub(super) fn resolve_with(
        explicit: &str,
        vars: &[(&str, &str)],
    ) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::resolve(Some(explicit), &env_of(vars))
    }

    pub(super) fn ok(explicit: &str) -> ConnInfo {
        match resolve_with(explicit, &[]) {
            Ok(info) => info,
            Err(e) => panic!("{explicit:?} should resolve, got: {e}"),
        }
    }

    pub(super) fn err(explicit: &str, vars: &[(&str, &str)]) -> String {
        match resolve_with(explicit, vars) {
            Ok(info) => panic!("{explicit:?} should fail, got {info:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A file under the temp dir with the given unix mode, removed on drop.
    pub(super) struct TempFile(PathBuf);

    impl TempFile {
        pub(super) fn new(name: &str, content: &str, mode: u32) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("migval-conninfo-{}-{name}", std::process::id()));
            std::fs::write(&path, content).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            TempFile(path)
        }

        pub(super) fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;

    #[test]
    fn errors_never_contain_the_password() {
        let inputs = [
            format!("postgres://alice:{SECRET}%zz@h/db"),
            format!("postgres://alice:{SECRET}%00@h/db"),
            format!("postgres://alice:{SECRET}/x@h/db"),
            format!("postgres://alice:{SECRET}?x=y@h/db"),
            format!("host=h password='{SECRET}"),
            format!("host=h password {SECRET}"),
            format!("host=h {SECRET}"),
            format!("postgres://h/db?password={SECRET}&pgbouncer=true"),
            format!("postgres://h/db?password={SECRET}%C3%28"),
            format!("postgres://h/db?{SECRET}"),
            SECRET.to_owned(),
        ];
        for input in &inputs {
            let message = err(input, &[]);
            assert!(!message.contains(SECRET), "{input}: {message}");
            let debug = format!("{:?}", resolve_with(input, &[]));
            assert!(!debug.contains(SECRET), "{input}: {debug}");
        }
    }

    #[test]
    fn redacted_and_debug_never_contain_the_password() {
        let info = ok(&format!(
            "postgres://alice:{SECRET}@db.example.com:5432/shop?sslmode=verify-full"
        ));
        assert_eq!(info.password.as_deref(), Some(SECRET));
        assert_eq!(
            info.redacted(),
            "postgres://alice:***@db.example.com:5432/shop?sslmode=verify-full"
        );
        let debug = format!("{info:?} {info:#?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        let config_debug = format!("{:?}", info.pg_config());
        assert!(!config_debug.contains(SECRET), "{config_debug}");

        // Password from the environment: same.
        let info =
            ConnInfo::resolve(None, &env_of(&[("PGPASSWORD", SECRET), ("PGHOST", "h")])).unwrap();
        assert!(!info.redacted().contains(SECRET));
        assert!(info.redacted().contains(":***@"));
        assert!(!format!("{info:?}").contains(SECRET));

        // No password: no ":***".
        let info = ok("postgres://alice@db.example.com/shop");
        assert_eq!(
            info.redacted(),
            "postgres://alice@db.example.com:5432/shop?sslmode=prefer"
        );
    }

    #[test]
    fn redacted_parses_back_to_the_same_settings() {
        for url in [
            "postgres://al%20ice:pw@h1:5433,[::1]:5434,%2Ftmp%2Fsock:5435/my%2Fdb\
             ?sslmode=verify-ca&sslrootcert=%2Fca%20dir%2Fca.pem&application_name=a%26b\
             &connect_timeout=9&options=-c%20x%3Dy",
            "host=/var/run/postgresql user=u dbname=d",
        ] {
            let info = ok(url);
            let again = ok(&info.redacted());
            assert_eq!(
                again,
                ConnInfo {
                    password: info.password.as_ref().map(|_| "***".to_owned()),
                    ..info.clone()
                },
                "{}",
                info.redacted()
            );
        }
    }

    #[test]
    fn with_dbname_keeps_everything_else() {
        let info = ok("postgres://u:pw@h:5433/db?sslmode=require");
        let other = info.with_dbname("scratch_1");
        assert_eq!(other.dbname, "scratch_1");
        assert_eq!(
            ConnInfo {
                dbname: "db".into(),
                ..other
            },
            info
        );
    }
}
