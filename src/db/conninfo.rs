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

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

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
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ConnectionString => f.write_str("in the connection string"),
            Origin::Env(var) => write!(f, "in environment variable {var}"),
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
        let src = Sources { given, env };

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

// ---------------------------------------------------------------------------------------------
// Option names

/// How migval treats a libpq option name.
enum KeyKind {
    /// Implemented; the canonical name.
    Supported(&'static str),
    /// Accepted by libpq but changes behaviour migval cannot honour: an error with this hint.
    Unsupported(&'static str),
}

const SUPPORTED_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "options",
    "passfile",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "sslnegotiation",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "sslcompression",
    "sslcertmode",
    "client_encoding",
    "min_protocol_version",
    "max_protocol_version",
];

const HINT_CLIENT_CERT: &str = "sslcertmode=require is not supported; remove it (a client \
     certificate given with sslcert/sslkey is sent whenever the server asks for one)";
const HINT_KEY_PASSWORD: &str = "password-protected client keys are not supported; give sslkey a \
     key file without a passphrase (e.g. `openssl pkey -in client.key -out client-plain.key`, \
     then chmod 0600 it)";
const HINT_CRL: &str = "certificate revocation lists are not supported; remove the option";
const HINT_SERVICE: &str = "connection service files (pg_service.conf) are not supported; put \
     the host, port, dbname and user of the service entry into --db / DATABASE_URL or PG* \
     variables instead";
const HINT_GSS: &str = "GSSAPI/Kerberos authentication is not supported; authenticate with a \
     password (in the URL, PGPASSWORD or ~/.pgpass) instead";
const HINT_AUTH_RESTRICTION: &str =
    "restricting the authentication method is not supported; remove the option";

/// Environment variables of options in the "unsupported" class: libpq would act on them, so
/// silently ignoring them could connect somewhere else or fail confusingly.
const UNSUPPORTED_ENV: &[(&str, &str, &str)] = &[
    ("PGSERVICE", "service", HINT_SERVICE),
    ("PGSSLCRL", "sslcrl", HINT_CRL),
    ("PGSSLCRLDIR", "sslcrldir", HINT_CRL),
    ("PGREQUIREPEER", "requirepeer", HINT_AUTH_RESTRICTION),
    ("PGREQUIREAUTH", "require_auth", HINT_AUTH_RESTRICTION),
    ("PGSERVICEFILE", "servicefile", HINT_SERVICE),
    ("PGKRBSRVNAME", "krbsrvname", HINT_GSS),
    ("PGGSSLIB", "gsslib", HINT_GSS),
    ("PGGSSDELEGATION", "gssdelegation", HINT_GSS),
    (
        "PGREQUIRESSL",
        "requiressl",
        "requiressl is obsolete; use sslmode=require",
    ),
];

fn classify(key: &str) -> Option<KeyKind> {
    if let Some(canonical) = SUPPORTED_KEYS.iter().find(|k| **k == key) {
        return Some(KeyKind::Supported(canonical));
    }
    let kind = match key {
        "gsslib" | "gssdelegation" | "krbsrvname" => KeyKind::Unsupported(HINT_GSS),
        "servicefile" => KeyKind::Unsupported(HINT_SERVICE),
        "sslkeylogfile" => KeyKind::Unsupported(
            "writing TLS key logs is not supported; remove the option (debug with psql instead)",
        ),
        "tty" => KeyKind::Unsupported("tty is obsolete (PostgreSQL 14 removed it); remove it"),
        "sslpassword" => KeyKind::Unsupported(HINT_KEY_PASSWORD),
        "sslcrl" | "sslcrldir" => KeyKind::Unsupported(HINT_CRL),
        "service" => KeyKind::Unsupported(HINT_SERVICE),
        "requirepeer" | "require_auth" => KeyKind::Unsupported(HINT_AUTH_RESTRICTION),
        "replication" => {
            KeyKind::Unsupported("replication connections are not supported; remove the option")
        }
        "requiressl" => KeyKind::Unsupported("requiressl is obsolete; use sslmode=require"),
        "scram_client_key" | "scram_server_key" => {
            KeyKind::Unsupported("SCRAM pass-through keys are not supported; use a password")
        }
        "oauth_issuer" | "oauth_client_id" | "oauth_client_secret" | "oauth_scope" => {
            KeyKind::Unsupported("OAuth authentication is not supported; use a password")
        }
        _ => return None,
    };
    Some(kind)
}

/// `" (did you mean \"sslmode\"?)"` when a supported key is within two edits of `key`.
fn suggestion(key: &str) -> String {
    SUPPORTED_KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(prev.len());
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute =
                prev.get(j).copied().unwrap_or(usize::MAX - 1) + usize::from(ca != *cb);
            let delete = prev.get(j + 1).copied().unwrap_or(usize::MAX - 1) + 1;
            let insert = cur.get(j).copied().unwrap_or(usize::MAX - 1) + 1;
            cur.push(substitute.min(delete).min(insert));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Names a word of the connection string in an error without echoing arbitrary text (which
/// could be part of a password): known option names are quoted, anything else is described.
fn describe_word(word: &str, position: usize) -> String {
    if classify(word).is_some() || word == "ssl" {
        format!("\"{word}\"")
    } else {
        format!("word {position}")
    }
}

/// Checks option names and keeps the supported ones (the last occurrence wins, like libpq).
fn collect_settings(
    pairs: Vec<(String, String)>,
) -> Result<HashMap<&'static str, String>, ConnInfoError> {
    let mut settings = HashMap::new();
    for (key, value) in pairs {
        match classify(&key) {
            Some(KeyKind::Supported(canonical)) => {
                settings.insert(canonical, value);
            }
            Some(KeyKind::Unsupported(hint)) => {
                return Err(ConnInfoError::Unsupported {
                    key,
                    origin: Origin::ConnectionString,
                    hint,
                });
            }
            None => {
                return Err(ConnInfoError::UnknownKey {
                    suggestion: suggestion(&key),
                    key,
                });
            }
        }
    }
    Ok(settings)
}

// ---------------------------------------------------------------------------------------------
// Connection strings

fn parse_connection_string(s: &str) -> Result<HashMap<&'static str, String>, ConnInfoError> {
    let pairs = if let Some(rest) = strip_scheme(s) {
        parse_url(rest)?
    } else if s.contains('=') {
        parse_key_value(s)?
    } else if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("jdbc:")) {
        return Err(syntax(
            "JDBC URLs are not understood; drop the \"jdbc:\" prefix and move user and password \
             into the URL (postgres://user:password@host/dbname)",
        ));
    } else {
        return Err(syntax(
            "it is neither a postgres:// URL nor key=value pairs",
        ));
    };
    collect_settings(pairs)
}

fn syntax(reason: impl Into<String>) -> ConnInfoError {
    ConnInfoError::Syntax {
        reason: reason.into(),
    }
}

