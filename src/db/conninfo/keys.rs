//! Option names: which libpq options migval implements, which it refuses by name with a
//! hint (and the `PG*` variables that would select them), the "did you mean" suggestion
//! for a misspelt name, and the check that turns parsed pairs into supported settings.

use super::*;

/// How migval treats a libpq option name.
pub(super) enum KeyKind {
    /// Implemented; the canonical name.
    Supported(&'static str),
    /// Accepted by libpq but changes behaviour migval cannot honour: an error with this hint.
    Unsupported(&'static str),
}

pub(super) const SUPPORTED_KEYS: &[&str] = &[
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
    "service",
    "servicefile",
    "sslpassword",
    "client_encoding",
    "min_protocol_version",
    "max_protocol_version",
];

pub(super) const HINT_CLIENT_CERT: &str = "sslcertmode=require is not supported; remove it (a client \
     certificate given with sslcert/sslkey is sent whenever the server asks for one)";
pub(super) const HINT_CRL: &str =
    "certificate revocation lists are not supported; remove the option";
pub(super) const HINT_GSS: &str = "GSSAPI/Kerberos authentication is not supported; authenticate with a \
     password (in the URL, PGPASSWORD or ~/.pgpass) instead";
pub(super) const HINT_AUTH_RESTRICTION: &str =
    "restricting the authentication method is not supported; remove the option";

/// Environment variables of options in the "unsupported" class: libpq would act on them, so
/// silently ignoring them could connect somewhere else or fail confusingly.
pub(super) const UNSUPPORTED_ENV: &[(&str, &str, &str)] = &[
    ("PGSSLCRL", "sslcrl", HINT_CRL),
    ("PGSSLCRLDIR", "sslcrldir", HINT_CRL),
    ("PGREQUIREPEER", "requirepeer", HINT_AUTH_RESTRICTION),
    ("PGREQUIREAUTH", "require_auth", HINT_AUTH_RESTRICTION),
    ("PGKRBSRVNAME", "krbsrvname", HINT_GSS),
    ("PGGSSLIB", "gsslib", HINT_GSS),
    ("PGGSSDELEGATION", "gssdelegation", HINT_GSS),
    (
        "PGREQUIRESSL",
        "requiressl",
        "requiressl is obsolete; use sslmode=require",
    ),
];

pub(super) fn classify(key: &str) -> Option<KeyKind> {
    if let Some(canonical) = SUPPORTED_KEYS.iter().find(|k| **k == key) {
        return Some(KeyKind::Supported(canonical));
    }
    let kind = match key {
        "gsslib" | "gssdelegation" | "krbsrvname" => KeyKind::Unsupported(HINT_GSS),
        "sslkeylogfile" => KeyKind::Unsupported(
            "writing TLS key logs is not supported; remove the option (debug with psql instead)",
        ),
        "tty" => KeyKind::Unsupported("tty is obsolete (PostgreSQL 14 removed it); remove it"),
        "sslcrl" | "sslcrldir" => KeyKind::Unsupported(HINT_CRL),
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
pub(super) fn suggestion(key: &str) -> String {
    SUPPORTED_KEYS
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
pub(super) fn describe_word(word: &str, position: usize) -> String {
    if classify(word).is_some() || word == "ssl" {
        format!("\"{word}\"")
    } else {
        format!("word {position}")
    }
}

/// Checks option names and keeps the supported ones (the last occurrence wins, like libpq).
pub(super) fn collect_settings(
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

#[cfg(test)]
mod tests {
    use crate::db::conninfo::test_support::*;

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
        for key in ["sslcrl", "require_auth"] {
            let message = err(&format!("postgres://h/db?{key}=x"), &[]);
            assert!(message.contains(&format!("\"{key}\"")), "{message}");
            assert!(message.contains("not supported"), "{message}");
        }
        let message = err(
            "host=h",
            &[
                ("PGSERVICE", "prod"),
                ("PGSERVICEFILE", "/nonexistent/pg_service.conf"),
            ],
        );
        assert!(message.contains("service \"prod\" not found"), "{message}");
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
}
