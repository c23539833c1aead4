//! Recipients' OpenPGP keys: loaded and checked once per config load,
//! and asked at every message whether they can still encrypt.
//!
//! A key file must hold exactly one certificate, whose fingerprint equals
//! `[[recipients]].fingerprint`: anything else is a config error, because
//! encrypting to a key the admin did not name could hand an alert to the
//! wrong person. A key that is the right one but cannot encrypt (expired,
//! revoked, no encryption subkey) is not a config error for the daemon: it
//! starts, logs the problem, and that recipient's alerts are held with a
//! notice (the README's design note on unusable keys), so one stale key never stops the others'
//! alerts. `relayctl check` reports it as a failure.
//!
//! Validity is judged under Sequoia's `StandardPolicy` at the time of use,
//! so a key that expires while the daemon runs stops being used then. The
//! judgement is kept until the next moment it could change (see
//! [`RecipientKey::usable`]): judging means searching every binding
//! signature, and Sequoia builds and drops an error for each one it
//! passes over, with a backtrace when `RUST_BACKTRACE` is set.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::CertParser;
use openpgp::cert::Preferences;
use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::{Features, KeyFlags, RevocationStatus};

use crate::config::{Config, ConfigError, KeyFingerprint, Problem};
use crate::route::{Address, Recipient};

/// The policy every key and algorithm is judged by.
pub static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// Why a key file cannot be used at all (a config error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Unreadable {
        path: PathBuf,
        reason: String,
    },
    NotAKey {
        path: PathBuf,
        reason: String,
    },
    SeveralKeys {
        path: PathBuf,
        count: usize,
    },
    Mismatch {
        path: PathBuf,
        configured: String,
        actual: String,
    },
}

impl KeyError {
    /// The config key this error belongs to.
    pub fn config_key(&self) -> &'static str {
        match self {
            KeyError::Mismatch { .. } => "fingerprint",
            _ => "key",
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unreadable { path, reason } => {
                write!(f, "cannot read the key file {}: {reason}", path.display())
            }
            KeyError::NotAKey { path, reason } => write!(
                f,
                "{} is not an OpenPGP public key ({reason}); export it with gpg --armor --export",
                path.display()
            ),
            KeyError::SeveralKeys { path, count } => write!(
                f,
                "{} holds {count} keys; give each recipient a file with their key alone",
                path.display()
            ),
            KeyError::Mismatch {
                path,
                configured,
                actual,
            } => write!(
                f,
                "is {configured}, but {} holds the key {actual}; check that the file is the \
                 recipient's key, then set fingerprint = \"{actual}\"",
                path.display()
            ),
        }
    }
}

/// Why a valid key cannot encrypt now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CannotEncrypt {
    Revoked,
    Expired(SystemTime),
    NoEncryptionSubkey,
    /// Rejected by the policy (e.g. SHA-1 self-signatures, weak algorithms).
    Policy(String),
}

impl fmt::Display for CannotEncrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CannotEncrypt::Revoked => f.write_str("the key is revoked"),
            CannotEncrypt::Expired(t) => write!(
                f,
                "the key expired on {}",
                humantime::format_rfc3339_seconds(*t)
            ),
            CannotEncrypt::NoEncryptionSubkey => {
                f.write_str("the key has no valid encryption subkey (signing only?)")
            }
            CannotEncrypt::Policy(why) => write!(f, "the key is not acceptable: {why}"),
        }
    }
}

