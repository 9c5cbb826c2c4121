//! TLS against a real server: a throwaway cluster of its own with `ssl = on` and a server
//! certificate (SAN `localhost` and `127.0.0.1`) issued by a test CA, all generated at test time
//! with the `openssl` command line (the certificates embedded in `src/db/tls.rs` name
//! `db.example.com` and start on a fixed date, so they cannot serve a local cluster).
//!
//! What a user would notice: which sslmode gives an encrypted session (`pg_stat_ssl`), that the
//! hosted-database URL form `sslmode=verify-full&sslrootcert=ca.pem` connects, that an
//! untrusted or misnamed server is refused with an error one can act on, and that the binary
//! snapshots over TLS and exits 2 (naming the target, password masked) when it cannot; and
//! client certificates (`sslcert`/`sslkey`, PKCS#8, SEC1 and PKCS#1 keys) against a second
//! cluster whose pg_hba.conf requires `clientcert=verify-full`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use migval::cluster::{Cluster, ClusterOptions};

use crate::common::{info, migval, migval_env, p, rt};

// ---------------------------------------------------------------------------------------------
// Certificates

/// PEM texts generated once per test binary.
struct Pki {
    /// The CA that issued both server certificates (and the client certificates), and its key.
    ca: String,
    ca_key: String,
    /// An unrelated CA (never issued anything the servers present).
    other_ca: String,
    /// Server certificate with SAN `DNS:localhost, IP:127.0.0.1`, and its key.
    server_crt: String,
    server_key: String,
    /// Server certificate with SAN `DNS:localhost` only, and its key.
    localhost_only_crt: String,
    localhost_only_key: String,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[localhost_only_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl ({e}); the TLS tests need the openssl CLI"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A self-signed CA: `<name>.pem` and `<name>.key`.
fn make_ca(dir: &Path, name: &str, cn: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca_ext",
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "7300",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    )
}

/// A server certificate `<name>.crt` / `<name>.key` issued by `ca`, with extensions `ext`.
fn make_server_cert(dir: &Path, name: &str, ext: &str, serial: &str) -> Result<(), String> {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-config",
            "openssl.cnf",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "7300",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            ext,
            "-out",
            &format!("{name}.crt"),
        ],
    )
}