/// The part after `postgres://` or `postgresql://` (scheme matched case-insensitively).
fn strip_scheme(s: &str) -> Option<&str> {
    ["postgresql://", "postgres://"].iter().find_map(|scheme| {
        s.get(..scheme.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
            .and_then(|_| s.get(scheme.len()..))
    })
}

/// libpq `key=value` pairs separated by whitespace; values may be single-quoted, and `\`
/// escapes the next character (quoted or not).
fn parse_key_value(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut pairs = Vec::new();
    let mut after_unquoted_password = false;
    let skip_space = |i: &mut usize| {
        while chars.get(*i).is_some_and(|c| c.is_whitespace()) {
            *i += 1;
        }
    };
    loop {
        skip_space(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while chars
            .get(i)
            .is_some_and(|c| !c.is_whitespace() && *c != '=')
        {
            i += 1;
        }
        let key: String = chars.get(start..i).unwrap_or_default().iter().collect();
        let position = pairs.len() + 1;
        // `password=two words=x`: the word after an unquoted password may be the rest of the
        // password, so an unknown option name there is never echoed.
        if after_unquoted_password && classify(&key).is_none() && key != "ssl" {
            return Err(syntax(format!(
                "pair {position} is not a known option; it follows an unquoted password, so it \
                 may be part of it: single-quote a password that contains spaces \
                 (password='...')"
            )));
        }
        if key.is_empty() {
            return Err(syntax(format!(
                "pair {position} has a value but no option name before '='"
            )));
        }
        skip_space(&mut i);
        if chars.get(i) != Some(&'=') {
            return Err(syntax(format!(
                "missing \"=\" after {}",
                describe_word(&key, position)
            )));
        }
        i += 1;
        skip_space(&mut i);
        let mut value = String::new();
        after_unquoted_password = key == "password" && chars.get(i) != Some(&'\'');
        if chars.get(i) == Some(&'\'') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(syntax(format!(
                            "unterminated quoted value for {}",
                            describe_word(&key, position)
                        )));
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        i += 1;
                        if let Some(c) = chars.get(i) {
                            value.push(*c);
                            i += 1;
                        }
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c.is_whitespace() {
                    break;
                }
                i += 1;
                if c == '\\' {
                    if let Some(&escaped) = chars.get(i) {
                        value.push(escaped);
                        i += 1;
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// A URL after its scheme: `[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`.
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    // Like libpq, look for the user-info '@' before the first '/', so that a '?' in a password
    // works; but an '@' inside a query that directly follows the host list
    // (`postgres://host?application_name=me@laptop`) is not user info.
    let slash = rest.find('/').unwrap_or(rest.len());
    let head = rest.get(..slash).unwrap_or(rest);
    let at =
        head.rfind('@').filter(
            |&at| match head.get(..at).and_then(|before| before.find('?')) {
                Some(q) => !head.get(q..at).is_some_and(|query| query.contains('=')),
                None => true,
            },
        );
    let (userinfo, after_userinfo) = match at {
        Some(at) => (head.get(..at), rest.get(at + 1..).unwrap_or_default()),
        None => (None, rest),
    };

    let netloc_end = after_userinfo
        .find(['/', '?'])
        .unwrap_or(after_userinfo.len());
    let netloc = after_userinfo.get(..netloc_end).unwrap_or_default();
    let tail = after_userinfo.get(netloc_end..).unwrap_or_default();
    let (path, query) = match tail.strip_prefix('/') {
        Some(path_and_query) => match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        },
        None => ("", tail.strip_prefix('?')),
    };
    if userinfo.is_none() && path.contains('@') {
        return Err(syntax(
            "there is an '@' after the host list; percent-encode special characters in the \
             password and database name ('@' as %40, '/' as %2F, '?' as %3F)",
        ));
    }

    let mut pairs = Vec::new();
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        let user = percent_decode(user, || "the user name".to_owned())?;
        if !user.is_empty() {
            pairs.push(("user".to_owned(), user));
        }
        if let Some(password) = password {
            let password = percent_decode(password, || "the password".to_owned())?;
            if !password.is_empty() {
                pairs.push(("password".to_owned(), password));
            }
        }
    }

    let (hosts, ports) = parse_host_list(netloc)?;
    // Without user info but with an '@' later on, a "port" that is not a number is most likely
    // a piece of a password with an unencoded '/' or '?': do not echo it in an error.
    if userinfo.is_none()
        && tail.contains('@')
        && ports
            .iter()
            .any(|p| !p.trim().is_empty() && u16::from_str(p.trim()).is_err())
    {
        return Err(syntax(
            "cannot read the host list; percent-encode special characters in the password \
             ('@' as %40, '/' as %2F, '?' as %3F, '=' as %3D)",
        ));
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".to_owned(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_owned(), ports.join(",")));
    }

    let dbname = percent_decode(path, || "the database name".to_owned())?;
    if !dbname.is_empty() {
        pairs.push(("dbname".to_owned(), dbname));
    }

    for (n, param) in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let position = n + 1;
        let Some((raw_key, raw_value)) = param.split_once('=') else {
            let key = percent_decode(param, || format!("query parameter {position}"))?;
            return Err(syntax(format!(
                "query parameter {} has no \"=value\"",
                describe_word(&key, position)
            )));
        };
        let key = percent_decode(raw_key, || {
            format!("the name of query parameter {position}")
        })?;
        let value = percent_decode(raw_value, || {
            format!("the value of query parameter {position}")
        })?;
        if key == "ssl" {
            // libpq's JDBC compatibility: ssl=true means sslmode=require.
            if value == "true" {
                pairs.push(("sslmode".to_owned(), "require".to_owned()));
                continue;
            }
            return Err(ConnInfoError::UnknownKey {
                key,
                suggestion: " (only ssl=true is understood, as sslmode=require)".to_owned(),
            });
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `host[:port],[v6addr][:port],...` -> (decoded hosts, raw ports); empty entries mean default.
fn parse_host_list(netloc: &str) -> Result<(Vec<String>, Vec<String>), ConnInfoError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    if netloc.is_empty() {
        return Ok((hosts, ports));
    }
    for item in netloc.split(',') {
        let (host, port) = if let Some(bracketed) = item.strip_prefix('[') {
            let Some((addr, after)) = bracketed.split_once(']') else {
                return Err(syntax("an IPv6 address is missing its closing ']'"));
            };
            let port = match after {
                "" => "",
                _ => after.strip_prefix(':').ok_or_else(|| {
                    syntax("unexpected characters after ']' of an IPv6 address (expected ':port')")
                })?,
            };
            (addr, port)
        } else if item.matches(':').count() > 1 {
            return Err(syntax(
                "an IPv6 address in a URL must be enclosed in brackets, e.g. postgres://[::1]:5432/db",
            ));
        } else {
            item.split_once(':').unwrap_or((item, ""))
        };
        hosts.push(percent_decode(host, || "a host name".to_owned())?);
        ports.push(percent_decode(port, || "a port".to_owned())?);
    }
    Ok((hosts, ports))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (`+` stays `+`, as in libpq). `what` names the part for the error,
/// which never includes the text itself.
fn percent_decode(s: &str, what: impl FnOnce() -> String) -> Result<String, ConnInfoError> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut valid = true;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) if hi != 0 || lo != 0 => {
                    out.push(hi * 16 + lo);
                    i += 3;
                }
                _ => {
                    valid = false;
                    break;
                }
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) if valid => Ok(decoded),
        _ => Err(ConnInfoError::PercentEncoding { what: what() }),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Settings from the connection string, the environment and defaults

struct Sources<'a> {
    given: HashMap<&'static str, String>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    /// A non-empty value from the connection string.
    fn given(&self, key: &str) -> Option<(String, Origin)> {
        self.given
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (v.clone(), Origin::ConnectionString))
    }

    /// A non-empty `PG*` environment variable.
    fn env_var(&self, var: &'static str) -> Option<(String, Origin)> {
        nonempty(self.env_raw(var)).map(|v| (v, Origin::Env(var)))
    }

    fn env_raw(&self, var: &str) -> Option<String> {
        (self.env)(var)
    }

    /// Connection string first, then the environment variable.
    fn get(&self, key: &str, var: &'static str) -> Option<(String, Origin)> {
        self.given(key).or_else(|| self.env_var(var))
    }
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn default_host() -> String {
    if cfg!(unix) && Path::new(DEFAULT_SOCKET_DIR).is_dir() {
        DEFAULT_SOCKET_DIR.to_owned()
    } else {
        "localhost".to_owned()
    }
}

fn parse_port(raw: &str, origin: Origin) -> Result<u16, ConnInfoError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(DEFAULT_PORT);
    }
    match u16::from_str(raw) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConnInfoError::InvalidValue {
            key: "port",
            value: raw.to_owned(),
            origin,
            expected: "a port number between 1 and 65535 (or a comma-separated list, one per host)",
        }),
    }
}

