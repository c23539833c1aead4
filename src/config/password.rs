//! Where the relay's SASL password comes from, and reading it.
//!
//! One function decides the file for the daemon, `relayctl check` and
//! `relayctl test`, so that they can never disagree: a check that passes
//! while the daemon later finds no password would be a false ✓.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The file `alert-relay.service` loads as the credential `sasl_password`
/// (`LoadCredential=sasl_password:...`). A process outside the unit has no
/// `$CREDENTIALS_DIRECTORY`, and reads the credential's source instead:
/// `relayctl` run by an admin, or the daemon started by hand.
pub const CREDENTIAL_SOURCE: &str = "/etc/alert-relay/sasl_password";
/// The credential's name in `$CREDENTIALS_DIRECTORY`.
const CREDENTIAL: &str = "sasl_password";
/// A password file larger than this is not a password.
const MAX_BYTES: u64 = 64 << 10;

/// Where the SASL password is read from, at each login; it is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `relay.password_file`.
    File(PathBuf),
    /// systemd's credential `sasl_password`.
    Credential,
}

impl PasswordSource {
    /// The file to read, for this process's environment.
    pub fn path(&self) -> PathBuf {
        self.path_in(std::env::var_os("CREDENTIALS_DIRECTORY"))
    }

    /// The file to read when `$CREDENTIALS_DIRECTORY` is `credentials`.
    fn path_in(&self, credentials: Option<OsString>) -> PathBuf {
        match (self, credentials) {
            (PasswordSource::File(p), _) => p.clone(),
            (PasswordSource::Credential, Some(dir)) => Path::new(&dir).join(CREDENTIAL),
            (PasswordSource::Credential, None) => PathBuf::from(CREDENTIAL_SOURCE),
        }
    }

    /// Where the password comes from, in words, for `relayctl test`.
    pub fn describe(&self) -> String {
        let path = self.path();
        match self {
            PasswordSource::File(_) => format!("{} (relay.password_file)", path.display()),
            PasswordSource::Credential => {
                format!("{} (the systemd credential {CREDENTIAL})", path.display())
            }
        }
    }

    /// Reads the password: one line, from a regular file that only its
    /// owner can read. The mode is checked at every read, so a file made
    /// readable to others while the daemon runs is refused too.
    pub fn read(&self) -> Result<Zeroizing<String>, String> {
        let path = self.path();
        let text = read_private(&path).map_err(|e| match self {
            PasswordSource::File(_) => e,
            PasswordSource::Credential => format!(
                "{e}; relay.username is set without relay.password_file, so the password is \
                 the systemd credential {CREDENTIAL}, which alert-relay.service loads from \
                 {CREDENTIAL_SOURCE}: put it there (chmod 600), or set relay.password_file"
            ),
        })?;
        // One line; a trailing newline from `echo pw > file` is not part of it.
        let password = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string());
        if password.is_empty() {
            return Err(format!(
                "{} is empty: put the relay's password in it",
                path.display()
            ));
        }
        Ok(password)
    }
}

/// Reads a secret file, refusing one that group or others can read.
fn read_private(path: &Path) -> Result<Zeroizing<String>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:04o}), so it is not used; \
             run chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_read_where_systemd_put_it_or_from_the_units_source() {
        let file = PasswordSource::File(PathBuf::from("/etc/x"));
        assert_eq!(file.path_in(Some("/run/creds".into())), Path::new("/etc/x"));
        let cred = PasswordSource::Credential;
        assert_eq!(
            cred.path_in(Some("/run/credentials/alert-relay.service".into())),
            Path::new("/run/credentials/alert-relay.service/sasl_password")
        );
        assert_eq!(cred.path_in(None), Path::new(CREDENTIAL_SOURCE));
    }

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("pw");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn a_password_is_one_line_of_a_private_non_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "s3cret\n", 0o600);
        assert_eq!(&*PasswordSource::File(path).read().unwrap(), "s3cret");

        let open = write(dir.path(), "s3cret\n", 0o640);
        let e = PasswordSource::File(open).read().unwrap_err();
        assert!(e.contains("mode 0640") && e.contains("chmod 600"), "{e}");
        assert!(
            !e.contains("s3cret"),
            "the password must never be printed: {e}"
        );

        let empty = write(dir.path(), "\n", 0o600);
        let e = PasswordSource::File(empty).read().unwrap_err();
        assert!(e.contains("is empty"), "{e}");

        let e = PasswordSource::File(dir.path().join("missing"))
            .read()
            .unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        let e = PasswordSource::File(dir.path().to_path_buf())
            .read()
            .unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