fn generate_pki() -> Result<Pki, String> {
    let dir = Scratch::new("pki");
    std::fs::write(dir.0.join("openssl.cnf"), OPENSSL_CNF).map_err(|e| e.to_string())?;
    make_ca(&dir.0, "ca", "migval TLS test CA")?;
    make_ca(&dir.0, "other-ca", "unrelated migval TLS test CA")?;
    make_server_cert(&dir.0, "server", "server_ext", "0x1001")?;
    make_server_cert(&dir.0, "localhost-only", "localhost_only_ext", "0x1002")?;
    let read = |name: &str| {
        std::fs::read_to_string(dir.0.join(name)).map_err(|e| format!("read {name}: {e}"))
    };
    Ok(Pki {
        ca: read("ca.pem")?,
        ca_key: read("ca.key")?,
        other_ca: read("other-ca.pem")?,
        server_crt: read("server.crt")?,
        server_key: read("server.key")?,
        localhost_only_crt: read("localhost-only.crt")?,
        localhost_only_key: read("localhost-only.key")?,
    })
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Result<Pki, String>> = OnceLock::new();
    match PKI.get_or_init(generate_pki) {
        Ok(pki) => pki,
        Err(e) => panic!("cannot generate the test certificates: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// A cluster with `ssl = on` presenting `crt`/`key`.
fn start_tls_cluster(crt: &str, key: &str) -> Result<Cluster, String> {
    let settings = [
        ("ssl", "on"),
        ("ssl_cert_file", "server.crt"),
        ("ssl_key_file", "server.key"),
    ];
    Cluster::start(&ClusterOptions {
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        files: vec![
            ("server.crt".to_owned(), crt.as_bytes().to_vec()),
            ("server.key".to_owned(), key.as_bytes().to_vec()),
        ],
    })
    .map_err(|e| e.to_string())
}

/// The module's TLS cluster (certificate for `localhost` and `127.0.0.1`), one per test binary.
fn server() -> &'static Cluster {
    static SERVER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let s = SERVER.get_or_init(|| {
        let pki = pki();
        start_tls_cluster(&pki.server_crt, &pki.server_key)
    });
    match s {
        Ok(c) => c,
        Err(e) => panic!("cannot start a PostgreSQL cluster with ssl=on: {e}"),
    }
}

/// `postgres://postgres@HOST:PORT/postgres?QUERY` (trust authentication, superuser).
fn url(host: &str, port: u16, query: &str) -> String {
    format!("postgres://postgres@{host}:{port}/postgres?{query}")
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A directory under the temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("migval-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connect through `migval::db::connect` and ask the server whether this session uses TLS.
async fn session_ssl(url: &str) -> Result<bool, String> {
    let client = migval::db::connect(&info(url))
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| format!("query pg_stat_ssl: {}", migval::db::failure(&e, None)))?;
    Ok(row.get::<_, bool>(0))
}

/// `session_ssl`, which must succeed.
async fn encrypted(url: &str) -> bool {
    match session_ssl(url).await {
        Ok(ssl) => ssl,
        Err(e) => panic!("connecting with {url} failed: {e}"),
    }
}

/// The error of a connection attempt that must fail.
async fn refused(url: &str) -> String {
    match session_ssl(url).await {
        Ok(ssl) => panic!("connecting with {url} should have failed, but it worked (ssl={ssl})"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// sslmode through migval::db::connect

#[test]
fn require_and_prefer_encrypt_the_session() {
    let port = server().port();
    rt().block_on(async {
        assert!(
            encrypted(&url("127.0.0.1", port, "sslmode=require")).await,
            "sslmode=require: pg_stat_ssl says the session is not encrypted"
        );
        // libpq's default (prefer) uses TLS when the server offers it.
        assert!(
            encrypted(&url("127.0.0.1", port, "sslmode=prefer")).await,
            "sslmode=prefer: not encrypted"
        );
        let no_mode = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        assert!(
            encrypted(&no_mode).await,
            "no sslmode (default prefer): not encrypted"
        );
    });
}

#[test]
fn disable_connects_in_plain_text() {
    let port = server().port();
    rt().block_on(async {
        assert!(
            !encrypted(&url("127.0.0.1", port, "sslmode=disable")).await,
            "sslmode=disable: pg_stat_ssl says the session is encrypted"
        );
    });
}

#[test]
fn verify_full_with_the_right_ca_connects_by_ip_and_by_name() {
    let port = server().port();
    let dir = Scratch::new("verify-full-ok");
    let ca = dir.file("ca.pem", &pki().ca);
    let ca = p(&ca);
    rt().block_on(async {
        // The URL form hosted providers hand out (tokio-postgres' own parser rejects it).
        for host in ["127.0.0.1", "localhost"] {
            let u = url(host, port, &format!("sslmode=verify-full&sslrootcert={ca}"));
            assert!(encrypted(&u).await, "{u}: not encrypted");
        }
        let u = url(
            "127.0.0.1",
            port,
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        );
        assert!(encrypted(&u).await, "{u}: not encrypted");
        // The same in libpq key=value form.
        let kv = format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres \
             sslmode=verify-full sslrootcert='{ca}'"
        );
        assert!(encrypted(&kv).await, "{kv}: not encrypted");
    });
}

#[test]
fn verify_full_with_an_unrelated_ca_is_refused_with_an_actionable_error() {
    let port = server().port();
    let dir = Scratch::new("verify-full-wrong-ca");
    let other = dir.file("other-ca.pem", &pki().other_ca);
    let other = p(&other);
    rt().block_on(async {
        for mode in ["verify-full", "verify-ca"] {
            let u = url(
                "127.0.0.1",
                port,
                &format!("sslmode={mode}&sslrootcert={other}"),
            );
            let message = refused(&u).await;
            let lower = message.to_lowercase();
            assert!(lower.contains("certificate"), "{mode}: {message}");
            assert!(
                lower.contains("unknownissuer") || lower.contains("unknown issuer"),
                "{mode}: the error should say the issuer is unknown: {message}"
            );
            assert!(
                message.contains(&format!("127.0.0.1:{port}")),
                "{mode}: the error should name the server: {message}"
            );
        }
    });
}

#[test]
fn require_with_an_existing_root_file_verifies_the_chain_like_libpq() {
    let port = server().port();
    let dir = Scratch::new("require-root-file");
    let right = dir.file("ca.pem", &pki().ca);
    let wrong = dir.file("other-ca.pem", &pki().other_ca);
    rt().block_on(async {
        let u = url(
            "127.0.0.1",
            port,
            &format!("sslmode=require&sslrootcert={}", p(&right)),
        );
        assert!(encrypted(&u).await, "{u}: not encrypted");
        let u = url(
            "127.0.0.1",
            port,
            &format!("sslmode=require&sslrootcert={}", p(&wrong)),
        );
        let message = refused(&u).await;
        assert!(
            message.to_lowercase().contains("certificate"),
            "{u}: {message}"
        );
    });
}

#[test]
fn verify_ca_ignores_the_host_name_but_verify_full_checks_it() {
    // A second cluster, for this test only, whose certificate names `localhost` but not
    // 127.0.0.1 (a cluster presents one certificate). Stopped when the test ends.
    let pki = pki();
    let cluster = match start_tls_cluster(&pki.localhost_only_crt, &pki.localhost_only_key) {
        Ok(c) => c,
        Err(e) => panic!("cannot start a second PostgreSQL cluster with ssl=on: {e}"),
    };
    let port = cluster.port();
    let dir = Scratch::new("host-name");
    let ca = dir.file("ca.pem", &pki.ca);
    let ca = p(&ca);
    rt().block_on(async {
        // Control: the certificate is fine for the name it carries.
        let u = url(
            "localhost",
            port,
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        );
        assert!(encrypted(&u).await, "{u}: not encrypted");
        // verify-ca: chain checked, name not.
        let u = url(
            "127.0.0.1",
            port,
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        );
        assert!(encrypted(&u).await, "{u}: not encrypted");
        // verify-full: 127.0.0.1 is not in the certificate.
        let u = url(
            "127.0.0.1",
            port,
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        );
        let message = refused(&u).await;
        let lower = message.to_lowercase();
        assert!(lower.contains("certificate"), "{message}");
        assert!(
            lower.contains("name") && !lower.contains("unknownissuer"),
            "the error should be about the host name, not the issuer: {message}"
        );
    });
    drop(cluster);
}

/// libpq: "If both host and hostaddr are specified, hostaddr is used to connect; host is the
/// name the certificate is checked against (verify-full)". So `verify-ca` connects to the
/// address even though the name does not resolve.
#[test]
fn hostaddr_is_where_to_connect_when_host_is_also_given() {
    let port = server().port();
    let dir = Scratch::new("hostaddr");
    let ca = dir.file("ca.pem", &pki().ca);
    let kv = |mode: &str| {
        format!(
            "host=migval-tls-test.invalid hostaddr=127.0.0.1 port={port} user=postgres \
             dbname=postgres connect_timeout=5 sslmode={mode} sslrootcert='{}'",
            p(&ca)
        )
    };
    rt().block_on(async {
        assert!(encrypted(&kv("verify-ca")).await, "not encrypted");
        // verify-full checks the certificate against `host`, which it does not name.
        let message = refused(&kv("verify-full")).await;
        assert!(
            message.contains("not valid for name"),
            "verify-full should fail on the name, not on the lookup: {message}"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// The binary

const PROBE_SPEC: &str = r#"[[check]]
name = "rows"
table = "tls_probe"
metrics = ["count(*)"]
"#;

/// Create `tls_probe` (3 rows) in the TLS cluster's `postgres` database, once.
fn probe_table(cluster: &Cluster) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        rt().block_on(async {
            let client = migval::db::connect(&info(&cluster.url("postgres")))
                .await
                .expect("connect to the TLS cluster without TLS");
            client
                .batch_execute(
                    "DROP TABLE IF EXISTS tls_probe;
                     CREATE TABLE tls_probe (id int);
                     INSERT INTO tls_probe VALUES (1), (2), (3);",
                )
                .await
                .expect("create tls_probe");
        });
    });
}

#[test]
fn snapshot_over_verify_full_through_the_binary() {
    let cluster = server();
    probe_table(cluster);
    let port = cluster.port();
    let dir = Scratch::new("snapshot-ok");
    let ca = dir.file("ca.pem", &pki().ca);
    let spec = dir.file("checks.toml", PROBE_SPEC);
    let out = dir.0.join("base.json");
    let db = url(
        "127.0.0.1",
        port,
        &format!("sslmode=verify-full&sslrootcert={}", p(&ca)),
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &db,
    ]);
    assert_eq!(r.code, 0, "snapshot over verify-full failed{r}");
    let baseline = std::fs::read_to_string(&out)
        .unwrap_or_else(|e| panic!("no baseline written to {} ({e}){r}", out.display()));
    let json: serde_json::Value =
        serde_json::from_str(&baseline).unwrap_or_else(|e| panic!("baseline is not JSON ({e})"));
    let rows = json["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == "rows"))
        .unwrap_or_else(|| panic!("baseline has no check `rows`: {json:#}"));
    assert_eq!(
        rows["outcome"]["captured"]["cells"],
        serde_json::json!([3]),
        "count(*) of tls_probe over TLS: {rows:#}"
    );
    let target = json["origin"]["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("sslmode=verify-full"),
        "the baseline should record the TLS target: {target:?}"
    );
}

#[test]
fn snapshot_takes_sslmode_and_sslrootcert_from_the_environment() {
    let cluster = server();
    probe_table(cluster);
    let port = cluster.port();
    let dir = Scratch::new("snapshot-env");
    let ca = dir.file("ca.pem", &pki().ca);
    let other = dir.file("other-ca.pem", &pki().other_ca);
    let spec = dir.file("checks.toml", PROBE_SPEC);
    let out = dir.0.join("base.json");
    let db = format!("postgres://postgres@localhost:{port}/postgres");
    let args = [
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &db,
    ];
    let r = migval_env(
        &args,
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", p(&ca))],
    );
    assert_eq!(r.code, 0, "PGSSLMODE=verify-full PGSSLROOTCERT=<ca>{r}");
    let r = migval_env(
        &args,
        &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", p(&other))],
    );
    assert_eq!(
        r.code, 2,
        "PGSSLMODE=verify-full PGSSLROOTCERT=<unrelated ca> must be refused{r}"
    );
}

#[test]
fn snapshot_with_the_wrong_ca_exits_2_naming_the_target_without_the_password() {
    const PASSWORD: &str = "tls-s3cret-pw";
    let cluster = server();
    probe_table(cluster);
    let port = cluster.port();
    let dir = Scratch::new("snapshot-wrong-ca");
    let other = dir.file("other-ca.pem", &pki().other_ca);
    let spec = dir.file("checks.toml", PROBE_SPEC);
    let out = dir.0.join("base.json");
    let db = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres\
         ?sslmode=verify-full&sslrootcert={}",
        p(&other)
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &db,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(!r.all().contains("panicked"), "migval panicked{r}");
    assert!(!r.all().contains(PASSWORD), "the password leaked{r}");
    assert!(
        r.stderr
            .contains(&format!("postgres:***@127.0.0.1:{port}/postgres")),
        "stderr should name the target with the password masked{r}"
    );
    let lower = r.stderr.to_lowercase();
    assert!(
        lower.contains("certificate")
            && (lower.contains("unknownissuer") || lower.contains("unknown issuer")),
        "stderr should say the server certificate's issuer is not trusted{r}"
    );
    assert!(
        !out.exists(),
        "a baseline was written although the snapshot failed{r}"
    );
}

#[test]
fn verify_full_without_sslrootcert_uses_home_postgresql_root_crt() {
    let cluster = server();
    probe_table(cluster);
    let port = cluster.port();
    let home = Scratch::new("home");
    std::fs::create_dir_all(home.0.join(".postgresql")).expect("mkdir ~/.postgresql");
    home.file(".postgresql/root.crt", &pki().ca);
    let empty_home = Scratch::new("empty-home");
    let dir = Scratch::new("snapshot-home");
    let spec = dir.file("checks.toml", PROBE_SPEC);
    let out = dir.0.join("base.json");
    let db = url("127.0.0.1", port, "sslmode=verify-full");
    let args = [
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &db,
    ];
    // Like libpq: ~/.postgresql/root.crt is the default sslrootcert.
    let r = migval_env(&args, &[("HOME", p(&home.0))]);
    assert_eq!(
        r.code, 0,
        "HOME has .postgresql/root.crt with the server's CA{r}"
    );
    // Without it, verify-full trusts only the public CAs, which did not issue the test cert.
    let r = migval_env(&args, &[("HOME", p(&empty_home.0))]);
    assert_eq!(
        r.code, 2,
        "no ~/.postgresql/root.crt: the test CA must not be trusted{r}"
    );
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "stderr should be about the certificate{r}"
    );
}

// ---------------------------------------------------------------------------------------------
// Client certificates (sslcert / sslkey)

/// The passphrase of the encrypted client keys: distinctive, so no output may contain it.
const KEY_PASSPHRASE: &str = "Kp7-UNIQUE-passphrase";

/// The role the client certificates are issued to (CN = the user name, for clientcert=verify-full).
const CERT_USER: &str = "cert_user";

/// Client keys and certificates issued by the test CA to `CERT_USER`, in three key encodings:
/// PKCS#8 (EC), SEC1 (the same EC key) and PKCS#1 (RSA); plus one passphrase-protected key.
struct ClientPki {
    dir: Scratch,
}

fn client_pki() -> &'static ClientPki {
    static PKI: OnceLock<Result<ClientPki, String>> = OnceLock::new();
    let made = PKI.get_or_init(|| {
        let dir = Scratch::new("client-pki");
        let d = &dir.0;
        std::fs::write(d.join("openssl.cnf"), OPENSSL_CNF).map_err(|e| e.to_string())?;
        std::fs::write(d.join("ca.pem"), &pki().ca).map_err(|e| e.to_string())?;
        std::fs::write(d.join("ca.key"), &pki().ca_key).map_err(|e| e.to_string())?;
        let subj = format!("/CN={CERT_USER}");
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec-sec1.key",
            ],
        )?;
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "ec-sec1.key",
                "-out",
                "ec-pkcs8.key",
            ],
        )?;
        openssl(
            d,
            &["genrsa", "-traditional", "-out", "rsa-pkcs1.key", "2048"],
        )?;
        for (key, crt, serial) in [
            ("ec-pkcs8.key", "ec.crt", "0x2001"),
            ("rsa-pkcs1.key", "rsa.crt", "0x2002"),
        ] {
            let csr = format!("{crt}.csr");
            openssl(
                d,
                &[
                    "req",
                    "-new",
                    "-key",
                    key,
                    "-config",
                    "openssl.cnf",
                    "-subj",
                    &subj,
                    "-out",
                    &csr,
                ],
            )?;
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    serial,
                    "-days",
                    "7300",
                    "-extfile",
                    "openssl.cnf",
                    "-extensions",
                    "client_ext",
                    "-out",
                    crt,
                ],
            )?;
        }
        openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-in",
                "ec-sec1.key",
                "-passout",
                &format!("pass:{KEY_PASSPHRASE}"),
                "-out",
                "ec-encrypted.key",
            ],
        )?;
        // The same key encrypted in OpenSSL's legacy PEM format (Proc-Type: 4,ENCRYPTED).
        openssl(
            d,
            &[
                "ec",
                "-in",
                "ec-sec1.key",
                "-aes256",
                "-passout",
                &format!("pass:{KEY_PASSPHRASE}"),
                "-out",
                "ec-legacy.key",
            ],
        )?;
        for key in [
            "ec-sec1.key",
            "ec-pkcs8.key",
            "rsa-pkcs1.key",
            "ec-encrypted.key",
            "ec-legacy.key",
        ] {
            set_mode(&d.join(key), 0o600);
        }
        Ok(ClientPki { dir })
    });
    match made {
        Ok(p) => p,
        Err(e) => panic!("cannot generate the client certificates: {e}"),
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A cluster whose pg_hba.conf requires a client certificate naming the user
/// (`clientcert=verify-full`) for `CERT_USER` over TCP; other users connect as before.
fn client_cert_server() -> &'static Cluster {
    static SERVER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let s = SERVER.get_or_init(|| {
        let pki = pki();
        let hba = format!(
            "local all all trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 trust clientcert=verify-full\n\
             host all all 127.0.0.1/32 trust\n\
             host all all ::1/128 trust\n"
        );
        // hba_file is read relative to the server's working directory, not the data
        // directory: an absolute path in a directory of its own, kept for the binary's life.
        static HBA: OnceLock<Scratch> = OnceLock::new();
        let hba = HBA
            .get_or_init(|| Scratch::new("client-cert-hba"))
            .file("pg_hba.conf", &hba);
        let hba = p(&hba).to_owned();
        let settings = [
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
            ("ssl_ca_file", "client-ca.pem"),
            ("hba_file", hba.as_str()),
        ];
        let cluster = Cluster::start(&ClusterOptions {
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            files: vec![
                ("server.crt".to_owned(), pki.server_crt.as_bytes().to_vec()),
                ("server.key".to_owned(), pki.server_key.as_bytes().to_vec()),
                ("client-ca.pem".to_owned(), pki.ca.as_bytes().to_vec()),
            ],
        })
        .map_err(|e| e.to_string())?;
        rt().block_on(async {
            let c = migval::db::connect(&info(&cluster.url("postgres")))
                .await
                .map_err(|e| e.to_string())?;
            c.batch_execute(&format!("CREATE ROLE {CERT_USER} LOGIN"))
                .await
                .map_err(|e| migval::db::failure(&e, None).to_string())
        })?;
        Ok(cluster)
    });
    match s {
        Ok(c) => c,
        Err(e) => panic!("cannot start a cluster requiring client certificates: {e}"),
    }
}