/// libpq: whole seconds; zero or negative waits forever; 1 is raised to 2.
fn parse_connect_timeout(value: String, origin: Origin) -> Result<Option<Duration>, ConnInfoError> {
    let invalid = |value: String| ConnInfoError::InvalidValue {
        key: "connect_timeout",
        value,
        origin,
        expected: "a whole number of seconds (0 waits indefinitely)",
    };
    let Ok(seconds) = i64::from_str(value.trim()) else {
        return Err(invalid(value));
    };
    if seconds <= 0 {
        return Ok(None);
    }
    let seconds = u64::try_from(seconds).map_err(|_| invalid(value))?;
    Ok(Some(Duration::from_secs(seconds.max(2))))
}

/// The network and session-choice settings of [`ConnInfo`], resolved together.
struct Network {
    keepalives: Keepalives,
    tcp_user_timeout: Option<Duration>,
    target_session_attrs: TargetSessionAttrs,
    channel_binding: ChannelBinding,
    load_balance_random: bool,
    ssl_direct: bool,
    sslsni: bool,
    tls13_only: bool,
    tls12_only: bool,
    idle_in_transaction: Duration,
}

/// Options libpq has but no environment variable for.
const NO_ENV: &str = "";

/// Reads every libpq option that changes how the connection behaves on the network or which
/// server is chosen. Each is either honoured or refused with an error naming it: none is
/// dropped silently.
fn network_settings(src: &Sources<'_>, options: Option<&str>) -> Result<Network, ConnInfoError> {
    let get = |key: &'static str, var: &'static str| {
        if var.is_empty() {
            src.given(key)
        } else {
            src.get(key, var)
        }
    };
    let invalid =
        |key: &'static str, value: String, origin, expected| ConnInfoError::InvalidValue {
            key,
            value,
            origin,
            expected,
        };
    let refuse = |key: &'static str, value: String, origin, hint| ConnInfoError::UnsupportedValue {
        key,
        value,
        origin,
        hint,
    };
    // libpq: an integer; 0 (or negative) means the system default.
    let seconds = |key: &'static str, default: Duration| -> Result<Option<Duration>, _> {
        match get(key, NO_ENV) {
            None => Ok(Some(default)),
            Some((value, origin)) => match i64::from_str(value.trim()) {
                Ok(n) if n <= 0 => Ok(None),
                Ok(n) => Ok(Some(Duration::from_secs(u64::try_from(n).unwrap_or(0)))),
                Err(_) => Err(invalid(
                    key,
                    value,
                    origin,
                    "a whole number of seconds (0 for the system default)",
                )),
            },
        }
    };
    let flag = |key: &'static str, var: &'static str, default: bool| match get(key, var) {
        None => Ok(default),
        Some((value, origin)) => match value.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(invalid(key, value, origin, "0 or 1")),
        },
    };

    let enabled = flag("keepalives", NO_ENV, true)?;
    let idle = seconds("keepalives_idle", DEFAULT_KEEPALIVES_IDLE)?;
    let interval = seconds("keepalives_interval", DEFAULT_KEEPALIVES_INTERVAL)?;
    let count = match get("keepalives_count", NO_ENV) {
        None => Some(DEFAULT_KEEPALIVES_COUNT),
        Some((value, origin)) => match i64::from_str(value.trim()) {
            Ok(n) if n <= 0 => None,
            Ok(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(_) => {
                return Err(invalid(
                    "keepalives_count",
                    value,
                    origin,
                    "a whole number of probes (0 for the system default)",
                ));
            }
        },
    };
    let tcp_user_timeout = match get("tcp_user_timeout", NO_ENV) {
        None => Some(DEFAULT_TCP_USER_TIMEOUT),
        Some((value, origin)) => match i64::from_str(value.trim()) {
            Ok(n) if n <= 0 => None,
            Ok(n) => Some(Duration::from_millis(u64::try_from(n).unwrap_or(0))),
            Err(_) => {
                return Err(invalid(
                    "tcp_user_timeout",
                    value,
                    origin,
                    "a whole number of milliseconds (0 for the system default)",
                ));
            }
        },
    };

    let target_session_attrs = match get("target_session_attrs", "PGTARGETSESSIONATTRS") {
        None => TargetSessionAttrs::Any,
        Some((value, origin)) => match value.trim() {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            "primary" | "standby" | "prefer-standby" => {
                return Err(refuse(
                    "target_session_attrs",
                    value,
                    origin,
                    "only any, read-write and read-only can be checked; use read-write to reach \
                     the primary of a multi-host URL, or list only the server you mean",
                ));
            }
            _ => {
                return Err(invalid(
                    "target_session_attrs",
                    value,
                    origin,
                    "one of any, read-write, read-only",
                ));
            }
        },
    };
    let channel_binding = match get("channel_binding", "PGCHANNELBINDING") {
        None => ChannelBinding::Prefer,
        Some((value, origin)) => match value.trim() {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            _ => {
                return Err(invalid(
                    "channel_binding",
                    value,
                    origin,
                    "one of disable, prefer, require",
                ));
            }
        },
    };
    let load_balance_random = match get("load_balance_hosts", "PGLOADBALANCEHOSTS") {
        None => false,
        Some((value, origin)) => match value.trim() {
            "disable" => false,
            "random" => true,
            _ => {
                return Err(invalid(
                    "load_balance_hosts",
                    value,
                    origin,
                    "disable or random",
                ));
            }
        },
    };
    let ssl_direct = match get("sslnegotiation", "PGSSLNEGOTIATION") {
        None => false,
        Some((value, origin)) => match value.trim() {
            "postgres" => false,
            "direct" => true,
            _ => {
                return Err(invalid(
                    "sslnegotiation",
                    value,
                    origin,
                    "postgres or direct",
                ));
            }
        },
    };
    let sslsni = flag("sslsni", "PGSSLSNI", true)?;
    let tls13_only = match get("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION") {
        None => false,
        Some((value, origin)) => match value.trim() {
            // rustls never speaks anything older than TLS 1.2: a lower minimum changes nothing.
            "TLSv1" | "TLSv1.1" | "TLSv1.2" => false,
            "TLSv1.3" => true,
            _ => {
                return Err(invalid(
                    "ssl_min_protocol_version",
                    value,
                    origin,
                    "one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 (migval speaks TLS 1.2 and 1.3)",
                ));
            }
        },
    };
    let tls12_only = match get("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION") {
        None => false,
        Some((value, origin)) => match value.trim() {
            "TLSv1.2" => true,
            "TLSv1.3" => false,
            "TLSv1" | "TLSv1.1" => {
                return Err(refuse(
                    "ssl_max_protocol_version",
                    value,
                    origin,
                    "TLS older than 1.2 is not supported; use TLSv1.2 or TLSv1.3",
                ));
            }
            _ => {
                return Err(invalid(
                    "ssl_max_protocol_version",
                    value,
                    origin,
                    "TLSv1.2 or TLSv1.3",
                ));
            }
        },
    };
    if tls12_only && tls13_only {
        return Err(syntax(
            "ssl_min_protocol_version=TLSv1.3 and ssl_max_protocol_version=TLSv1.2 leave no TLS \
             version to use",
        ));
    }

    // Options that only restate what migval always does, or that it cannot honour.
    if let Some((value, origin)) = get("gssencmode", "PGGSSENCMODE") {
        match value.trim() {
            // migval never uses GSSAPI encryption: prefer falls back to TLS or plain, as libpq
            // does when no Kerberos credentials exist.
            "disable" | "prefer" => {}
            "require" => {
                return Err(refuse(
                    "gssencmode",
                    value,
                    origin,
                    "GSSAPI encryption is not supported; use sslmode=require or verify-full",
                ));
            }
            _ => {
                return Err(invalid(
                    "gssencmode",
                    value,
                    origin,
                    "one of disable, prefer, require",
                ));
            }
        }
    }
    if let Some((value, origin)) = get("sslcompression", "PGSSLCOMPRESSION") {
        match value.trim() {
            "0" => {}
            "1" => {
                return Err(refuse(
                    "sslcompression",
                    value,
                    origin,
                    "TLS compression is insecure and not supported (libpq ignores it too); \
                     remove the option",
                ));
            }
            _ => return Err(invalid("sslcompression", value, origin, "0 or 1")),
        }
    }
    if let Some((value, origin)) = get("sslcertmode", "PGSSLCERTMODE") {
        match value.trim() {
            // migval never sends a client certificate.
            "disable" | "allow" => {}
            "require" => {
                return Err(refuse("sslcertmode", value, origin, HINT_CLIENT_CERT));
            }
            _ => {
                return Err(invalid(
                    "sslcertmode",
                    value,
                    origin,
                    "one of disable, allow, require",
                ));
            }
        }
    }
    if let Some((value, origin)) = get("client_encoding", "PGCLIENTENCODING") {
        let v = value.trim().to_ascii_lowercase().replace(['-', '_'], "");
        if !matches!(v.as_str(), "utf8" | "unicode" | "auto") {
            return Err(refuse(
                "client_encoding",
                value,
                origin,
                "migval always talks UTF8 to the server (values are read exactly, whatever the \
                 database encoding); remove the option or use client_encoding=UTF8",
            ));
        }
    }
    if let Some((value, origin)) = get("min_protocol_version", "PGMINPROTOCOLVERSION")
        && value.trim() != "3.0"
    {
        return Err(refuse(
            "min_protocol_version",
            value,
            origin,
            "migval speaks protocol version 3.0 only; remove the option",
        ));
    }
    if let Some((value, origin)) = get("max_protocol_version", "PGMAXPROTOCOLVERSION")
        && !matches!(value.trim(), "3.0" | "3.2" | "latest")
    {
        return Err(invalid(
            "max_protocol_version",
            value,
            origin,
            "3.0, 3.2 or latest (migval speaks 3.0)",
        ));
    }

    let idle_in_transaction = options
        .and_then(idle_timeout_in_options)
        .unwrap_or(DEFAULT_IDLE_IN_TRANSACTION);
    Ok(Network {
        keepalives: Keepalives {
            enabled,
            idle,
            interval,
            count,
        },
        tcp_user_timeout,
        target_session_attrs,
        channel_binding,
        load_balance_random,
        ssl_direct,
        sslsni,
        tls13_only,
        tls12_only,
        idle_in_transaction,
    })
}

