//! TLS for PostgreSQL connections: a rustls client configuration for each libpq `sslmode`.
//!
//! tokio-postgres only knows "no TLS", "TLS if offered" and "TLS required"
//! ([`ConnInfo::pg_config`] maps libpq's six modes onto those); *what is verified* is decided
//! here, by the certificate verifier inside the connector:
//!
//! | sslmode                      | server certificate                                        |
//! |------------------------------|-----------------------------------------------------------|
//! | `disable`                    | (connector never used)                                    |
//! | `allow`, `prefer`, `require` | accepted without verification (encrypted, not authenticated); but when `sslrootcert` names an existing file, its chain is verified as in `verify-ca` (libpq does the same) |
//! | `verify-ca`                  | must chain to a root in `sslrootcert`; host name not checked |
//! | `verify-full`                | must chain to a root in `sslrootcert` (or, without one, the Mozilla roots from webpki-roots) and name the host |
//!
//! A client certificate (`sslcert`, with its key in `sslkey`: PEM, PKCS#8, PKCS#1/RSA or
//! SEC1/EC) is offered when the server asks for one; the key file must not be readable by group
//! or others (libpq's rule and wording), and a passphrase-protected key is refused.
//!
//! Handshake signatures are always verified with the algorithms of the *ring* provider, which
//! is passed explicitly instead of relying on a process-wide default provider.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore,
    SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::db::conninfo::{ConnInfo, ConnInfoError, SYSTEM_ROOT_CERTS, SslMode};

/// The connector to pass to `tokio_postgres::Config::connect` and
/// `deadpool_postgres::Manager::from_config`.
///
/// # Errors
///
/// A root certificate file that is needed but missing, unreadable or without certificates
/// ([`ConnInfoError::RootCert`], naming the path and the sslmode), `verify-ca` without any
/// root certificate ([`ConnInfoError::MissingRootCert`]).
pub fn make_connector(info: &ConnInfo) -> Result<MakeRustlsConnect, ConnInfoError> {
    Ok(MakeRustlsConnect::new(client_config(info)?))
}

/// The rustls client configuration behind [`make_connector`].
///
/// # Errors
///
/// As [`make_connector`].
pub fn client_config(info: &ConnInfo) -> Result<ClientConfig, ConnInfoError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = server_verifier(info, &provider)?;
    // ssl_min_protocol_version / ssl_max_protocol_version narrow rustls' 1.2 + 1.3.
    let versions: &[&rustls::SupportedProtocolVersion] = if info.tls13_only {
        &[&rustls::version::TLS13]
    } else if info.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| ConnInfoError::Tls {
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config =
        match client_identity(info)? {
            Some((chain, key, key_path)) => config.with_client_auth_cert(chain, key).map_err(
                |e| ConnInfoError::ClientCert {
                    option: "sslkey",
                    path: key_path,
                    reason: format!(
                        "cannot be used with the certificate in sslcert ({e}); give the key that \
                         belongs to that certificate (RSA, ECDSA P-256/P-384 or Ed25519)"
                    ),
                },
            )?,
            None => config.with_no_client_auth(),
        };
    config.enable_sni = info.sslsni;
    Ok(config)
}

/// The client certificate chain and key of `info.sslcert` / `info.sslkey`, when a certificate
/// is configured.
type Identity = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    std::path::PathBuf,
);

