//! Baseline integrity a reviewer can rely on (a forged baseline with a recomputed checksum is
//! caught by --baseline-sha256 and by the HMAC signature), and input files read with a bound.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::{Run, TestDb, migval, migval_env, p, rt, snapshot_to};

const KEY: &str = "0123456789abcdef-test-signing-key";
const SPEC: &str = "[[check]]\nname = \"rows\"\ntable = \"t\"\nmetrics = [\"count(*)\"]\n";

fn three_rows(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);")
            .await;
        db
    })
}

/// The 64-hex hash in `baseline sha256 HEX` of a snapshot's output.
fn printed_sha256(r: &Run) -> String {
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("baseline sha256 "))
        .unwrap_or_else(|| panic!("snapshot prints the baseline's sha256{r}"));
    line["baseline sha256 ".len()..][..64].to_string()
}

/// Rewrite a snapshot file the way a forger would: edit the values, recompute the checksum
/// (anyone can), keep the signature header as it was (or drop it).
fn forge(path: &std::path::Path, rows: i64, keep_signature: bool) {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.trim_end_matches('\n');
    // {"checksum":"sha256:HEX",["signature":"hmac-sha256:HEX",]REST
    let mut split = "{\"checksum\":\"sha256:".len() + 66;
    if text[split..].starts_with("\"signature\"") {
        split += "\"signature\":\"hmac-sha256:".len() + 66;
    }
    let (header, rest) = text.split_at(split);
    let mut json: serde_json::Value = serde_json::from_str(&format!("{{{rest}")).unwrap();
    json["checks"][0]["outcome"]["captured"]["cells"] = serde_json::json!([rows]);
    let body = serde_json::to_string(&json).unwrap();
    let rest = &body[1..];
    let checksum = migval::integrity::hex(&Sha256::digest(rest.as_bytes()));
    let signature = header
        .find("\"signature\"")
        .filter(|_| keep_signature)
        .map(|i| header[i..].to_string())
        .unwrap_or_default();
    std::fs::write(
        path,
        format!("{{\"checksum\":\"sha256:{checksum}\",{signature}{rest}\n"),
    )
    .unwrap();
}

#[test]
fn a_forged_baseline_passes_the_checksum_but_not_the_recorded_hash_or_the_signature() {
    let db = three_rows("integrity_forged_baseline");
    let spec = db.file("checks.toml", SPEC);
    let base = db.path("base.json");
    let key_file = db.file("key", &format!("{KEY}\n"));
    let snap = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            &db.url,
        ],
        &[("MIGVAL_SIGNING_KEY", KEY)],
    );
    assert_eq!(snap.code, 0, "{snap}");
    assert!(snap.stdout.contains("signed (HMAC-SHA256)"), "{snap}");
    assert!(!snap.all().contains(KEY), "the key is never shown{snap}");
    assert!(!std::fs::read_to_string(&base).unwrap().contains(KEY));
    let sha = printed_sha256(&snap);
    let verify = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
        ];
        args.extend_from_slice(extra);
        migval_env(&args, env)
    };

    // The genuine file: the right hash and the right key (file or variable) pass.
    let ok = verify(
        &[
            "--baseline-sha256",
            &sha,
            "--signing-key-file",
            p(&key_file),
        ],
        &[],
    );
    assert_eq!(ok.code, 0, "{ok}");
    let ok = verify(&[], &[("MIGVAL_SIGNING_KEY", KEY)]);
    assert_eq!(ok.code, 0, "{ok}");
    // `sha256sum` of the file is accepted too.
    let whole = migval::integrity::hex(&Sha256::digest(std::fs::read(&base).unwrap()));
    let ok = verify(&["--baseline-sha256", &whole], &[]);
    assert_eq!(ok.code, 0, "{ok}");
    // Signed, verified without a key: it passes, and says the signature was not checked.
    assert!(ok.stderr.contains("signature was not checked"), "{ok}");

    // The migration loses a row; the forger edits the baseline to match and recomputes the
    // checksum.
    rt().block_on(db.exec("DELETE FROM t WHERE id = 3"));
    let honest = verify(&[], &[]);
    assert_eq!(honest.code, 1, "the lost row fails the check{honest}");
    forge(&base, 2, true);
    let fooled = verify(&[], &[]);
    assert_eq!(
        fooled.code, 0,
        "the checksum alone cannot catch a recomputed forgery (what the hash and key are for){fooled}"
    );

    let r = verify(&["--baseline-sha256", &sha], &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains(&format!("not {sha} as given with --baseline-sha256")),
        "{r}"
    );
    assert!(
        !r.stdout.contains("VALIDATION"),
        "refused before anything runs{r}"
    );

    let r = verify(&[], &[("MIGVAL_SIGNING_KEY", KEY)]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("the signature does not match the content"),
        "{r}"
    );

    // The forger drops the signature instead: with a key, an unsigned file is refused.
    forge(&base, 2, false);
    let r = verify(&["--signing-key-file", p(&key_file)], &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("is not signed"), "{r}");

    // Signed with another key: refused.
    let other = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            &db.url,
        ],
        &[("MIGVAL_SIGNING_KEY", "another-key-of-enough-length")],
    );
    assert_eq!(other.code, 0, "{other}");
    let r = verify(&[], &[("MIGVAL_SIGNING_KEY", KEY)]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("signature does not match"), "{r}");

    // A key too short to be one is refused with what to do.
    let r = verify(&[], &[("MIGVAL_SIGNING_KEY", "short")]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("at least 16"), "{r}");
}

/// Run `args` and fail if it takes longer than `limit` (the bug read until memory ran out).
fn quickly(args: &[&str], limit: Duration) -> Run {
    let started = Instant::now();
    let r = migval(args);
    assert!(
        started.elapsed() < limit,
        "took {:?}: not refused at once{r}",
        started.elapsed()
    );
    r
}

#[test]
fn dev_zero_as_spec_or_baseline_is_refused_at_once() {
    let db = three_rows("integrity_dev_zero");
    let spec = db.file("checks.toml", SPEC);
    let out = db.path("base.json");
    let r = quickly(
        &[
            "snapshot",
            "--spec",
            "/dev/zero",
            "--out",
            p(&out),
            "--db",
            &db.url,
        ],
        Duration::from_secs(5),
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("/dev/zero")
            && r.stderr
                .contains("it is a character device, not a regular file"),
        "{r}"
    );

    let r = quickly(
        &[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            "/dev/zero",
            "--db",
            &db.url,
        ],
        Duration::from_secs(5),
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("cannot read snapshot /dev/zero")
            && r.stderr.contains("character device"),
        "{r}"
    );

    // A FIFO endlessly fed zeros: read up to the limit, then refused.
    let fifo = db.path("spec.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let feeder = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                let zeros = vec![0u8; 1 << 20];
                while f.write_all(&zeros).is_ok() {}
            }
        })
    };
    let r = quickly(
        &[
            "snapshot",
            "--spec",
            p(&fifo),
            "--out",
            p(&out),
            "--db",
            &db.url,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("larger than the limit of 64 MiB"), "{r}");
    feeder.join().unwrap();

    // A real baseline above --max-baseline-size: refused from its size, with the flag named.
    let snap = snapshot_to(&db, &spec, &out);
    assert_eq!(snap.code, 0, "{snap}");
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&out),
        "--db",
        &db.url,
        "--max-baseline-size",
        "1KiB",
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("larger than the limit of 1 KiB")
            && r.stderr.contains("--max-baseline-size"),
        "{r}"
    );
}