/// `postgres://cert_user@127.0.0.1:PORT/postgres?sslmode=verify-full&sslrootcert=..&QUERY`.
fn cert_url(port: u16, query: &str) -> String {
    let ca = client_pki().dir.0.join("ca.pem");
    let q = format!("sslmode=verify-full&sslrootcert={}{query}", p(&ca));
    format!("postgres://{CERT_USER}@127.0.0.1:{port}/postgres?{q}")
}

fn with_cert(crt: &str, key: &str) -> String {
    let d = &client_pki().dir.0;
    format!("&sslcert={}&sslkey={}", p(&d.join(crt)), p(&d.join(key)))
}

/// Who the server says this session is, and the certificate it saw.
async fn cert_session(url: &str) -> Result<(String, String), String> {
    let client = migval::db::connect(&info(url))
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT current_user::text, coalesce(client_dn, '') FROM pg_stat_ssl \
             WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| migval::db::failure(&e, None).to_string())?;
    Ok((row.get(0), row.get(1)))
}

#[test]
fn a_client_certificate_is_sent_and_accepted_by_a_server_requiring_verify_full() {
    let port = client_cert_server().port();
    rt().block_on(async {
        for (crt, key) in [
            ("ec.crt", "ec-pkcs8.key"),
            ("ec.crt", "ec-sec1.key"),
            ("rsa.crt", "rsa-pkcs1.key"),
        ] {
            let url = cert_url(port, &with_cert(crt, key));
            let (user, dn) = cert_session(&url)
                .await
                .unwrap_or_else(|e| panic!("{crt} + {key}: connecting failed: {e}"));
            assert_eq!(user, CERT_USER, "{crt} + {key}");
            assert!(
                dn.contains(&format!("CN={CERT_USER}")),
                "{crt} + {key}: client_dn {dn}"
            );
        }
        // Without the certificate: the server's own refusal, as psql shows it.
        let err = cert_session(&cert_url(port, ""))
            .await
            .expect_err("no certificate");
        assert!(
            err.contains("connection requires a valid client certificate"),
            "the server's message: {err}"
        );
    });
}