/// Whether libpq `options` set `idle_in_transaction_session_timeout` themselves.
fn mentions_idle_timeout(options: &str) -> bool {
    options.contains("idle_in_transaction_session_timeout")
}

/// The `idle_in_transaction_session_timeout` set in libpq `options`
/// (`-c idle_in_transaction_session_timeout=5min` or `--idle_in_transaction_session_timeout=5min`),
/// in PostgreSQL's units (default ms; us, ms, s, min, h, d). `None` when absent or unreadable
/// (the server then judges the value, and migval assumes its default).
fn idle_timeout_in_options(options: &str) -> Option<Duration> {
    const KEY: &str = "idle_in_transaction_session_timeout";
    let at = options.rfind(KEY)?;
    let rest = options.get(at + KEY.len()..)?.trim_start();
    let value = rest.strip_prefix('=')?.trim_start();
    let value = value.split_whitespace().next()?.trim_matches(['\'', '"']);
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let n: u64 = value.get(..digits)?.parse().ok()?;
    let unit = value.get(digits..)?.trim();
    let ms = match unit {
        "" | "ms" => n,
        "us" => n / 1000,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// `$HOME` on unix, `%APPDATA%\postgresql` on Windows: where libpq looks for its files.
fn config_dir(src: &Sources<'_>) -> Option<PathBuf> {
    if cfg!(windows) {
        nonempty(src.env_raw("APPDATA")).map(|d| Path::new(&d).join("postgresql"))
    } else {
        nonempty(src.env_raw("HOME")).map(PathBuf::from)
    }
}

fn default_passfile(src: &Sources<'_>) -> Option<PathBuf> {
    let dir = config_dir(src)?;
    Some(if cfg!(windows) {
        dir.join("pgpass.conf")
    } else {
        dir.join(".pgpass")
    })
}

/// `~/.postgresql/<name>` (Windows: `%APPDATA%\postgresql\<name>`), libpq's default place for
/// the client certificate and key.
fn default_client_file(src: &Sources<'_>, name: &str) -> Option<PathBuf> {
    let dir = config_dir(src)?;
    Some(if cfg!(windows) {
        dir.join(name)
    } else {
        dir.join(".postgresql").join(name)
    })
}

fn default_root_cert(src: &Sources<'_>) -> Option<PathBuf> {
    let dir = config_dir(src)?;
    Some(if cfg!(windows) {
        dir.join("root.crt")
    } else {
        dir.join(".postgresql").join("root.crt")
    })
}

// ---------------------------------------------------------------------------------------------
// Password file

/// The password from a libpq password file for the first host that has a matching entry.
///
/// Like libpq, the file is skipped when it is not a regular file or (on unix) when group or
/// others have any access to it; libpq prints a warning in that case, migval stays silent.
fn password_from_file(
    path: &Path,
    hosts: &[String],
    ports: &[u16],
    dbname: &str,
    user: &str,
) -> Option<String> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() || !permissions_ok(&metadata) {
        return None;
    }
    let content = std::fs::read(path).ok()?;
    let entries: Vec<Vec<PassField>> = content
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(split_passfile_line)
        .filter(|fields| fields.len() >= 5)
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        // A socket directory matches the `localhost` entry, as in libpq.
        let host = if host.is_empty() || host.starts_with('/') {
            "localhost"
        } else {
            host.as_str()
        };
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        let wanted = [host, port.as_str(), dbname, user];
        let found = entries.iter().find(|fields| {
            wanted
                .iter()
                .zip(fields.iter())
                .all(|(want, field)| field.matches(want))
        });
        if let Some(fields) = found {
            // The first match wins, even with an empty password (which means "none").
            return fields
                .get(4)
                .map(|f| f.value.clone())
                .filter(|p| !p.is_empty());
        }
    }
    None
}

fn permissions_ok(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o077 == 0
}

struct PassField {
    /// The field was exactly `*` (unescaped).
    wildcard: bool,
    /// The field with `\` escapes removed.
    value: String,
}

