//! TLS to the relay: rustls, TLS 1.2 or 1.3 only, and the certificate
//! checked one of two ways:
//!
//! - with `relay.fingerprints` set, a pin match is required and sufficient
//!   (Postfix's `fingerprint` level): the leaf certificate's SHA-1 or
//!   SHA-256 digest, or the SHA-256 of its SubjectPublicKeyInfo, must be
//!   in the list. Chain and name are not checked, so self-signed relays
//!   work; the handshake signature still is, so only the holder of the
//!   pinned key can complete it.
//! - without pins, the chain and the host name are verified against
//!   `relay.ca_file` or the system's roots (Postfix's `secure` level).
//!
//! Either way the verifier records the certificate the relay presented,
//! so a failure can say exactly what the relay showed, in config syntax.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha1::Digest as _;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use x509_cert::der::{Decode, Encode};

use crate::config::{Pin, Relay, colon_hex};
use crate::health::{CertCheck, RelayCert};

/// What a relay's leaf certificate is, as an admin needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub sha1: [u8; 20],
    pub sha256: [u8; 32],
    pub spki_sha256: [u8; 32],
    pub subject: String,
    pub issuer: String,
    pub not_after: Option<SystemTime>,
}

impl CertInfo {
    /// The certificate's digests, names and expiry; an error when it is
    /// not a certificate (no SPKI pin could be computed, and an all-zero
    /// one must never stand in for it).
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let sha1: [u8; 20] = sha1::Sha1::digest(der).into();
        let sha256: [u8; 32] = sha2::Sha256::digest(der).into();
        let parsed = x509_cert::Certificate::from_der(der)
            .map_err(|e| format!("the relay's certificate cannot be parsed ({e})"))?;
        let tbs = &parsed.tbs_certificate;
        let spki = tbs
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("the relay's certificate has no usable public key ({e})"))?;
        Ok(CertInfo {
            sha1,
            sha256,
            spki_sha256: sha2::Sha256::digest(spki).into(),
            subject: printable(&tbs.subject.to_string()),
            issuer: printable(&tbs.issuer.to_string()),
            not_after: Some(
                SystemTime::UNIX_EPOCH + tbs.validity.not_after.to_date_time().unix_duration(),
            ),
        })
    }

    /// The three pins this certificate satisfies.
    pub fn pins(&self) -> [Pin; 3] {
        [
            Pin::CertSha1(self.sha1),
            Pin::CertSha256(self.sha256),
            Pin::SpkiSha256(self.spki_sha256),
        ]
    }

    /// Whether any of `pins` names this certificate or its key.
    pub fn matches(&self, pins: &[Pin]) -> bool {
        self.pins().iter().any(|p| pins.contains(p))
    }

    /// What the health record keeps of a certificate `relay` presented
    /// and that `check` accepted.
    pub fn for_health(&self, relay: &str, check: CertCheck) -> RelayCert {
        RelayCert {
            relay: relay.to_string(),
            subject: self.subject.clone(),
            not_after: self.not_after.map(crate::health::secs),
            check,
            spki_pin: Pin::SpkiSha256(self.spki_sha256).to_string(),
            config_line: self.config_line(),
        }
    }

    /// The presented pins, ready to paste: `fingerprints = ["...", ...]`.
    pub fn config_line(&self) -> String {
        let pins: Vec<String> = self.pins().iter().map(|p| format!("\"{p}\"")).collect();
        format!("fingerprints = [{}]", pins.join(", "))
    }
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SHA-1 {}, SHA-256 {}, {}",
            colon_hex(&self.sha1),
            colon_hex(&self.sha256),
            Pin::SpkiSha256(self.spki_sha256)
        )
    }
}

/// A name from the relay's certificate as logs, terminals and systemd's
/// status line may show it: the relay chose it, so control characters
/// (escape sequences, newlines) become U+FFFD.
fn printable(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// How the relay's certificate is checked.
#[derive(Debug)]
enum Check {
    Pins(Vec<Pin>),
    Ca(Arc<WebPkiServerVerifier>),
    /// Any certificate, recorded: `relayctl fingerprint`, which sends
    /// nothing but EHLO and QUIT over the session.
    Record,
}

/// A certificate verifier that remembers what it was shown.
#[derive(Debug)]
pub struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
    presented: Mutex<Option<CertInfo>>,
    /// How the presented certificate was accepted, once it was.
    accepted: Mutex<Option<CertCheck>>,
}

impl Verifier {
    /// The leaf certificate the relay presented, once the handshake got
    /// that far.
    pub fn presented(&self) -> Option<CertInfo> {
        self.presented.lock().map(|p| p.clone()).unwrap_or(None)
    }

    /// The presented certificate and how it was trusted, once accepted
    /// (not for [`Tls::record_only`], which judges nothing).
    pub fn trusted(&self) -> Option<(CertInfo, CertCheck)> {
        let check = self.accepted.lock().map(|a| *a).unwrap_or(None)?;
        Some((self.presented()?, check))
    }

