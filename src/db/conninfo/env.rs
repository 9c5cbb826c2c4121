//! The settings that are not in the connection string: the `PG*` environment variables and
//! libpq's defaults (host, port, socket directory, config directory and the default client
//! certificate, key, root certificate and password-file paths), overlaid in libpq's order,
//! and the network and session-choice options resolved from all of them.

use super::*;

pub(super) struct Sources<'a> {
    pub(super) given: HashMap<&'static str, String>,
    /// The settings of the service entry the connection names (empty without one).
    pub(super) service: HashMap<&'static str, String>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Sources<'_> {
    /// A non-empty value from the connection string, else from the service entry.
    pub(super) fn given(&self, key: &str) -> Option<(String, Origin)> {
        let from = |map: &HashMap<&'static str, String>, origin: Origin| {
            map.get(key)
                .filter(|v| !v.is_empty())
                .map(|v| (v.clone(), origin))
        };
        from(&self.given, Origin::ConnectionString).or_else(|| from(&self.service, Origin::Service))
    }

    /// A non-empty `PG*` environment variable.
    pub(super) fn env_var(&self, var: &'static str) -> Option<(String, Origin)> {
        nonempty(self.env_raw(var)).map(|v| (v, Origin::Env(var)))
    }

    pub(super) fn env_raw(&self, var: &str) -> Option<String> {
        (self.env)(var)
    }

    /// Connection string first, then the environment variable.
    pub(super) fn get(&self, key: &str, var: &'static str) -> Option<(String, Origin)> {
        self.given(key).or_else(|| self.env_var(var))
    }
}

pub(super) fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

pub(super) fn default_host() -> String {
    if cfg!(unix) && Path::new(DEFAULT_SOCKET_DIR).is_dir() {
        DEFAULT_SOCKET_DIR.to_owned()
    } else {
        "localhost".to_owned()
    }
}

pub(super) fn parse_port(raw: &str, origin: Origin) -> Result<u16, ConnInfoError> {
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
pub(super) fn parse_connect_timeout(
    value: String,
    origin: Origin,
) -> Result<Option<Duration>, ConnInfoError> {
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
pub(super) struct Network {
    pub(super) keepalives: Keepalives,
    pub(super) tcp_user_timeout: Option<Duration>,
    pub(super) target_session_attrs: TargetSessionAttrs,
    pub(super) channel_binding: ChannelBinding,
    pub(super) load_balance_random: bool,
    pub(super) ssl_direct: bool,
    pub(super) sslsni: bool,
    pub(super) tls13_only: bool,
    pub(super) tls12_only: bool,
    pub(super) idle_in_transaction: Duration,
}

/// Options libpq has but no environment variable for.
pub(super) const NO_ENV: &str = "";

/// Reads every libpq option that changes how the connection behaves on the network or which
/// server is chosen. Each is either honoured or refused with an error naming it: none is
/// dropped silently.
pub(super) fn network_settings(
    src: &Sources<'_>,
    options: Option<&str>,
) -> Result<Network, ConnInfoError> {
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
pub(super) fn mentions_idle_timeout(options: &str) -> bool {
    options.contains("idle_in_transaction_session_timeout")
}

/// The `idle_in_transaction_session_timeout` set in libpq `options`
/// (`-c idle_in_transaction_session_timeout=5min` or `--idle_in_transaction_session_timeout=5min`),
/// in PostgreSQL's units (default ms; us, ms, s, min, h, d). `None` when absent or unreadable
/// (the server then judges the value, and migval assumes its default).
pub(super) fn idle_timeout_in_options(options: &str) -> Option<Duration> {
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
pub(super) fn config_dir(src: &Sources<'_>) -> Option<PathBuf> {
    if cfg!(windows) {
        nonempty(src.env_raw("APPDATA")).map(|d| Path::new(&d).join("postgresql"))
    } else {
        nonempty(src.env_raw("HOME")).map(PathBuf::from)
    }
}

pub(super) fn default_passfile(src: &Sources<'_>) -> Option<PathBuf> {
    let dir = config_dir(src)?;
    Some(if cfg!(windows) {
        dir.join("pgpass.conf")
    } else {
        dir.join(".pgpass")
    })
}

/// `~/.postgresql/<name>` (Windows: `%APPDATA%\postgresql\<name>`), libpq's default place for
/// the client certificate and key.
pub(super) fn default_client_file(src: &Sources<'_>, name: &str) -> Option<PathBuf> {
    let dir = config_dir(src)?;
    Some(if cfg!(windows) {
        dir.join(name)
    } else {
        dir.join(".postgresql").join(name)
    })
}

pub(super) fn default_root_cert(src: &Sources<'_>) -> Option<PathBuf> {
    let dir = config_dir(src)?;
    Some(if cfg!(windows) {
        dir.join("root.crt")
    } else {
        dir.join(".postgresql").join("root.crt")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::conninfo::test_support::*;

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
}