fn client_identity(info: &ConnInfo) -> Result<Option<Identity>, ConnInfoError> {
    let Some(cert_path) = &info.sslcert else {
        return Ok(None);
    };
    if info.sslmode == SslMode::Disable {
        return Ok(None);
    }
    let cert_err = |reason: String| ConnInfoError::ClientCert {
        option: "sslcert",
        path: cert_path.clone(),
        reason,
    };
    let pem = std::fs::read(cert_path).map_err(|e| {
        cert_err(format!(
            "cannot read the client certificate ({e}); check the path given in sslcert / PGSSLCERT"
        ))
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("it is not a valid PEM file ({e})")))?;
    if chain.is_empty() {
        return Err(cert_err(
            "it contains no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    let Some(key_path) = info.sslkey.clone() else {
        return Err(cert_err(
            "no private key for it: give the key file with sslkey (or PGSSLKEY)".to_owned(),
        ));
    };
    let key_err = |reason: String| ConnInfoError::ClientCert {
        option: "sslkey",
        path: key_path.clone(),
        reason,
    };
    let meta = std::fs::metadata(&key_path).map_err(|e| {
        key_err(format!(
            "cannot read the client key ({e}); check the path given in sslkey / PGSSLKEY"
        ))
    })?;
    if !meta.is_file() {
        return Err(key_err("it is not a regular file".to_owned()));
    }
    if let Some(why) = key_permissions_problem(&meta) {
        return Err(key_err(why));
    }
    let pem = std::fs::read(&key_path).map_err(|e| key_err(format!("cannot read it ({e})")))?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(key_err(
            "the key is encrypted in OpenSSL's legacy PEM format, which migval does not read; \
             convert it to encrypted PKCS#8, keeping its passphrase (`openssl pkcs8 -topk8 -v2 \
             aes-256-cbc -in client.key -out client-p8.key`, then chmod 0600 it) and give that \
             file with sslpassword"
                .to_owned(),
        ));
    }
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let key = decrypt_pkcs8(&text, info.sslpassword.as_deref()).map_err(key_err)?;
        return Ok(Some((chain, key, key_path)));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        key_err(format!(
            "it contains no usable private key ({e}); expected PEM: PKCS#8 (BEGIN PRIVATE KEY), \
             PKCS#1 (BEGIN RSA PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY)"
        ))
    })?;
    Ok(Some((chain, key, key_path)))
}

/// An encrypted PKCS#8 key (`BEGIN ENCRYPTED PRIVATE KEY`: PBES2 with PBKDF2 or scrypt and
/// AES-CBC, what `openssl pkcs8 -topk8` writes), decrypted with `sslpassword`. The messages
/// never contain the passphrase.
fn decrypt_pkcs8(pem: &str, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    use pkcs8::EncryptedPrivateKeyInfo;
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(
            "the key is protected by a passphrase: give it with sslpassword (in the \
                    connection string or the service file; libpq has no environment variable \
                    for it)"
                .to_owned(),
        );
    };
    let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
        .map_err(|e| format!("it is not a valid PEM file ({e})"))?;
    if label != "ENCRYPTED PRIVATE KEY" {
        return Err(format!(
            "expected one ENCRYPTED PRIVATE KEY block, found `{label}`"
        ));
    }
    let info = EncryptedPrivateKeyInfo::try_from(der.as_slice())
        .map_err(|e| format!("it is not an encrypted PKCS#8 key ({e})"))?;
    // A wrong passphrase shows as bad padding (pkcs5 0.7 reports it as EncryptFailed) or,
    // rarely, as padding that happens to fit around bytes that are not DER.
    let plain = info.decrypt(password).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(
            pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
        )
        | pkcs8::Error::Asn1(_) => "sslpassword does not decrypt it (wrong passphrase?)".to_owned(),
        e => format!(
            "it cannot be decrypted ({e}); supported: PBES2 with PBKDF2 or scrypt and AES-CBC"
        ),
    })?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

/// libpq's rule for the client key file, with its wording: no group or world access when the
/// file is owned by the current user, at most u=rw,g=r when owned by root.
fn key_permissions_problem(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    // The owner of /proc/self is this process's effective user (Linux); elsewhere unknown.
    let euid = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
    let own = euid == Some(meta.uid()) && mode & 0o077 != 0;
    let root = meta.uid() == 0 && mode & 0o037 != 0;
    (own || root).then(|| {
        "private key file has group or world access; file must have permissions u=rw (0600) \
         or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned \
         by root"
            .to_owned()
    })
}

