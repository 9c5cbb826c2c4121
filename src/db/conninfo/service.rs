//! Connection service files (`pg_service.conf`), read the way libpq reads them, so that
//! `--db service=prod` (or `PGSERVICE=prod`) connects where `psql service=prod` does.
//!
//! ```text
//!   service name   service=NAME in the connection string, else PGSERVICE
//!   files          servicefile=PATH, else PGSERVICEFILE, else ~/.pg_service.conf;
//!                  when NAME is not there: PGSYSCONFDIR/pg_service.conf
//!                  (PGSYSCONFDIR defaults to /etc/postgresql-common, Debian's libpq)
//!   the entry      [NAME] then key=value lines up to the next [section]; # comments
//!   precedence     connection string > service entry > PG* variables > defaults
//! ```
//!
//! Keys are checked like the connection string's: an option migval refuses is refused here
//! too, naming the file and line, and an unknown key is an error, never dropped.

use super::*;

/// Where libpq's Debian package looks for the system-wide service file.
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// The settings of the service entry named by `given` (`service=`) or `PGSERVICE`, read from
/// the first file that has it; empty when no service is named.
pub(super) fn lookup(
    given: &HashMap<&'static str, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<&'static str, String>, ConnInfoError> {
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let Some(name) = nonempty(given.get("service").cloned()).or_else(|| nonempty(env("PGSERVICE")))
    else {
        return Ok(HashMap::new());
    };
    let user_file = nonempty(given.get("servicefile").cloned())
        .or_else(|| nonempty(env("PGSERVICEFILE")))
        .map(PathBuf::from)
        .or_else(|| nonempty(env("HOME")).map(|h| Path::new(&h).join(".pg_service.conf")));
    let system_file =
        Path::new(&nonempty(env("PGSYSCONFDIR")).unwrap_or_else(|| DEFAULT_SYSCONFDIR.to_owned()))
            .join("pg_service.conf");
    let mut searched = Vec::new();
    for file in user_file.into_iter().chain([system_file]) {
        let text = match read(&file)? {
            Some(t) => t,
            None => {
                searched.push(file);
                continue;
            }
        };
        if let Some(settings) = entry(&text, &name, &file)? {
            return Ok(settings);
        }
        searched.push(file);
    }
    Err(ConnInfoError::ServiceNotFound {
        name,
        searched: searched
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The file's text; `None` when it does not exist. A file that exists but cannot be read is an
/// error (libpq skips only a missing one).
fn read(file: &Path) -> Result<Option<String>, ConnInfoError> {
    let unreadable = |why: String| ConnInfoError::ServiceFile {
        file: file.display().to_string(),
        line: 0,
        reason: why,
    };
    match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(format!("cannot read it ({e})"))),
        Ok(m) if !m.is_file() => return Err(unreadable("it is not a regular file".into())),
        // A service file is a few lines: refuse to read a huge one into memory.
        Ok(m) if m.len() > 1 << 20 => return Err(unreadable("it is larger than 1 MB".into())),
        Ok(_) => {}
    }
    std::fs::read_to_string(file)
        .map(Some)
        .map_err(|e| unreadable(format!("cannot read it ({e})")))
}

/// The `[name]` entry of a service file's text, its keys checked; `None` when absent.
fn entry(
    text: &str,
    name: &str,
    file: &Path,
) -> Result<Option<HashMap<&'static str, String>>, ConnInfoError> {
    let bad = |line: usize, reason: String| ConnInfoError::ServiceFile {
        file: file.display().to_string(),
        line,
        reason,
    };
    let mut found: Option<HashMap<&'static str, String>> = None;
    let mut inside = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            let Some(section) = section.strip_suffix(']') else {
                return Err(bad(n, "a section header must end with ']'".into()));
            };
            if found.is_some() && inside {
                // The entry ended; libpq stops at the next section too.
                break;
            }
            inside = section.trim() == name;
            if inside {
                found = Some(HashMap::new());
            }
            continue;
        }
        if !inside {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(n, "expected key=value".into()));
        };
        let key = key.trim();
        if key == "service" {
            return Err(bad(
                n,
                "nested service specifications are not supported".into(),
            ));
        }
        match classify(key) {
            Some(KeyKind::Supported(canonical)) => {
                if let Some(settings) = found.as_mut() {
                    settings.insert(canonical, value.trim().to_owned());
                }
            }
            Some(KeyKind::Unsupported(hint)) => {
                return Err(bad(
                    n,
                    format!("connection option \"{key}\" is not supported by migval: {hint}"),
                ));
            }
            None => {
                return Err(bad(
                    n,
                    format!("unknown connection option \"{key}\"{}", suggestion(key)),
                ));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use crate::db::conninfo::test_support::*;

    /// A scratch directory with a service file in it, removed at the end.
    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(name: &str, service_file: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("migval-service-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("pg_service.conf"), service_file).unwrap();
            Dir(d)
        }

        fn file(&self) -> String {
            self.0.join("pg_service.conf").display().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const FILE: &str = "\
# production, read-only role
[prod]
host=db.example.com
port = 6432
dbname=shop
user=auditor
sslmode=verify-full

[staging]
host=staging.example.com
dbname=shop_staging
";

    #[test]
    fn a_service_entry_fills_what_the_connection_string_leaves_unset() {
        let d = Dir::new("fills", FILE);
        let info = resolve_with(
            "service=prod dbname=shop_copy",
            &[("PGSERVICEFILE", &d.file()), ("PGPORT", "5999")],
        )
        .unwrap();
        assert_eq!(info.host, ["db.example.com"]);
        // The service beats the environment; the connection string beats the service.
        assert_eq!(info.port, [6432]);
        assert_eq!(info.dbname, "shop_copy");
        assert_eq!(info.user, "auditor");
        assert_eq!(info.sslmode, SslMode::VerifyFull);
    }

    #[test]
    fn pgservice_names_the_service_and_home_holds_the_file() {
        let d = Dir::new("home", FILE);
        std::fs::rename(d.0.join("pg_service.conf"), d.0.join(".pg_service.conf")).unwrap();
        let home = d.0.display().to_string();
        let info =
            ConnInfo::resolve(None, &env_of(&[("PGSERVICE", "staging"), ("HOME", &home)])).unwrap();
        assert_eq!(info.host, ["staging.example.com"]);
        assert_eq!(info.dbname, "shop_staging");
    }

    #[test]
    fn the_system_file_is_read_when_the_user_file_lacks_the_service() {
        let user = Dir::new("user", "[other]\nhost=elsewhere\n");
        let system = Dir::new("system", FILE);
        let info = resolve_with(
            "service=prod",
            &[
                ("PGSERVICEFILE", &user.file()),
                ("PGSYSCONFDIR", &system.0.display().to_string()),
            ],
        )
        .unwrap();
        assert_eq!(info.host, ["db.example.com"]);
    }

    #[test]
    fn a_missing_service_or_a_bad_line_is_an_error_naming_the_file() {
        let d = Dir::new("bad", FILE);
        let message = err(
            "service=nope",
            &[
                ("PGSERVICEFILE", &d.file()),
                ("PGSYSCONFDIR", "/nonexistent"),
            ],
        );
        assert!(message.contains("service \"nope\" not found"), "{message}");
        assert!(message.contains(&d.file()), "{message}");

        let d = Dir::new("typo", "[prod]\nhost=h\nsslmdoe=require\n");
        let message = err("service=prod", &[("PGSERVICEFILE", &d.file())]);
        assert!(
            message.contains(&format!("{}, line 3", d.file())),
            "{message}"
        );
        assert!(message.contains("did you mean \"sslmode\""), "{message}");

        let d = Dir::new("refused", "[prod]\nhost=h\nsslcrl=x\n");
        let message = err("service=prod", &[("PGSERVICEFILE", &d.file())]);
        assert!(message.contains("\"sslcrl\" is not supported"), "{message}");
        assert!(
            !message.contains("=x"),
            "the value is never echoed: {message}"
        );
    }
}
