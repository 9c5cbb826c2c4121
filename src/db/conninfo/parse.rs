//! Connection-string syntax: `postgres://` / `postgresql://` URLs (userinfo, host lists,
//! IPv6 literals, query options) and libpq `key=value` strings (quoting, backslash escapes),
//! with the percent escapes of URLs decoded and encoded. Error messages never echo a value
//! that may be a password.

use super::*;

pub(super) fn parse_connection_string(
    s: &str,
) -> Result<HashMap<&'static str, String>, ConnInfoError> {
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

pub(super) fn syntax(reason: impl Into<String>) -> ConnInfoError {
    ConnInfoError::Syntax {
        reason: reason.into(),
    }
}

/// The part after `postgres://` or `postgresql://` (scheme matched case-insensitively).
pub(super) fn strip_scheme(s: &str) -> Option<&str> {
    ["postgresql://", "postgres://"].iter().find_map(|scheme| {
        s.get(..scheme.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
            .and_then(|_| s.get(scheme.len()..))
    })
}

/// libpq `key=value` pairs separated by whitespace; values may be single-quoted, and `\`
/// escapes the next character (quoted or not).
pub(super) fn parse_key_value(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
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
pub(super) fn parse_url(rest: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
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
pub(super) fn parse_host_list(netloc: &str) -> Result<(Vec<String>, Vec<String>), ConnInfoError> {
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

pub(super) fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes (`+` stays `+`, as in libpq). `what` names the part for the error,
/// which never includes the text itself.
pub(super) fn percent_decode(
    s: &str,
    what: impl FnOnce() -> String,
) -> Result<String, ConnInfoError> {
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
pub(super) fn percent_encode(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::conninfo::test_support::*;

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
}