#[test]
fn client_key_problems_are_refused_naming_the_option_and_path_and_sslpassword_decrypts() {
    let port = client_cert_server().port();
    let d = &client_pki().dir.0;
    rt().block_on(async {
        // A missing certificate file.
        let missing = d.join("nope.crt");
        let url = cert_url(
            port,
            &format!(
                "&sslcert={}&sslkey={}",
                p(&missing),
                p(&d.join("ec-pkcs8.key"))
            ),
        );
        let err = cert_session(&url).await.expect_err("missing certificate");
        assert!(
            err.contains("sslcert") && err.contains(p(&missing)),
            "{err}"
        );
        // A key readable by group and others: libpq's rule and wording.
        let loose = d.join("loose.key");
        std::fs::copy(d.join("ec-pkcs8.key"), &loose).unwrap();
        set_mode(&loose, 0o644);
        let err = cert_session(&cert_url(port, &with_cert("ec.crt", "loose.key")))
            .await
            .expect_err("group-readable key");
        assert!(
            err.contains("sslkey")
                && err.contains("has group or world access")
                && err.contains("u=rw (0600)"),
            "{err}"
        );
        // A passphrase-protected key: sslpassword decrypts it; without it, or with a wrong
        // one, the error says so; the legacy OpenSSL format is named with how to convert it.
        let encrypted = with_cert("ec.crt", "ec-encrypted.key");
        let (user, _) = cert_session(&cert_url(
            port,
            &format!("{encrypted}&sslpassword={KEY_PASSPHRASE}"),
        ))
        .await
        .unwrap_or_else(|e| panic!("the encrypted key with its passphrase: {e}"));
        assert_eq!(user, CERT_USER);
        let err = cert_session(&cert_url(port, &encrypted))
            .await
            .expect_err("encrypted key without sslpassword");
        assert!(
            err.contains("protected by a passphrase: give it with sslpassword"),
            "{err}"
        );
        let err = cert_session(&cert_url(port, &format!("{encrypted}&sslpassword=wrong")))
            .await
            .expect_err("a wrong passphrase");
        assert!(err.contains("sslpassword does not decrypt it"), "{err}");
        let err = cert_session(&cert_url(
            port,
            &format!(
                "{}&sslpassword={KEY_PASSPHRASE}",
                with_cert("ec.crt", "ec-legacy.key")
            ),
        ))
        .await
        .expect_err("legacy encrypted PEM");
        assert!(
            err.contains("legacy PEM format") && err.contains("openssl pkcs8 -topk8"),
            "{err}"
        );
    });
    // Through the binary: the snapshot connects with the encrypted key; the passphrase is on
    // no output and in no file; --backup is refused before any work (pg_dump could only get
    // sslpassword on its command line).
    let url = cert_url(
        port,
        &format!(
            "{}&sslpassword={KEY_PASSPHRASE}",
            with_cert("ec.crt", "ec-encrypted.key")
        ),
    );
    let dir = Scratch::new("client-key-password");
    let spec = cert_probe_spec(&dir);
    let base = dir.0.join("b.json");
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.all().contains(KEY_PASSPHRASE), "{r}");
    let saved = std::fs::read_to_string(&base).unwrap();
    assert!(
        !saved.contains(KEY_PASSPHRASE),
        "the passphrase is in the baseline"
    );
    let migration = dir.file("m.sql", "SELECT 1;\n");
    let r = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &url,
        "--commit",
        "--backup",
        p(&dir.0.join("backup.dump")),
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("--backup")
            && r.stderr
                .contains("the client key is encrypted (sslpassword)"),
        "{r}"
    );
    assert!(!r.all().contains(KEY_PASSPHRASE), "{r}");
}

/// A table `CERT_USER` may read on the client-certificate cluster, and a spec counting it.
fn cert_probe_spec(dir: &Scratch) -> PathBuf {
    let cluster = client_cert_server();
    rt().block_on(async {
        let c = migval::db::connect(&info(&cluster.url("postgres"))).await.expect("connect");
        c.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS cert_probe (id int); GRANT SELECT ON cert_probe TO {CERT_USER};"
        ))
        .await
        .expect("create cert_probe");
    });
    dir.file(
        "checks.toml",
        "[[check]]\nname = \"rows\"\ntable = \"cert_probe\"\nmetrics = [\"count(*)\"]\n",
    )
}

#[test]
fn snapshot_with_a_client_certificate_through_the_binary() {
    let cluster = client_cert_server();
    let dir = Scratch::new("client-cert-snapshot");
    let spec = cert_probe_spec(&dir);
    let out = dir.0.join("base.json");
    let db = cert_url(cluster.port(), &with_cert("ec.crt", "ec-pkcs8.key"));
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &db,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(out.exists(), "{r}");
    let no_cert = cert_url(cluster.port(), "");
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&dir.0.join("x.json")),
        "--db",
        &no_cert,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("connection requires a valid client certificate"),
        "{r}"
    );
}
