//! The libpq password file (`~/.pgpass` or `PGPASSFILE`): the permission check, the line
//! syntax with its backslash escapes, and the lookup of the first matching entry.

use super::*;

/// The password from a libpq password file for the first host that has a matching entry.
///
/// Like libpq, the file is skipped when it is not a regular file or (on unix) when group or
/// others have any access to it; libpq prints a warning in that case, migval stays silent.
pub(super) fn password_from_file(
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

pub(super) fn permissions_ok(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o077 == 0
}

pub(super) struct PassField {
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
pub(super) fn split_passfile_line(line: &str) -> Vec<PassField> {
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
    use crate::db::conninfo::test_support::*;

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