/// The certificate verifier for `info.sslmode` and `info.sslrootcert`.
fn server_verifier(
    info: &ConnInfo,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, ConnInfoError> {
    let mode = info.sslmode;
    let root = info.sslrootcert.as_deref();
    let accept_any = || -> Arc<dyn ServerCertVerifier> {
        Arc::new(AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable => accept_any(),
        SslMode::Allow | SslMode::Prefer | SslMode::Require => match root {
            Some(path) if is_system(path) => {
                Arc::new(ChainOnly(webpki_verifier(system_roots(), provider, mode)?))
            }
            // libpq: when the root certificate file exists, even these modes verify the chain.
            Some(path) if path.exists() => Arc::new(ChainOnly(webpki_verifier(
                load_roots(path, mode)?,
                provider,
                mode,
            )?)),
            _ => accept_any(),
        },
        SslMode::VerifyCa => {
            let roots = match root {
                None => return Err(ConnInfoError::MissingRootCert { sslmode: mode }),
                Some(path) if is_system(path) => system_roots(),
                Some(path) => load_roots(path, mode)?,
            };
            Arc::new(ChainOnly(webpki_verifier(roots, provider, mode)?))
        }
        SslMode::VerifyFull => {
            let roots = match root {
                // No sslrootcert and no ~/.postgresql/root.crt: trust the Mozilla roots.
                None => system_roots(),
                Some(path) if is_system(path) => system_roots(),
                Some(path) => load_roots(path, mode)?,
            };
            webpki_verifier(roots, provider, mode)?
        }
    };
    Ok(verifier)
}

fn is_system(path: &Path) -> bool {
    path == Path::new(SYSTEM_ROOT_CERTS)
}

/// The Mozilla root store shipped in webpki-roots.
fn system_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// All certificates of a PEM file as trust anchors.
fn load_roots(path: &Path, sslmode: SslMode) -> Result<RootCertStore, ConnInfoError> {
    let error = |reason: String| ConnInfoError::RootCert {
        path: path.to_path_buf(),
        sslmode,
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(format!("cannot read it ({e})")))?;
    let mut roots = RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| error(format!("it is not a valid PEM file ({e})")))?;
        roots.add(cert).map_err(|e| {
            error(format!(
                "certificate {} in it cannot be used as a trust anchor ({e})",
                n + 1
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(error(
            "it contains no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(roots)
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
    sslmode: SslMode,
) -> Result<Arc<WebPkiServerVerifier>, ConnInfoError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| ConnInfoError::Tls {
            reason: format!("cannot build the certificate verifier for sslmode={sslmode}: {e}"),
        })
}

/// libpq's `require`: any certificate is accepted, but the handshake signature must still be
/// valid for the presented certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to a trusted root, the host name is not checked.
///
/// webpki checks the name last, after the chain, so a name mismatch means the chain was fine.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    /// Test CA (EC P-256, valid 2026-11-21 to 2126), generated with openssl.
    const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIUDNVzVjEQKSYQXVbRLm/WeEhMqPwwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwObWlndmFsIHRlc3QgQ0EwIBcNMjYxMTIxMTE1MTE5WhgPMjEy
NjEwMjgxMTUxMTlaMBkxFzAVBgNVBAMMDm1pZ3ZhbCB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEKf5jbuCAHwz8TAgMMh1rVVWQMo4kfMTbHV3FdBxH
gBuRz7kx9X4f7JRlZGbah0jjrd07HRaiT298hDaTLhy/A6NjMGEwHQYDVR0OBBYE
FOzXmbZafoXetCIhIenlWxepchJxMB8GA1UdIwQYMBaAFOzXmbZafoXetCIhIenl
WxepchJxMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49
BAMCA0cAMEQCIFH05CyYBDmeZUZL/gpZ7lgSXD9IBB5Z9MTIjD+SQlG0AiA/fVDI
p/gSvTM+OgmZolmk3KVTGy5xLMTjJa+R6Q633A==
-----END CERTIFICATE-----
";

    /// Server certificate for DNS:db.example.com, issued by [`CA_PEM`].
    const SERVER_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBxzCCAW6gAwIBAgIUBjCH+iZWuwoe8vKMg+REomwXeZ4wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwObWlndmFsIHRlc3QgQ0EwIBcNMjYxMTIxMTE1MTE5WhgPMjEy
NjEwMjgxMTUxMTlaMBkxFzAVBgNVBAMMDmRiLmV4YW1wbGUuY29tMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEqAWXM4rvEJOGrY2KpFq42E2ZhB2eNFCyCUN07z6w
eQ9q/B1c7lIa/k2AKxdyGW5TV+arSot3sCUeMfPshy/dsqOBkTCBjjAMBgNVHRMB
Af8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAZBgNV
HREEEjAQgg5kYi5leGFtcGxlLmNvbTAdBgNVHQ4EFgQUQWGPecmT+33k3lF/aQBG
Vf2boMAwHwYDVR0jBBgwFoAU7NeZtlp+hd60IiEh6eVbF6lyEnEwCgYIKoZIzj0E
AwIDRwAwRAIgWByGmul94/m8eetmigaXMs5TWgxxsLDKPfjX4Ble99wCID0/ej23
pnGRp31oaUGajNqURWaKKZ8snGIGYihbqzlq
-----END CERTIFICATE-----
";

    /// Self-signed certificate for DNS:db.example.com, not issued by [`CA_PEM`].
    const SELF_SIGNED_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBtzCCAV2gAwIBAgIUQIZvQw8AXMbAOBPoG1XyfNDxS2AwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZGIuZXhhbXBsZS5jb20wIBcNMjYxMTIxMTE1MTE5WhgPMjEy
NjEwMjgxMTUxMTlaMBkxFzAVBgNVBAMMDmRiLmV4YW1wbGUuY29tMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEJMTz+Mkeozat2ez8WxyD31l973vP8CaAqlXliEe6
YLNxJEuVX5nnOEets64JXZcW8fWENu6gc4qxP+Ks/lbin6OBgDB+MB0GA1UdDgQW
BBQI8/Tr4hxZpvsEGeEgYS2E7P++TjAfBgNVHSMEGDAWgBQI8/Tr4hxZpvsEGeEg
YS2E7P++TjAMBgNVHRMBAf8EAjAAMBkGA1UdEQQSMBCCDmRiLmV4YW1wbGUuY29t
MBMGA1UdJQQMMAoGCCsGAQUFBwMBMAoGCCqGSM49BAMCA0gAMEUCIQDBgsTKy+3d
67Hcq8esBFp/Lzno5M29yW6LDeeKOJ0HJAIgG7o/D2g3UG0IDbNG4etq7x7/AH/g
EsW2DolA0Zz7IhU=
-----END CERTIFICATE-----
";

    /// Private key of [`SERVER_PEM`] (test only).
    const SERVER_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgP+0B47qDFj2Q4XF9
Ti+6u43JueD/Dii/fV5yW04KMZ+hRANCAASoBZcziu8Qk4atjYqkWrjYTZmEHZ40
ULIJQ3TvPrB5D2r8HVzuUhr+TYArF3IZblNX5qtKi3ewJR4x8+yHL92y
-----END PRIVATE KEY-----
";

    /// A moment inside the validity of the test certificates (2030-01-01).
    fn now() -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(1_893_456_000))
    }

    /// A file under the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, content: &str) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("migval-tls-{}-{name}", std::process::id()));
            std::fs::write(&path, content).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn info(sslmode: SslMode, sslrootcert: Option<&Path>) -> ConnInfo {
        let mut info =
            ConnInfo::resolve(Some("host=db.example.com user=u dbname=d"), &|_| None).unwrap();
        info.sslmode = sslmode;
        info.sslrootcert = sslrootcert.map(Path::to_path_buf);
        info
    }

    fn cert(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Runs the verifier of `sslmode` on `pem` presented by `host`.
    fn verify(
        sslmode: SslMode,
        root: Option<&Path>,
        pem: &str,
        host: &str,
    ) -> Result<ServerCertVerified, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = server_verifier(&info(sslmode, root), &provider).unwrap();
        let name = ServerName::try_from(host.to_owned()).unwrap();
        verifier.verify_server_cert(&cert(pem), &[], &name, &[], now())
    }

    #[test]
    fn make_connector_for_each_sslmode() {
        let ca = TempFile::new("ca.pem", CA_PEM);
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyFull,
        ] {
            assert!(make_connector(&info(mode, None)).is_ok(), "{mode}");
        }
        for mode in [
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert!(make_connector(&info(mode, Some(&ca.0))).is_ok(), "{mode}");
            assert!(
                make_connector(&info(mode, Some(Path::new("system")))).is_ok(),
                "{mode}"
            );
        }
    }

    #[test]
    fn several_certificates_in_one_root_file() {
        let bundle = TempFile::new("bundle.pem", &format!("{CA_PEM}{SELF_SIGNED_PEM}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        assert_eq!(load_roots(&bundle.0, SslMode::VerifyFull).unwrap().len(), 2);
        assert!(server_verifier(&info(SslMode::VerifyFull, Some(&bundle.0)), &provider).is_ok());
        assert!(
            verify(
                SslMode::VerifyFull,
                Some(&bundle.0),
                SERVER_PEM,
                "db.example.com"
            )
            .is_ok()
        );
    }

    #[test]
    fn missing_root_cert_file_is_an_error_naming_path_and_mode() {
        let path = Path::new("/nonexistent-migval/ca-bundle.pem");
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let message = match make_connector(&info(mode, Some(path))) {
                Ok(_) => panic!("{mode} with a missing root file should fail"),
                Err(e) => e.to_string(),
            };
            assert!(
                message.contains("/nonexistent-migval/ca-bundle.pem"),
                "{message}"
            );
            assert!(message.contains(&format!("sslmode={mode}")), "{message}");
        }
        // Like libpq, weaker modes only use the file when it exists.
        assert!(make_connector(&info(SslMode::Require, Some(path))).is_ok());
        assert!(make_connector(&info(SslMode::Disable, Some(path))).is_ok());
    }

    #[test]
    fn root_cert_file_without_certificates_is_an_error() {
        let empty = TempFile::new("empty.pem", "not a certificate\n");
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let message = match make_connector(&info(mode, Some(&empty.0))) {
                Ok(_) => panic!("{mode} with an empty root file should fail"),
                Err(e) => e.to_string(),
            };
            assert!(
                message.contains(&empty.0.display().to_string()),
                "{message}"
            );
            assert!(message.contains("no PEM certificate"), "{message}");
        }
        let broken = TempFile::new(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        );
        let message = make_connector(&info(SslMode::VerifyFull, Some(&broken.0)))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains(&broken.0.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn verify_ca_without_root_cert_is_an_error() {
        let message = make_connector(&info(SslMode::VerifyCa, None))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("verify-ca"), "{message}");
        assert!(message.contains("sslrootcert"), "{message}");
    }

    #[test]
    fn require_accepts_any_certificate() {
        assert!(verify(SslMode::Require, None, SELF_SIGNED_PEM, "elsewhere.example").is_ok());
        assert!(verify(SslMode::Prefer, None, SERVER_PEM, "elsewhere.example").is_ok());
    }

    #[test]
    fn require_with_existing_root_file_verifies_the_chain_like_libpq() {
        let ca = TempFile::new("ca-require.pem", CA_PEM);
        assert!(verify(SslMode::Require, Some(&ca.0), SERVER_PEM, "other.example").is_ok());
        assert!(
            verify(
                SslMode::Require,
                Some(&ca.0),
                SELF_SIGNED_PEM,
                "db.example.com"
            )
            .is_err()
        );
    }

    #[test]
    fn verify_ca_checks_the_chain_but_not_the_host_name() {
        let ca = TempFile::new("ca-verify-ca.pem", CA_PEM);
        assert!(verify(SslMode::VerifyCa, Some(&ca.0), SERVER_PEM, "db.example.com").is_ok());
        assert!(verify(SslMode::VerifyCa, Some(&ca.0), SERVER_PEM, "other.example").is_ok());
        assert!(verify(SslMode::VerifyCa, Some(&ca.0), SERVER_PEM, "10.0.0.1").is_ok());
        let err = verify(
            SslMode::VerifyCa,
            Some(&ca.0),
            SELF_SIGNED_PEM,
            "db.example.com",
        );
        assert!(
            matches!(
                err,
                Err(TlsError::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn verify_full_checks_chain_and_host_name() {
        let ca = TempFile::new("ca-verify-full.pem", CA_PEM);
        assert!(
            verify(
                SslMode::VerifyFull,
                Some(&ca.0),
                SERVER_PEM,
                "db.example.com"
            )
            .is_ok()
        );
        let err = verify(
            SslMode::VerifyFull,
            Some(&ca.0),
            SERVER_PEM,
            "other.example",
        );
        assert!(
            matches!(
                err,
                Err(TlsError::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{err:?}"
        );
        assert!(
            verify(
                SslMode::VerifyFull,
                Some(&ca.0),
                SELF_SIGNED_PEM,
                "db.example.com"
            )
            .is_err()
        );
        // Without a root file: the Mozilla roots, which do not include the test CA.
        assert!(verify(SslMode::VerifyFull, None, SERVER_PEM, "db.example.com").is_err());
    }

    /// Fixed clock, so the handshake tests do not depend on the machine's date.
    #[derive(Debug)]
    struct FixedTime;

    impl rustls::time_provider::TimeProvider for FixedTime {
        fn current_time(&self) -> Option<UnixTime> {
            Some(now())
        }
    }

    /// A full in-memory TLS handshake between the client configuration of `sslmode` and a
    /// rustls server presenting [`SERVER_PEM`], with the client connecting to `host`.
    fn handshake(sslmode: SslMode, root: Option<&Path>, host: &str) -> Result<(), TlsError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::{ClientConnection, ServerConfig, ServerConnection};

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert(SERVER_PEM)],
                PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes()).unwrap(),
            )?;
        server_config.time_provider = Arc::new(FixedTime);
        let mut client_config = client_config(&info(sslmode, root)).unwrap();
        client_config.time_provider = Arc::new(FixedTime);

        let name = ServerName::try_from(host.to_owned()).unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name)?;
        let mut server = ServerConnection::new(Arc::new(server_config))?;
        for _ in 0..20 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn handshakes_complete_per_sslmode() {
        let ca = TempFile::new("ca-handshake.pem", CA_PEM);
        // Encrypted, not authenticated: any name, no roots; the signature is still checked.
        handshake(SslMode::Require, None, "elsewhere.example").unwrap();
        handshake(SslMode::Prefer, None, "10.0.0.1").unwrap();
        handshake(SslMode::VerifyCa, Some(&ca.0), "other.example").unwrap();
        handshake(SslMode::VerifyFull, Some(&ca.0), "db.example.com").unwrap();
        let err = handshake(SslMode::VerifyFull, Some(&ca.0), "other.example").unwrap_err();
        assert!(matches!(err, TlsError::InvalidCertificate(_)), "{err:?}");
        let err = handshake(SslMode::VerifyFull, None, "db.example.com").unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::InvalidCertificate(CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
    }
}
