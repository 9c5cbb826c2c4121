//! What a reviewer can rely on about a baseline file, in three strengths:
//!
//! ```text
//!   checksum (always)       sha256 of the content, in the file      accidents: truncation, a
//!                                                                   full disk, a stray edit
//!   --baseline-sha256 HEX   the hash `snapshot` printed, pasted     a swapped or edited file:
//!                           into the change ticket                  anyone can recompute the
//!                                                                   checksum, not the ticket
//!   HMAC-SHA256 signature   keyed (MIGVAL_SIGNING_KEY or            a file edited by someone
//!                           --signing-key-file), in the file        who does not hold the key
//! ```
//!
//! The checksum, the printed hash and the signature all cover the same bytes: the content of
//! the file after its header (see [`crate::store`]).

use std::fmt;
use std::path::Path;

use hmac::KeyInit;
use sha2::Sha256;

/// The environment variable holding the signing key.
pub const KEY_ENV: &str = "MIGVAL_SIGNING_KEY";

/// Shortest key accepted: 16 bytes (`openssl rand -hex 32` gives 64).
const MIN_KEY_BYTES: usize = 16;

/// An HMAC-SHA256 key. Never printed: `Debug` shows only its length.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(<{} bytes>)", self.0.len())
    }
}

pub type HmacSha256 = hmac::Hmac<Sha256>;

impl SigningKey {
    /// A key from its text; surrounding blanks and the newline of `echo ... > file` are not part
    /// of it.
    pub fn new(text: &[u8], source: &str) -> Result<SigningKey, String> {
        let trimmed = text.trim_ascii();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the signing key from {source} is {} bytes long; use at least {MIN_KEY_BYTES} \
                 (e.g. `openssl rand -hex 32`)",
                trimmed.len()
            ));
        }
        Ok(SigningKey(trimmed.to_vec()))
    }

    /// The key from `--signing-key-file` if given, else from `MIGVAL_SIGNING_KEY`, else none.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SigningKey>, String> {
        if let Some(path) = file {
            let bytes = crate::input::read_bounded(path, 1 << 20, "a key file is a few bytes")
                .map_err(|e| format!("cannot read the signing key file {}: {e}", path.display()))?;
            return SigningKey::new(&bytes, &path.display().to_string()).map(Some);
        }
        match env(KEY_ENV) {
            Some(v) if !v.is_empty() => SigningKey::new(v.as_bytes(), KEY_ENV).map(Some),
            _ => Ok(None),
        }
    }

    pub fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }
}

/// Lower-case hex of `bytes` (no allocation per byte: a 100,000-check spec hashes each check).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Compare two hex strings without an early exit (a signature check).
pub fn same_hex(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
            acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
        }) == 0
}

/// `--baseline-sha256`: 64 hex digits, optionally written `sha256:HEX` or pasted as a
/// `sha256sum` line (`HEX  file`).
pub fn parse_sha256(s: &str) -> Result<String, String> {
    let t = s.trim();
    let t = t.strip_prefix("sha256:").unwrap_or(t);
    let t = t.split_whitespace().next().unwrap_or("");
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!(
            "`{s}` is not a SHA-256 (64 hex digits, as `migval snapshot` prints it)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        // RFC 4231 4.3: key "Jefe" is too short for migval, so go through the MAC directly.
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keys_are_trimmed_checked_and_never_shown() {
        let k = SigningKey::new(b"  0123456789abcdef0123\n", "test").unwrap();
        assert_eq!(format!("{k:?}"), "SigningKey(<20 bytes>)");
        assert!(
            SigningKey::new(b"short", "test")
                .unwrap_err()
                .contains("at least 16")
        );
        let env = |k: &str| (k == KEY_ENV).then(|| "k".repeat(32));
        assert!(SigningKey::load(None, &env).unwrap().is_some());
        assert!(SigningKey::load(None, &|_| None).unwrap().is_none());
    }

    #[test]
    fn expected_hashes_parse_in_the_forms_people_paste() {
        let h = "ab".repeat(32);
        assert_eq!(parse_sha256(&h).unwrap(), h);
        assert_eq!(
            parse_sha256(&format!("sha256:{}", h.to_uppercase())).unwrap(),
            h
        );
        assert_eq!(parse_sha256(&format!("{h}  baseline.json")).unwrap(), h);
        assert!(parse_sha256("abc").is_err());
        assert!(same_hex(&h, &h.to_uppercase()));
        assert!(!same_hex(&h, &"cd".repeat(32)));
    }
}