/// Reads a key file holding exactly one certificate.
pub fn read_cert(path: &Path) -> Result<Cert, KeyError> {
    let bytes = std::fs::read(path).map_err(|e| KeyError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let not_a_key = |reason: String| KeyError::NotAKey {
        path: path.to_path_buf(),
        reason,
    };
    let parser = CertParser::from_bytes(&bytes).map_err(|e| not_a_key(e.to_string()))?;
    let mut certs = Vec::new();
    for cert in parser {
        certs.push(cert.map_err(|e| not_a_key(e.to_string()))?);
    }
    match certs.len() {
        0 => Err(not_a_key("no key found in the file".into())),
        1 => Ok(certs.remove(0)),
        count => Err(KeyError::SeveralKeys {
            path: path.to_path_buf(),
            count,
        }),
    }
}

/// The public key alone, ASCII-armored: what is copied when a key is
/// imported (never a secret key a file might also hold).
pub fn armored_public(cert: &Cert) -> Result<Vec<u8>, String> {
    use openpgp::serialize::SerializeInto;
    cert.clone()
        .strip_secret_key_material()
        .armored()
        .to_vec()
        .map_err(|e| format!("cannot write the key: {e}"))
}

/// The fingerprint in `[[recipients]].fingerprint` form.
pub fn fingerprint(cert: &Cert) -> String {
    cert.fingerprint().to_hex()
}

/// Whether `cert` can encrypt at `now`, and if not, why.
pub fn can_encrypt(cert: &Cert, now: SystemTime) -> Result<(), CannotEncrypt> {
    let valid = cert
        .with_policy(&POLICY, now)
        .map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
    if let RevocationStatus::Revoked(_) = valid.revocation_status() {
        return Err(CannotEncrypt::Revoked);
    }
    if valid.alive().is_err() {
        let expiry = valid.primary_key().key_expiration_time();
        return Err(CannotEncrypt::Expired(expiry.unwrap_or(now)));
    }
    if encryption_keys(cert, now).next().is_some() {
        return Ok(());
    }
    // An RSA subkey whose exponent makes the encryption worthless.
    let weak = valid
        .keys()
        .subkeys()
        .key_flags(encryption_flags())
        .alive()
        .revoked(false)
        .find_map(|k| weak_rsa(k.key().role_as_unspecified()));
    if let Some(why) = weak {
        return Err(CannotEncrypt::Policy(why));
    }
    // Say "expired" when an encryption subkey exists but has run out.
    let expired = valid
        .keys()
        .subkeys()
        .key_flags(encryption_flags())
        .filter_map(|k| k.key_expiration_time())
        .filter(|t| *t <= now)
        .max();
    Err(match expired {
        Some(t) => CannotEncrypt::Expired(t),
        None => CannotEncrypt::NoEncryptionSubkey,
    })
}

/// Until when `cert` can encrypt, seen from `now`: `Ok(None)` when it
/// never expires, `Err` when it cannot encrypt now. The latest of its
/// usable encryption keys' expiries, each bounded by the primary key's.
pub fn encrypts_until(cert: &Cert, now: SystemTime) -> Result<Option<SystemTime>, CannotEncrypt> {
    can_encrypt(cert, now)?;
    let primary = cert
        .with_policy(&POLICY, now)
        .ok()
        .and_then(|v| v.primary_key().key_expiration_time());
    let mut until: Option<SystemTime> = Some(SystemTime::UNIX_EPOCH);
    for key in encryption_keys(cert, now) {
        let own = match (key.key_expiration_time(), primary) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        until = match (until, own) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Ok(until)
}

fn encryption_flags() -> KeyFlags {
    KeyFlags::empty()
        .set_transport_encryption()
        .set_storage_encryption()
}

/// The keys of `cert` that may encrypt at `now`.
pub fn encryption_keys(
    cert: &Cert,
    now: SystemTime,
) -> impl Iterator<
    Item = openpgp::cert::amalgamation::key::ValidErasedKeyAmalgamation<
        '_,
        openpgp::packet::key::PublicParts,
    >,
> {
    cert.keys()
        .with_policy(&POLICY, now)
        .supported()
        .alive()
        .revoked(false)
        .key_flags(encryption_flags())
        .filter(|k| weak_rsa(k.key().role_as_unspecified()).is_none())
}

/// Why an RSA key must not be encrypted to: a public exponent below 3
/// (with e = 1 the "ciphertext" is the padded session key itself) or an
/// even one (no valid RSA key has it). `None` for a sound key, or a key of
/// another algorithm. StandardPolicy does not look at the exponent.
pub fn weak_rsa(
    key: &openpgp::packet::Key<
        openpgp::packet::key::PublicParts,
        openpgp::packet::key::UnspecifiedRole,
    >,
) -> Option<String> {
    let openpgp::crypto::mpi::PublicKey::RSA { e, .. } = key.mpis() else {
        return None;
    };
    let e = e.value();
    let first = e.iter().position(|b| *b != 0).unwrap_or(e.len());
    let e = &e[first..];
    let below_three = e.len() <= 1 && e.first().copied().unwrap_or(0) < 3;
    let even = e.last().is_none_or(|b| b & 1 == 0);
    (below_three || even).then(|| {
        format!(
            "its RSA key {} has an unsafe public exponent ({}): ask its owner for a new key",
            key.fingerprint(),
            if below_three { "below 3" } else { "even" }
        )
    })
}

/// The longest a judgement of a key is kept even when none of the key's
/// own times comes sooner: the policy's cut-off dates for algorithms are
/// not visible from the key.
const JUDGEMENT_LIFETIME: Duration = Duration::from_secs(600);

/// What a recipient's key encrypts to, as judged under the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usable {
    /// The keys an alert is encrypted to.
    pub keys: Vec<openpgp::Fingerprint>,
    /// The certificate's features: SEIPDv2 support decides the packet
    /// format.
    pub features: Features,
}

/// One judgement of a key, valid from `at` until `until`.
#[derive(Debug)]
struct Judgement {
    at: SystemTime,
    until: SystemTime,
    verdict: Result<Arc<Usable>, CannotEncrypt>,
}

/// One configured recipient with their certificate.
#[derive(Debug, Clone)]
pub struct RecipientKey {
    /// Its position in `[[recipients]]`, for error messages.
    pub index: usize,
    pub recipient: Recipient,
    pub fingerprint: KeyFingerprint,
    pub path: PathBuf,
    pub cert: Arc<Cert>,
    /// The cert's keys whose session-key packets are built here
    /// ([`super::WrapKey`]), prepared once.
    pub wraps: Arc<[super::WrapKey]>,
    /// The last judgement of the cert, shared by the clones of this key
    /// (they hold the same cert). A config reload makes new keys.
    judged: Arc<Mutex<Option<Judgement>>>,
}

impl RecipientKey {
    /// A recipient's key, with its RSA keys prepared for encryption.
    pub fn new(
        index: usize,
        recipient: Recipient,
        fingerprint: KeyFingerprint,
        path: PathBuf,
        cert: Cert,
    ) -> RecipientKey {
        let wraps = cert
            .keys()
            .filter_map(|ka| super::WrapKey::new(ka.key().role_as_unspecified()))
            .collect();
        RecipientKey {
            index,
            recipient,
            fingerprint,
            path,
            cert: Arc::new(cert),
            wraps,
            judged: Arc::default(),
        }
    }

    /// What the key encrypts to at `now`, or why it cannot. The same as
    /// [`can_encrypt`] and [`encryption_keys`], judged again only when
    /// `now` has reached a time at which the answer could differ (a key
    /// or signature is created or expires: [`next_change`]), or has gone
    /// back before the last judgement.
    pub fn usable(&self, now: SystemTime) -> Result<Arc<Usable>, CannotEncrypt> {
        let mut judged = self.judged.lock().unwrap_or_else(|p| p.into_inner());
        match judged.as_ref() {
            Some(j) if j.at <= now && now < j.until => j.verdict.clone(),
            _ => {
                let j = judge(&self.cert, now);
                let verdict = j.verdict.clone();
                *judged = Some(j);
                verdict
            }
        }
    }

    /// The prepared key with this fingerprint, if there is one.
    pub fn wrap(&self, fingerprint: &openpgp::Fingerprint) -> Option<&super::WrapKey> {
        self.wraps.iter().find(|k| k.fingerprint() == fingerprint)
    }
}

/// `cert` judged at `now`.
fn judge(cert: &Cert, now: SystemTime) -> Judgement {
    let verdict = can_encrypt(cert, now).map(|()| {
        let keys: Vec<_> = encryption_keys(cert, now).collect();
        let features = keys
            .first()
            .and_then(|ka| ka.valid_cert().features())
            .unwrap_or_else(Features::empty);
        Arc::new(Usable {
            keys: keys.iter().map(|ka| ka.key().fingerprint()).collect(),
            features,
        })
    });
    let longest = now.checked_add(JUDGEMENT_LIFETIME).unwrap_or(now);
    Judgement {
        at: now,
        until: next_change(cert, now).map_or(longest, |t| t.min(longest)),
        verdict,
    }
}

/// The first moment after `now` at which a judgement of `cert` could
/// change: a key's or a signature's (or an embedded back-signature's)
/// creation time, a signature's expiry,
/// or a key's expiry (any key's creation time plus any validity period a
/// signature gives; pairs that do not belong together only make the
/// judgement end sooner). `None` when there is none.
pub fn next_change(cert: &Cert, now: SystemTime) -> Option<SystemTime> {
    use openpgp::Packet;
    let mut created = Vec::new();
    let mut periods = Vec::new();
    let mut times = Vec::new();
    for packet in cert.clone().into_packets() {
        match packet {
            Packet::PublicKey(k) => created.push(k.creation_time()),
            Packet::PublicSubkey(k) => created.push(k.creation_time()),
            Packet::SecretKey(k) => created.push(k.creation_time()),
            Packet::SecretSubkey(k) => created.push(k.creation_time()),
            Packet::Signature(sig) => {
                // With the back-signatures embedded in it: a subkey that
                // can sign is valid only while its own is.
                for s in std::iter::once(&sig).chain(sig.embedded_signatures()) {
                    times.extend(s.signature_creation_time());
                    times.extend(s.signature_expiration_time());
                    periods.extend(s.key_validity_period());
                }
            }
            _ => {}
        }
    }
    let expiries = created
        .iter()
        .flat_map(|c| periods.iter().filter_map(move |p| c.checked_add(*p)));
    created
        .iter()
        .copied()
        .chain(times)
        .chain(expiries)
        .filter(|t| *t > now)
        .min()
}

/// Every recipient's key, loaded once per config load.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<RecipientKey>,
}

