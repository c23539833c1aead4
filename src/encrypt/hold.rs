//! The spool's hold key: what keeps held originals encrypted at rest.
//!
//! An alert whose recipient's key cannot encrypt is kept until an admin
//! fixes the key and runs `relayctl release`. It must be kept whole, and
//! it must not rest in plaintext: `sendmail` writes it into `incoming/`,
//! where anything with the spool's group could read a plaintext file, and
//! then it waits in `held/`. So it is encrypted to a key of the spool's
//! own, made by the daemon at its first start: `hold.pub` (0644; the spool
//! root lets only the daemon and the submit group in) is what `sendmail`
//! and the daemon encrypt to, `hold.key` (0600, the daemon's user) is what
//! `relayctl release` decrypts with, as that user or root.
//!
//! This protects held alerts from the submit group and from anyone who
//! can read the spool's files but not `hold.key`; it does not protect them
//! from root, or from a copy of the whole disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::parse::Parse;
use openpgp::serialize::Serialize;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use openpgp::types::{Features, KeyFlags};
use openpgp::{Cert, KeyHandle};

use super::keys::encryption_keys;

/// The secret hold key, in the spool root.
pub const SECRET_FILE: &str = "hold.key";
/// Its public half, in the spool root.
pub const PUBLIC_FILE: &str = "hold.pub";

/// The public hold key: what held originals are encrypted to.
#[derive(Debug, Clone)]
pub struct HoldKey {
    cert: Arc<Cert>,
}