    fn accept(&self, check: CertCheck) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut slot) = self.accepted.lock() {
            *slot = Some(check);
        }
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let info = CertInfo::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // A key pin wins over a digest of the same certificate: it is the
        // one that survives a renewal.
        let matched = match &self.check {
            Check::Pins(pins) if pins.contains(&Pin::SpkiSha256(info.spki_sha256)) => {
                Some(CertCheck::SpkiPin)
            }
            Check::Pins(pins) if info.matches(pins) => Some(CertCheck::CertificatePin),
            Check::Pins(_) | Check::Ca(_) | Check::Record => None,
        };
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(info);
        }
        match &self.check {
            Check::Pins(_) => match matched {
                Some(check) => self.accept(check),
                None => Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                )),
            },
            Check::Record => Ok(ServerCertVerified::assertion()),
            Check::Ca(webpki) => {
                webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )?;
                self.accept(CertCheck::Ca)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why TLS could not be set up (before any connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetupError {
    CaFile(String),
    NoRoots(String),
    BadHostName(String),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::CaFile(e) => write!(f, "relay.ca_file: {e}"),
            TlsSetupError::NoRoots(e) => write!(
                f,
                "no CA certificates to check the relay with ({e}); install ca-certificates, \
                 set relay.ca_file, or pin the relay with relay.fingerprints"
            ),
            TlsSetupError::BadHostName(h) => write!(f, "relay.host: {h:?} is not a host name"),
        }
    }
}

/// Everything needed to open TLS to the relay, built once per config.
#[derive(Debug, Clone)]
pub struct Tls {
    provider: Arc<CryptoProvider>,
    pins: Vec<Pin>,
    roots: Option<Arc<RootCertStore>>,
    server_name: ServerName<'static>,
    /// Accept any certificate and record it (`relayctl fingerprint`).
    record_only: bool,
}

impl Tls {
    pub fn new(relay: &Relay) -> Result<Tls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_name = ServerName::try_from(relay.host.clone())
            .map_err(|_| TlsSetupError::BadHostName(relay.host.clone()))?;
        let roots = if relay.fingerprints.is_empty() {
            Some(Arc::new(load_roots(relay.ca_file.as_deref())?))
        } else {
            None
        };
        Ok(Tls {
            provider,
            pins: relay.fingerprints.clone(),
            roots,
            server_name,
            record_only: false,
        })
    }

    /// A TLS setup that accepts any certificate and records the one it
    /// is shown: `relayctl fingerprint` reads a relay's certificate with
    /// it, then says QUIT and closes the session properly, so that the
    /// relay logs no TLS alert. Never used to send anything else.
    pub fn record_only(host: &str) -> Result<Tls, TlsSetupError> {
        Ok(Tls {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            pins: Vec::new(),
            roots: None,
            server_name: ServerName::try_from(host.to_string())
                .map_err(|_| TlsSetupError::BadHostName(host.to_string()))?,
            record_only: true,
        })
    }

    /// A connector for one connection, and its verifier (to ask what the
    /// relay presented).
    pub fn connector(&self) -> Result<(TlsConnector, Arc<Verifier>), rustls::Error> {
        let check = match &self.roots {
            None if self.record_only => Check::Record,
            None => Check::Pins(self.pins.clone()),
            Some(roots) => Check::Ca(
                WebPkiServerVerifier::builder_with_provider(roots.clone(), self.provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
        };
        let verifier = Arc::new(Verifier {
            check,
            provider: self.provider.clone(),
            presented: Mutex::new(None),
            accepted: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok((TlsConnector::from(Arc::new(config)), verifier))
    }

    pub fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }

    pub fn pinned(&self) -> bool {
        self.roots.is_none()
    }
}

/// A client config that checks the server's chain and name against
/// `ca_file`, or the system's roots: for HTTPS to the OAuth 2.0 token
/// endpoint, which is never pinned.
pub fn ca_checked_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = load_roots(ca_file)?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::NoRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                TlsSetupError::CaFile(format!("cannot read {}: {e}", path.display()))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    TlsSetupError::CaFile(format!(
                        "{} is not PEM certificates: {e}",
                        path.display()
                    ))
                })?;
                roots.add(cert).map_err(|e| {
                    TlsSetupError::CaFile(format!("{}: unusable certificate: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(TlsSetupError::CaFile(format!(
                    "{} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "the system store is empty".into());
                return Err(TlsSetupError::NoRoots(why));
            }
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("certs")
            .join(name);
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    #[test]
    fn pins_of_a_certificate_and_its_renewal() {
        let relay = CertInfo::from_der(&cert("relay.pem")).unwrap();
        let renewed = CertInfo::from_der(&cert("relay-renewed.pem")).unwrap();
        let rotated = CertInfo::from_der(&cert("relay2.pem")).unwrap();
        assert_ne!(relay.sha256, renewed.sha256);
        assert_eq!(
            relay.spki_sha256, renewed.spki_sha256,
            "same key, same SPKI pin"
        );
        assert_ne!(relay.spki_sha256, rotated.spki_sha256);
        assert!(renewed.matches(&[Pin::SpkiSha256(relay.spki_sha256)]));
        assert!(!rotated.matches(&relay.pins()));
        assert_eq!(relay.subject, "CN=localhost");
        assert_eq!(relay.issuer, "CN=alert-relay test CA");
        let line = relay.config_line();
        assert!(line.starts_with("fingerprints = [\""), "{line}");
        assert!(line.contains("sha256-spki:"), "{line}");
    }

    #[test]
    fn names_a_relay_chose_reach_no_terminal_as_escape_sequences() {
        let shown = printable("CN=relay\x1b[2J\nMAINPID=1");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.starts_with("CN=relay"), "{shown:?}");
    }

    #[test]
    fn what_is_not_a_certificate_is_an_error_not_a_zero_pin() {
        let e = CertInfo::from_der(b"\x30\x03garbage").unwrap_err();
        assert!(e.contains("cannot be parsed"), "{e}");
        assert!(CertInfo::from_der(&[]).is_err());
    }

    #[test]
    fn ca_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            load_roots(Some(&empty)),
            Err(TlsSetupError::CaFile(_))
        ));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            load_roots(Some(&missing)),
            Err(TlsSetupError::CaFile(_))
        ));
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
        assert_eq!(load_roots(Some(&ca)).unwrap().len(), 1);
    }
}