impl Keyring {
    /// Loads and checks every `[[recipients]]` key; every problem is listed.
    pub fn load(config: &Config) -> Result<Keyring, ConfigError> {
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for (i, r) in config.recipients.iter().enumerate() {
            let loaded = read_cert(&r.key).and_then(|cert| {
                let actual = fingerprint(&cert);
                if actual == r.fingerprint.as_str() {
                    Ok(cert)
                } else {
                    Err(KeyError::Mismatch {
                        path: r.key.clone(),
                        configured: r.fingerprint.to_string(),
                        actual,
                    })
                }
            });
            match (loaded, Address::parse(&r.address)) {
                (Ok(cert), Ok(address)) => keys.push(RecipientKey::new(
                    i,
                    Recipient(address),
                    r.fingerprint.clone(),
                    r.key.clone(),
                    cert,
                )),
                (Err(e), _) => problems.push(Problem {
                    key: format!("recipients[{i}].{}", e.config_key()),
                    message: e.to_string(),
                }),
                // Config::load already refused a bad address.
                (Ok(_), Err(_)) => {}
            }
        }
        if problems.is_empty() {
            Ok(Keyring { keys })
        } else {
            Err(ConfigError {
                file: config.path.clone(),
                problems,
            })
        }
    }

    pub fn get(&self, recipient: &Recipient) -> Option<&RecipientKey> {
        self.keys.iter().find(|k| &k.recipient == recipient)
    }