impl HoldKey {
    /// The hold key of the spool at `root`, if the daemon has made one.
    pub fn load(root: &Path) -> Result<Option<HoldKey>, String> {
        let path = root.join(PUBLIC_FILE);
        match fs::read(&path) {
            Ok(bytes) => Cert::from_bytes(&bytes)
                .map(|cert| {
                    Some(HoldKey {
                        cert: Arc::new(cert.strip_secret_key_material()),
                    })
                })
                .map_err(|e| format!("{} is not an OpenPGP key: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The daemon's hold key, made at its first start: the secret key
    /// (0600) and then the public one (0644) are written durably into the
    /// spool root, each through a temporary file in `tmp/`.
    pub fn ensure(root: &Path) -> Result<HoldKey, String> {
        let secret_path = root.join(SECRET_FILE);
        let cert = match fs::read(&secret_path) {
            Ok(bytes) => Cert::from_bytes(&bytes)
                .map_err(|e| format!("{} is not an OpenPGP key: {e}", secret_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // SEIPDv1 only, so that GnuPG 2.2 can open a held alert
                // with this key too, should an admin ever need to.
                let (cert, _revocation) = CertBuilder::new()
                    .set_features(Features::empty().set_seipdv1())
                    .map_err(|e| e.to_string())?
                    .set_cipher_suite(CipherSuite::Cv25519)
                    .add_userid("alert-relay hold key")
                    .add_subkey(
                        KeyFlags::empty()
                            .set_storage_encryption()
                            .set_transport_encryption(),
                        None,
                        None,
                    )
                    .generate()
                    .map_err(|e| format!("cannot make the hold key: {e}"))?;
                let mut tsk = Vec::new();
                cert.as_tsk()
                    .serialize(&mut tsk)
                    .map_err(|e| e.to_string())?;
                write_durably(root, SECRET_FILE, &tsk, 0o600)?;
                tracing::info!(
                    fingerprint = %cert.fingerprint(),
                    "made the spool's hold key: held alerts are encrypted to it"
                );
                cert
            }
            Err(e) => return Err(format!("cannot read {}: {e}", secret_path.display())),
        };
        let public = cert.strip_secret_key_material();
        let mut bytes = Vec::new();
        public.serialize(&mut bytes).map_err(|e| e.to_string())?;
        if fs::read(root.join(PUBLIC_FILE)).ok().as_deref() != Some(&bytes[..]) {
            write_durably(root, PUBLIC_FILE, &bytes, 0o644)?;
        }
        Ok(HoldKey {
            cert: Arc::new(public),
        })
    }

    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    /// `original` encrypted to the hold key, armored.
    pub fn seal(&self, original: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |e: openpgp::anyhow::Error| format!("cannot encrypt to the hold key: {e}");
        let recipients: Vec<_> = encryption_keys(&self.cert, SystemTime::now()).collect();
        if recipients.is_empty() {
            return Err("the hold key has no encryption subkey".into());
        }
        let mut sink = Vec::with_capacity(original.len() * 2 + 1024);
        {
            let message = Armorer::new(Message::new(&mut sink))
                .build()
                .map_err(failed)?;
            let message = Encryptor::for_recipients(message, recipients)
                .build()
                .map_err(failed)?;
            let mut writer = LiteralWriter::new(message).build().map_err(failed)?;
            writer
                .write_all(original)
                .map_err(|e| format!("cannot encrypt to the hold key: {e}"))?;
            writer.finalize().map_err(failed)?;
        }
        Ok(sink)
    }

    /// Checks an untrusted held original (from `incoming/`): it must be an
    /// OpenPGP message encrypted to the hold key alone. Returns it armored
    /// anew.
    pub fn check(&self, armored: &[u8]) -> Result<Vec<u8>, String> {
        super::sealed::canonical_armor(armored, &|handle: &KeyHandle| {
            self.cert
                .keys()
                .any(|ka| handle.aliases(ka.key().key_handle()))
        })
        .map_err(|e| format!("the held original is not encrypted to the hold key: {e}"))
    }
}

/// Decrypts a held original with the spool's secret hold key (`relayctl
/// release`, as the daemon's user or root).
pub fn open(root: &Path, armored: &[u8]) -> Result<Vec<u8>, String> {
    let path = root.join(SECRET_FILE);
    let bytes = fs::read(&path).map_err(|e| {
        format!(
            "cannot read the hold key {}: {e} (run as root or the daemon's user)",
            path.display()
        )
    })?;
    let secret = Cert::from_bytes(&bytes)
        .map_err(|e| format!("{} is not an OpenPGP key: {e}", path.display()))?;
    super::open::decrypt(&secret, armored)
        .map_err(|e| format!("the held original: {e} (the hold key of another spool?)"))
}

/// Writes `bytes` to `root/name` with `mode`: a temporary file in
/// `root/tmp`, fsynced, renamed into place, the root fsynced.
fn write_durably(root: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp: PathBuf = root.join("tmp").join(format!(".{name}.tmp"));
    let dest = root.join(name);
    let err = |e: std::io::Error| format!("cannot write {}: {e}", dest.display());
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    fs::rename(&tmp, &dest).map_err(err)?;
    File::open(root).and_then(|d| d.sync_all()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_original_round_trips_through_the_hold_key_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        assert!(HoldKey::load(dir.path()).unwrap().is_none());
        let key = HoldKey::ensure(dir.path()).unwrap();
        let mode = |n: &str| {
            fs::metadata(dir.path().join(n))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(SECRET_FILE), 0o600);
        assert_eq!(mode(PUBLIC_FILE), 0o644);
        // The same key at the next start; the public file holds no secret.
        let again = HoldKey::ensure(dir.path()).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
        let public = HoldKey::load(dir.path()).unwrap().unwrap();
        assert_eq!(public.fingerprint(), key.fingerprint());
        let pub_bytes = fs::read(dir.path().join(PUBLIC_FILE)).unwrap();
        assert!(!Cert::from_bytes(&pub_bytes).unwrap().is_tsk());

        let original = b"Subject: held\n\nMARKER-HELD the alert\n";
        let sealed = public.seal(original).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"MARKER-HELD"));
        let checked = key.check(&sealed).unwrap();
        assert_eq!(open(dir.path(), &checked).unwrap(), original);

        // Encrypted to another spool's hold key: refused, and not opened.
        let other = tempfile::tempdir().unwrap();
        fs::create_dir(other.path().join("tmp")).unwrap();
        let foreign = HoldKey::ensure(other.path())
            .unwrap()
            .seal(original)
            .unwrap();
        assert!(key.check(&foreign).unwrap_err().contains("another key"));
        assert!(open(dir.path(), &foreign).is_err());
        assert!(
            key.check(original).is_err(),
            "plaintext is not a held original"
        );
    }
}