impl PassField {
    fn matches(&self, wanted: &str) -> bool {
        self.wildcard || self.value == wanted
    }
}

/// Splits a password file line at unescaped ':' and removes the `\` escapes.
fn split_passfile_line(line: &str) -> Vec<PassField> {
    let mut fields = Vec::new();
    let mut value = String::new();
    let mut raw_star = true;
    let mut chars = line.chars().peekable();
    let mut raw_len = 0usize;
    while let Some(c) = chars.next() {
        match c {
            ':' => {
                fields.push(PassField {
                    wildcard: raw_star && raw_len == 1,
                    value: std::mem::take(&mut value),
                });
                raw_star = true;
                raw_len = 0;
                continue;
            }
            '\\' if chars.peek().is_some() => {
                if let Some(escaped) = chars.next() {
                    value.push(escaped);
                }
                raw_star = false;
            }
            c => {
                value.push(c);
                raw_star &= c == '*';
            }
        }
        raw_len += 1;
    }
    fields.push(PassField {
        wildcard: raw_star && raw_len == 1,
        value,
    });
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::{Host, SslMode as PgSslMode};

    /// A distinctive password: no test output may ever contain it.
    const SECRET: &str = "Zq9-UNIQUE-pw-71";

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |key: &str| map.get(key).cloned()
    }

    fn resolve_with(explicit: &str, vars: &[(&str, &str)]) -> Result<ConnInfo, ConnInfoError> {
        ConnInfo::resolve(Some(explicit), &env_of(vars))
    }

    fn ok(explicit: &str) -> ConnInfo {
        match resolve_with(explicit, &[]) {
            Ok(info) => info,
            Err(e) => panic!("{explicit:?} should resolve, got: {e}"),
        }
    }

    fn err(explicit: &str, vars: &[(&str, &str)]) -> String {
        match resolve_with(explicit, vars) {
            Ok(info) => panic!("{explicit:?} should fail, got {info:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A file under the temp dir with the given unix mode, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, content: &str, mode: u32) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("migval-conninfo-{}-{name}", std::process::id()));
            std::fs::write(&path, content).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn url_with_everything() {
        let info = ok("postgresql://alice:s3cr%40t@db.example.com:6543/shop%20db\
             ?sslmode=require&application_name=ci%20run&connect_timeout=10\
             &options=-c%20search_path%3Dapp&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(info.host, vec!["db.example.com"]);
        assert_eq!(info.port, vec![6543]);
        assert_eq!(info.user, "alice");
        assert_eq!(info.password.as_deref(), Some("s3cr@t"));
        assert_eq!(info.dbname, "shop db");
        assert_eq!(info.application_name, "ci run");
        assert_eq!(info.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(info.sslmode, SslMode::Require);
        assert_eq!(info.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(info.options.as_deref(), Some("-c search_path=app"));

        let config = info.pg_config();
        assert_eq!(config.get_hosts(), &[Host::Tcp("db.example.com".into())]);
        assert_eq!(config.get_ports(), &[6543]);
        assert_eq!(config.get_user(), Some("alice"));
        assert_eq!(config.get_password(), Some(&b"s3cr@t"[..]));
        assert_eq!(config.get_dbname(), Some("shop db"));
        assert_eq!(config.get_application_name(), Some("ci run"));
        assert_eq!(
            config.get_options(),
            Some("-c search_path=app -c idle_in_transaction_session_timeout=600000")
        );
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(config.get_ssl_mode(), PgSslMode::Require);
    }

    #[test]
    fn both_url_schemes_and_query_overrides_userinfo() {
        let info = ok("postgres://a@h/db?user=b&dbname=other&port=7000&host=h2");
        assert_eq!(info.user, "b");
        assert_eq!(info.dbname, "other");
        assert_eq!(info.host, vec!["h2"]);
        assert_eq!(info.port, vec![7000]);
        assert_eq!(ok("POSTGRESQL://h/db").host, vec!["h"]);
    }

    #[test]
    fn key_value_with_quotes_and_escapes() {
        let info = ok(r"host=db.example.com port = 5433 user='bob smith'
                password='it\'s a \\ secret' dbname='my db' application_name=tool\ one
                options='-c statement_timeout=0' sslmode=verify-ca sslrootcert='/etc/my ca.pem'");
        assert_eq!(info.host, vec!["db.example.com"]);
        assert_eq!(info.port, vec![5433]);
        assert_eq!(info.user, "bob smith");
        assert_eq!(info.password.as_deref(), Some(r"it's a \ secret"));
        assert_eq!(info.dbname, "my db");
        assert_eq!(info.application_name, "tool one");
        assert_eq!(info.options.as_deref(), Some("-c statement_timeout=0"));
        assert_eq!(info.sslmode, SslMode::VerifyCa);
        assert_eq!(info.sslrootcert, Some(PathBuf::from("/etc/my ca.pem")));
        assert_eq!(ok("dbname=''").dbname, "postgres");
    }

    #[test]
    fn env_overlay_and_precedence() {
        let vars = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGAPPNAME", "envapp"),
            ("PGCONNECT_TIMEOUT", "7"),
            ("PGOPTIONS", "-c work_mem=64MB"),
            ("PGSSLROOTCERT", "/env/ca.pem"),
            ("USER", "unixuser"),
        ];
        // Only environment.
        let info = ConnInfo::resolve(None, &env_of(&vars)).unwrap();
        assert_eq!(info.host, vec!["envhost"]);
        assert_eq!(info.port, vec![6000]);
        assert_eq!(info.user, "envuser");
        assert_eq!(info.password.as_deref(), Some("envpw"));
        assert_eq!(info.dbname, "envdb");
        assert_eq!(info.sslmode, SslMode::Require);
        assert_eq!(info.application_name, "envapp");
        assert_eq!(info.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(info.options.as_deref(), Some("-c work_mem=64MB"));
        assert_eq!(info.sslrootcert, Some(PathBuf::from("/env/ca.pem")));

        // The connection string wins where it says something; the rest comes from PG*.
        let info = resolve_with(
            "postgres://urluser:urlpw@urlhost/urldb?sslmode=disable",
            &vars,
        )
        .unwrap();
        assert_eq!(info.host, vec!["urlhost"]);
        assert_eq!(info.port, vec![6000]);
        assert_eq!(info.user, "urluser");
        assert_eq!(info.password.as_deref(), Some("urlpw"));
        assert_eq!(info.dbname, "urldb");
        assert_eq!(info.sslmode, SslMode::Disable);
        assert_eq!(info.application_name, "envapp");

        // Empty values count as unset.
        let info = resolve_with("host='' user=", &vars).unwrap();
        assert_eq!(info.host, vec!["envhost"]);
        assert_eq!(info.user, "envuser");

        // PGHOSTADDR acts as a host when PGHOST is not set.
        let info = ConnInfo::resolve(None, &env_of(&[("PGHOSTADDR", "10.1.2.3")])).unwrap();
        assert_eq!(info.host, vec!["10.1.2.3"]);
    }

    #[test]
    fn defaults_like_libpq() {
        let info = ConnInfo::resolve(None, &env_of(&[("USER", "carol")])).unwrap();
        let expected_host = if cfg!(unix) && Path::new("/var/run/postgresql").is_dir() {
            "/var/run/postgresql"
        } else {
            "localhost"
        };
        assert_eq!(info.host, vec![expected_host]);
        assert_eq!(info.port, vec![5432]);
        assert_eq!(info.user, "carol");
        assert_eq!(info.dbname, "carol");
        assert_eq!(info.password, None);
        assert_eq!(info.sslmode, SslMode::Prefer);
        assert_eq!(info.application_name, "migval");
        assert_eq!(info.connect_timeout, None);
        assert_eq!(info.sslrootcert, None);
        assert_eq!(info.options, None);

        let info = ConnInfo::resolve(Some("   "), &env_of(&[])).unwrap();
        assert_eq!(info.user, "postgres");
        assert_eq!(info.dbname, "postgres");

        let info = ok("host=h fallback_application_name=fallback");
        assert_eq!(info.application_name, "fallback");
        let info = ok("host=h application_name=app fallback_application_name=fallback");
        assert_eq!(info.application_name, "app");
    }

    #[test]
    fn hosted_verify_full_with_rootcert_is_accepted() {
        let info = ok(
            "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/\
                 postgres?sslmode=verify-full&sslrootcert=%2Fhome%2Fci%2Fprod-ca-2021.crt",
        );
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(
            info.sslrootcert,
            Some(PathBuf::from("/home/ci/prod-ca-2021.crt"))
        );
        assert_eq!(info.user, "postgres.abcd");
        assert_eq!(info.pg_config().get_ssl_mode(), PgSslMode::Require);

        let info = ok("postgres://u@rds.example.com/db?sslmode=verify-ca&sslrootcert=/ca.pem");
        assert_eq!(info.sslmode, SslMode::VerifyCa);
        assert_eq!(info.pg_config().get_ssl_mode(), PgSslMode::Require);

        for (mode, pg) in [
            ("disable", PgSslMode::Disable),
            ("allow", PgSslMode::Prefer),
            ("prefer", PgSslMode::Prefer),
            ("require", PgSslMode::Require),
        ] {
            let info = ok(&format!("postgres://h/db?sslmode={mode}"));
            assert_eq!(info.sslmode.as_str(), mode);
            assert_eq!(info.pg_config().get_ssl_mode(), pg, "{mode}");
        }
        // libpq's JDBC compatibility spelling.
        assert_eq!(ok("postgres://h/db?ssl=true").sslmode, SslMode::Require);
    }

    #[test]
    fn verify_modes_default_to_home_root_crt() {
        let vars = [("HOME", "/nonexistent-migval-home")];
        let info = resolve_with("host=h sslmode=verify-ca", &vars).unwrap();
        assert_eq!(
            info.sslrootcert,
            Some(PathBuf::from(
                "/nonexistent-migval-home/.postgresql/root.crt"
            ))
        );
        // verify-full without root.crt falls back to the webpki (Mozilla) roots.
        let info = resolve_with("host=h sslmode=verify-full", &vars).unwrap();
        assert_eq!(info.sslrootcert, None);
        // Weaker modes do not pick up root.crt.
        let info = resolve_with("host=h sslmode=require", &vars).unwrap();
        assert_eq!(info.sslrootcert, None);
    }

    #[test]
    fn sslrootcert_system() {
        let info = ok("postgres://h/db?sslrootcert=system");
        assert_eq!(info.sslmode, SslMode::VerifyFull);
        assert_eq!(info.sslrootcert, Some(PathBuf::from("system")));
        let message = err("postgres://h/db?sslrootcert=system&sslmode=require", &[]);
        assert!(message.contains("sslmode=require"), "{message}");
        assert!(message.contains("verify-full"), "{message}");
        let message = err("host=h sslrootcert=system", &[("PGSSLMODE", "verify-ca")]);
        assert!(message.contains("PGSSLMODE"), "{message}");
    }

    #[test]
    fn words_after_an_unquoted_password_are_never_echoed() {
        // The password "s3cret tail=end" written without quotes.
        for conn in [
            "host=h password=s3cret tail=end dbname=d",
            "host=h password=s3cret tail dbname=d",
        ] {
            let message = err(conn, &[]);
            assert!(!message.contains("tail"), "{message}");
            assert!(!message.contains("end"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
            if conn.contains("tail=") {
                assert!(message.contains("password='...'"), "{message}");
            }
        }
        // Quoted, it is one value and the string is valid.
        let info = ok("host=h password='s3cret tail=end' dbname=d");
        assert_eq!(info.password.as_deref(), Some("s3cret tail=end"));
    }

    #[test]
    fn unknown_key_error_names_the_key() {
        let message = err("postgres://u:pw@h/db?pgbouncer=true", &[]);
        assert!(message.contains("\"pgbouncer\""), "{message}");
        assert!(message.contains("remove it"), "{message}");

        let message = err("host=h sslmod=require", &[]);
        assert!(message.contains("\"sslmod\""), "{message}");
        assert!(message.contains("did you mean \"sslmode\""), "{message}");

        let message = err("postgres://h/db?ssl=false", &[]);
        assert!(message.contains("\"ssl\""), "{message}");
    }

    #[test]
    fn unsupported_libpq_options_are_errors() {
        for key in ["sslpassword", "service", "sslcrl", "require_auth"] {
            let message = err(&format!("postgres://h/db?{key}=x"), &[]);
            assert!(message.contains(&format!("\"{key}\"")), "{message}");
            assert!(message.contains("not supported"), "{message}");
        }
        let message = err("host=h sslpassword=secret", &[]);
        assert!(
            message.contains("password-protected client keys"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
        let message = err("host=h", &[("PGSERVICE", "prod")]);
        assert!(message.contains("PGSERVICE"), "{message}");
        assert!(message.contains("pg_service.conf"), "{message}");
    }

    #[test]
    fn client_certificate_options_are_kept_and_survive_redaction() {
        let info =
            ok("postgres://u@h/db?sslmode=require&sslcert=%2Fc%2Fclient.crt&sslkey=%2Fc%2Fk.pem");
        assert_eq!(info.sslcert, Some(PathBuf::from("/c/client.crt")));
        assert_eq!(info.sslkey, Some(PathBuf::from("/c/k.pem")));
        assert_eq!(ok(&info.redacted()), info);
        let info = ok("host=h");
        assert_eq!(info.sslcert, None, "no default file: no certificate");
    }

    #[test]
    fn network_options_are_honoured_with_safe_defaults() {
        // Defaults: keepalives on, 30 s / 10 s / 3, tcp_user_timeout 60 s, idle 10 min.
        let config = ok("postgres://h/db").pg_config();
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(config.get_keepalives_retries(), Some(3));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(60))
        );
        assert_eq!(
            config.get_options(),
            Some("-c idle_in_transaction_session_timeout=600000")
        );

        let info = ok(
            "postgres://h/db?keepalives=1&keepalives_idle=5&keepalives_interval=2\
             &keepalives_count=4&tcp_user_timeout=7000&target_session_attrs=read-write\
             &channel_binding=require&gssencmode=disable&load_balance_hosts=random\
             &sslnegotiation=direct&sslsni=0&ssl_min_protocol_version=TLSv1.3\
             &client_encoding=UTF8&sslcompression=0&sslcertmode=allow",
        );
        let config = info.pg_config();
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(config.get_keepalives_retries(), Some(4));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_millis(7000))
        );
        assert_eq!(
            config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            config.get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        assert_eq!(
            config.get_load_balance_hosts(),
            tokio_postgres::config::LoadBalanceHosts::Random
        );
        assert_eq!(
            config.get_ssl_negotiation(),
            tokio_postgres::config::SslNegotiation::Direct
        );
        assert!(!info.sslsni && info.tls13_only && !info.tls12_only);
        // Every non-default setting survives redaction.
        assert_eq!(
            ok(&info.redacted()),
            ConnInfo {
                password: None,
                ..info
            }
        );

        // For poolers that refuse the options startup parameter: none sent.
        assert_eq!(
            ok("postgres://h/db")
                .pg_config_without_idle_bound()
                .get_options(),
            None
        );
        assert_eq!(
            ok("postgres://h/db?options=-c%20x%3Dy")
                .pg_config_without_idle_bound()
                .get_options(),
            Some("-c x=y")
        );

        let config = ok("host=h keepalives=0 tcp_user_timeout=0").pg_config();
        assert!(!config.get_keepalives());
        assert_eq!(config.get_tcp_user_timeout(), None);
        // From the environment, like libpq.
        let info = resolve_with(
            "host=h",
            &[
                ("PGTARGETSESSIONATTRS", "read-only"),
                ("PGCHANNELBINDING", "disable"),
            ],
        )
        .unwrap();
        assert_eq!(info.target_session_attrs, TargetSessionAttrs::ReadOnly);
        assert_eq!(info.channel_binding, ChannelBinding::Disable);
    }

    #[test]
    fn idle_in_transaction_timeout_from_options() {
        let info = ok("postgres://h/db?options=-c%20idle_in_transaction_session_timeout%3D3s");
        assert_eq!(info.idle_in_transaction, Duration::from_secs(3));
        // The user's own setting is sent as given, migval's default is not added.
        assert_eq!(
            info.pg_config().get_options(),
            Some("-c idle_in_transaction_session_timeout=3s")
        );
        for (options, ms) in [
            ("-c idle_in_transaction_session_timeout=1500", 1500),
            ("--idle_in_transaction_session_timeout=2min", 120_000),
            ("-c idle_in_transaction_session_timeout=0", 0),
        ] {
            let info = ConnInfo::resolve(None, &env_of(&[("PGOPTIONS", options)])).unwrap();
            assert_eq!(
                info.idle_in_transaction,
                Duration::from_millis(ms),
                "{options}"
            );
        }
    }

    #[test]
    fn every_libpq_option_is_honoured_or_refused_by_name() {
        for (input, needle) in [
            (
                "host=h target_session_attrs=primary",
                "target_session_attrs=primary",
            ),
            ("host=h target_session_attrs=standby", "read-write"),
            (
                "host=h target_session_attrs=prefer-standby",
                "prefer-standby",
            ),
            (
                "host=h target_session_attrs=bogus",
                "\"target_session_attrs\"",
            ),
            ("host=h channel_binding=always", "\"channel_binding\""),
            ("host=h gssencmode=require", "gssencmode=require"),
            ("host=h krbsrvname=postgres", "\"krbsrvname\""),
            ("host=h gsslib=gssapi", "\"gsslib\""),
            ("host=h gssdelegation=1", "\"gssdelegation\""),
            ("host=h servicefile=/x", "\"servicefile\""),
            ("host=h sslkeylogfile=/tmp/k", "\"sslkeylogfile\""),
            ("host=h tty=/dev/tty", "\"tty\""),
            ("host=h sslcompression=1", "sslcompression=1"),
            ("host=h sslcertmode=require", "sslcertmode=require"),
            ("host=h client_encoding=LATIN1", "client_encoding=LATIN1"),
            (
                "host=h min_protocol_version=3.2",
                "min_protocol_version=3.2",
            ),
            (
                "host=h ssl_max_protocol_version=TLSv1.1",
                "ssl_max_protocol_version",
            ),
            ("host=h keepalives=yes", "\"keepalives\""),
            ("host=h keepalives_idle=soon", "\"keepalives_idle\""),
            ("host=h tcp_user_timeout=1s", "\"tcp_user_timeout\""),
            ("host=h load_balance_hosts=always", "\"load_balance_hosts\""),
        ] {
            let message = err(input, &[]);
            assert!(message.contains(needle), "{input}: {message}");
        }
        let message = err("host=h", &[("PGKRBSRVNAME", "postgres")]);
        assert!(message.contains("PGKRBSRVNAME"), "{message}");
    }

    #[test]
    fn percent_encoded_password_with_at_and_colon() {
        let info = ok("postgres://alice:p%40ss%3Aw0rd%2F%3F%25@db.example.com/shop");
        assert_eq!(info.password.as_deref(), Some("p@ss:w0rd/?%"));
        assert_eq!(info.user, "alice");
        assert_eq!(info.host, vec!["db.example.com"]);
        assert_eq!(info.dbname, "shop");

        // Unencoded ':' , '@' and '?' are tolerated in the password.
        let info = ok("postgres://alice:a:b@c?d@db.example.com/shop");
        assert_eq!(info.password.as_deref(), Some("a:b@c?d"));
        assert_eq!(info.host, vec!["db.example.com"]);

        // An '@' in a query value is not user info.
        let info = ok("postgres://db.example.com?application_name=me@laptop");
        assert_eq!(info.host, vec!["db.example.com"]);
        assert_eq!(info.application_name, "me@laptop");
        assert_eq!(info.password, None);

        // '+' is not a space (libpq).
        assert_eq!(ok("postgres://u:a+b@h/db").password.as_deref(), Some("a+b"));
    }

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

    #[test]
    fn multiple_hosts() {
        let info = ok("postgres://u@h1:5432,h2:5433,[::1]:5434/db");
        assert_eq!(info.host, vec!["h1", "h2", "::1"]);
        assert_eq!(info.port, vec![5432, 5433, 5434]);
        let config = info.pg_config();
        assert_eq!(config.get_hosts().len(), 3);
        assert_eq!(config.get_ports(), &[5432, 5433, 5434]);

        let info = ok("postgres://u@h1,h2:5433/db");
        assert_eq!(info.port, vec![5432, 5433]);

        let info = ok("host=h1,h2 port=6000");
        assert_eq!(info.host, vec!["h1", "h2"]);
        assert_eq!(info.port, vec![6000, 6000]);

        let message = err("host=a,b,c port=1,2", &[]);
        assert!(message.contains("2 port numbers to 3 hosts"), "{message}");

        let info = resolve_with("postgres://u@h1,h2/db", &[("PGPORT", "7000,7001")]).unwrap();
        assert_eq!(info.port, vec![7000, 7001]);
    }

    #[test]
    fn ipv6_hosts() {
        let info = ok("postgres://u@[::1]:5433/db");
        assert_eq!(info.host, vec!["::1"]);
        assert_eq!(info.port, vec![5433]);
        assert_eq!(info.pg_config().get_hosts(), &[Host::Tcp("::1".into())]);
        assert!(
            info.redacted().contains("@[::1]:5433/"),
            "{}",
            info.redacted()
        );

        let info = ok("postgresql://[2001:db8::7]/db");
        assert_eq!(info.host, vec!["2001:db8::7"]);
        assert_eq!(info.port, vec![5432]);

        assert_eq!(ok("host=::1 port=5433").host, vec!["::1"]);

        let message = err("postgres://::1:5432/db", &[]);
        assert!(message.contains("brackets"), "{message}");
        let message = err("postgres://[::1/db", &[]);
        assert!(message.contains("']'"), "{message}");
    }

    #[test]
    fn unix_socket_hosts() {
        let info = ok("postgres://u@%2Fvar%2Frun%2Fpostgresql/db");
        assert_eq!(info.host, vec!["/var/run/postgresql"]);
        assert_eq!(info.port, vec![5432]);

        let info = ok("postgresql:///db?host=/tmp/pg&port=5433&sslmode=require");
        assert_eq!(info.host, vec!["/tmp/pg"]);
        assert_eq!(info.port, vec![5433]);
        assert_eq!(info.dbname, "db");
        let config = info.pg_config();
        #[cfg(unix)]
        {
            assert_eq!(config.get_hosts(), &[Host::Unix(PathBuf::from("/tmp/pg"))]);
            // libpq never uses TLS over unix sockets, whatever sslmode says.
            assert_eq!(config.get_ssl_mode(), PgSslMode::Disable);
        }
        assert!(
            info.redacted().contains("@%2Ftmp%2Fpg:5433/db"),
            "{}",
            info.redacted()
        );

        // Mixed socket and TCP hosts keep the mode.
        let info = ok("host=/tmp/pg,db.example.com sslmode=require");
        assert_eq!(info.pg_config().get_ssl_mode(), PgSslMode::Require);
    }

    #[test]
    fn invalid_values_name_key_value_and_origin() {
        for (input, needles) in [
            (
                "host=h port=abc",
                &["\"port\"", "\"abc\"", "connection string"][..],
            ),
            ("host=h port=0", &["\"port\"", "\"0\""][..]),
            ("postgres://h:70000/db", &["\"port\"", "\"70000\""][..]),
            (
                "host=h sslmode=bogus",
                &["\"sslmode\"", "\"bogus\"", "verify-full"][..],
            ),
            (
                "host=h connect_timeout=soon",
                &["\"connect_timeout\"", "\"soon\""][..],
            ),
        ] {
            let message = err(input, &[]);
            for needle in needles {
                assert!(message.contains(needle), "{input}: {message}");
            }
        }
        let message = err("host=h", &[("PGPORT", "54x")]);
        assert!(message.contains("PGPORT"), "{message}");
        assert!(message.contains("\"54x\""), "{message}");
    }

    #[test]
    fn connect_timeout_like_libpq() {
        assert_eq!(ok("host=h connect_timeout=0").connect_timeout, None);
        assert_eq!(ok("host=h connect_timeout=-5").connect_timeout, None);
        assert_eq!(
            ok("host=h connect_timeout=1").connect_timeout,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            ok("host=h connect_timeout=30").connect_timeout,
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn syntax_errors_are_explained() {
        let message = err("just-a-word", &[]);
        assert!(message.contains("postgres://"), "{message}");
        let message = err("jdbc:postgresql://h/db", &[]);
        assert!(message.contains("jdbc:"), "{message}");
        let message = err("host=h dbname='unterminated", &[]);
        assert!(message.contains("unterminated"), "{message}");
        assert!(message.contains("\"dbname\""), "{message}");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for input in [
            "postgres://",
            "postgres://@",
            "postgres://:@:/?",
            "postgres://[",
            "postgres://[]:",
            "postgres://%",
            "postgres://%e",
            "postgres://h/%",
            "postgres://h/db?&&=&a",
            "postgres://a:b@c:d@e",
            "postgres://h,,,/db",
            "postgres://h:,:/db",
            "postgres://ü:ö@ä/é?sslmode=ß",
            "=",
            "'",
            "a=\\",
            "a='\\",
            "host=",
            "host= ",
            "host=h port=,,",
            "\u{0}=\u{0}",
        ] {
            let _ = resolve_with(input, &[("PGPORT", "")]);
        }
        let info = ok("postgres://h,,/db");
        assert_eq!(info.host.len(), 3);
        assert_eq!(info.port.len(), 3);
    }

    #[test]
    #[cfg(unix)]
    fn pgpass_matching() {
        let file = TempFile::new(
            "pgpass",
            "# comment line\n\
             \n\
             db.example.com:5432:shop:alice:first\\:pw\r\n\
             other:*:*:*:nope\n\
             *:5433:*:bob:bob\\\\pw\n\
             localhost:5432:*:carol:sock:pw:ignored\n\
             db\\:x:*:*:dave:escaped-host\n\
             *:*:*:*:fallback\n",
            0o600,
        );
        let vars = [("PGPASSFILE", file.path())];
        let password = |explicit: &str| resolve_with(explicit, &vars).unwrap().password;

        assert_eq!(
            password("host=db.example.com dbname=shop user=alice").as_deref(),
            Some("first:pw")
        );
        assert_eq!(
            password("host=anything port=5433 user=bob").as_deref(),
            Some("bob\\pw")
        );
        // A socket directory matches the `localhost` entry; the password stops at ':'.
        assert_eq!(
            password("host=/tmp/sock user=carol").as_deref(),
            Some("sock")
        );
        assert_eq!(
            password("host=db:x user=dave").as_deref(),
            Some("escaped-host")
        );
        assert_eq!(
            password("host=db.example.com dbname=other user=alice").as_deref(),
            Some("fallback")
        );
        // An explicit or PGPASSWORD password wins.
        assert_eq!(
            password("host=db.example.com dbname=shop user=alice password=given").as_deref(),
            Some("given")
        );
        let info = resolve_with(
            "host=db.example.com dbname=shop user=alice",
            &[("PGPASSFILE", file.path()), ("PGPASSWORD", "fromenv")],
        )
        .unwrap();
        assert_eq!(info.password.as_deref(), Some("fromenv"));
        // The passfile key works too, and $HOME/.pgpass is not read when PGPASSFILE is set.
        let info = resolve_with(
            &format!(
                "host=db.example.com dbname=shop user=alice passfile='{}'",
                file.path()
            ),
            &[("HOME", "/nonexistent-migval-home")],
        )
        .unwrap();
        assert_eq!(info.password.as_deref(), Some("first:pw"));
    }

    #[test]
    #[cfg(unix)]
    fn pgpass_first_matching_host_and_first_line_win() {
        let file = TempFile::new(
            "pgpass-hosts",
            "h2:*:*:u:second-host\nh2:*:*:u:later-line\n*:*:db:*:\nh9:*:*:*:never\n",
            0o600,
        );
        let vars = [("PGPASSFILE", file.path())];
        let info = resolve_with("postgres://u@h1,h2/x", &vars).unwrap();
        assert_eq!(info.password.as_deref(), Some("second-host"));
        // A matching line with an empty password means "no password".
        let info = resolve_with("postgres://u@h9/db", &vars).unwrap();
        assert_eq!(info.password, None);
    }

    #[test]
    #[cfg(unix)]
    fn pgpass_with_loose_permissions_is_ignored() {
        let file = TempFile::new("pgpass-loose", "*:*:*:*:leaked\n", 0o644);
        let info = resolve_with("host=h user=u", &[("PGPASSFILE", file.path())]).unwrap();
        assert_eq!(info.password, None);
        let file = TempFile::new("pgpass-group", "*:*:*:*:leaked\n", 0o640);
        let info = resolve_with("host=h user=u", &[("PGPASSFILE", file.path())]).unwrap();
        assert_eq!(info.password, None);
        // A missing file or a directory is not an error either.
        let info = resolve_with("host=h", &[("PGPASSFILE", "/nonexistent/pgpass")]).unwrap();
        assert_eq!(info.password, None);
        let dir = std::env::temp_dir();
        let info = resolve_with("host=h", &[("PGPASSFILE", dir.to_str().unwrap())]).unwrap();
        assert_eq!(info.password, None);
    }

    #[test]
    #[cfg(unix)]
    fn pgpass_default_location_is_home() {
        let home =
            std::env::temp_dir().join(format!("migval-conninfo-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let pgpass = home.join(".pgpass");
        std::fs::write(&pgpass, "*:*:*:*:from-home\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let info = resolve_with("host=h", &[("HOME", home.to_str().unwrap())]).unwrap();
        let _ = std::fs::remove_dir_all(&home);
        assert_eq!(info.password.as_deref(), Some("from-home"));
    }
}