    /// Keys that cannot encrypt at `now`, with the reason.
    pub fn unusable(&self, now: SystemTime) -> Vec<(&RecipientKey, CannotEncrypt)> {
        self.keys
            .iter()
            .filter_map(|k| can_encrypt(&k.cert, now).err().map(|e| (k, e)))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &RecipientKey> {
        self.keys.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/keys/{name}"))
    }

    mod test_keys {
        include!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/fingerprints.rs"
        ));
    }
    use test_keys::fingerprint as fpr_of;

    #[test]
    fn armored_and_binary_keys_load_with_their_fingerprint() {
        let armored = read_cert(&key("alerts.asc")).unwrap();
        let binary = read_cert(&key("alerts.gpg")).unwrap();
        assert_eq!(fingerprint(&armored), fpr_of("alerts"));
        assert_eq!(fingerprint(&binary), fpr_of("alerts"));
    }

    #[test]
    fn usable_keys_can_encrypt() {
        let now = SystemTime::now();
        for name in ["alerts", "journalist"] {
            let cert = read_cert(&key(&format!("{name}.asc"))).unwrap();
            assert_eq!(can_encrypt(&cert, now), Ok(()), "{name}");
        }
    }

    #[test]
    fn unusable_keys_say_why() {
        let now = SystemTime::now();
        let check =
            |name: &str| can_encrypt(&read_cert(&key(&format!("{name}.asc"))).unwrap(), now);
        assert_eq!(check("revoked"), Err(CannotEncrypt::Revoked));
        assert!(
            matches!(check("expired"), Err(CannotEncrypt::Expired(_))),
            "{:?}",
            check("expired")
        );
        assert_eq!(check("signonly"), Err(CannotEncrypt::NoEncryptionSubkey));
        let e = check("expired").unwrap_err().to_string();
        assert!(e.contains("expired on 2020-01-02"), "{e}");
    }

    /// A Curve25519 key made at a whole second an hour ago, valid for
    /// two hours, and the moment it expires.
    fn expiring_key() -> (RecipientKey, SystemTime) {
        use openpgp::cert::{CertBuilder, CipherSuite};
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let made = SystemTime::UNIX_EPOCH + Duration::from_secs(secs - 3600);
        let (cert, _) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(made)
            .set_validity_period(Duration::from_secs(7200))
            .add_userid("Expiring <expiring@example.org>")
            .add_transport_encryption_subkey()
            .generate()
            .unwrap();
        let fpr = fingerprint(&cert).parse().unwrap();
        let to = Recipient(Address::parse("expiring@example.org").unwrap());
        let key = RecipientKey::new(0, to, fpr, PathBuf::from("expiring.asc"), cert);
        (key, made + Duration::from_secs(7200))
    }

    #[test]
    fn the_next_change_of_a_key_is_its_expiry() {
        let (key, expires) = expiring_key();
        let now = expires - Duration::from_secs(60);
        assert_eq!(next_change(&key.cert, now), Some(expires));
        assert_eq!(next_change(&key.cert, expires), None);
    }

    #[test]
    fn a_kept_judgement_ends_when_the_key_expires() {
        let (key, expires) = expiring_key();
        let second = Duration::from_secs(1);
        // Judged, then asked again just before and at the expiry.
        let usable = key.usable(expires - 30 * second).unwrap();
        assert_eq!(usable.keys.len(), 1);
        assert_eq!(key.usable(expires - second), Ok(usable.clone()));
        assert!(
            matches!(key.usable(expires), Err(CannotEncrypt::Expired(_))),
            "{:?}",
            key.usable(expires)
        );
        // A clock set back is judged again, not served the expiry.
        assert_eq!(key.usable(expires - second), Ok(usable));
        // The same answers as judging afresh each time.
        for t in [expires - second, expires, expires + second] {
            assert_eq!(
                key.usable(t).map(|_| ()),
                can_encrypt(&key.cert, t),
                "at the expiry {:?}",
                t.duration_since(expires)
            );
        }
    }

    #[test]
    fn garbage_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.asc");
        std::fs::write(
            &junk,
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n",
        )
        .unwrap();
        assert!(matches!(read_cert(&junk), Err(KeyError::NotAKey { .. })));
        std::fs::write(&junk, b"").unwrap();
        assert!(matches!(read_cert(&junk), Err(KeyError::NotAKey { .. })));
        assert!(matches!(
            read_cert(&dir.path().join("missing.asc")),
            Err(KeyError::Unreadable { .. })
        ));
        let two = dir.path().join("two.asc");
        let mut both = std::fs::read(key("alerts.asc")).unwrap();
        both.extend(std::fs::read(key("journalist.asc")).unwrap());
        std::fs::write(&two, both).unwrap();
        assert!(matches!(
            read_cert(&two),
            Err(KeyError::SeveralKeys { count: 2, .. })
        ));
    }
}
