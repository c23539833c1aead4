//! The stored sign-in: the refresh token, in `oauth2.json` in the spool,
//! owned by the spool's owner (the daemon's user), mode 0600, never in
//! relay.toml. Written atomically (a new file, fsync, rename, the
//! directory fsynced), so that a crash leaves the old token or the new
//! one, never neither: with providers that rotate refresh tokens, the
//! one written last may be the only one still valid.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The file in the spool root.
pub const FILE: &str = "oauth2.json";
/// Larger is not a sign-in.
const MAX_BYTES: u64 = 64 << 10;

/// What is stored.
#[derive(Serialize, Deserialize)]
pub struct Stored {
    pub refresh_token: Zeroizing<String>,
    /// Whose: a token is only used with the endpoint and client it came
    /// from (a refresh at another Microsoft tenant fails, AADSTS7000012).
    pub token_endpoint: String,
    pub client_id: String,
    /// When `relayctl oauth2 login` stored it (seconds).
    pub signed_in: u64,
    /// When the endpoint last rotated it, if it did.
    #[serde(default)]
    pub rotated: Option<u64>,
    /// The account that signed in, when the endpoint said (an ID token
    /// came with the grant: the scope has `openid`).
    #[serde(default)]
    pub account: Option<String>,
}

impl Stored {
    pub fn new(
        refresh_token: Zeroizing<String>,
        token_endpoint: &str,
        client_id: &str,
        account: Option<String>,
        now: SystemTime,
    ) -> Stored {
        Stored {
            refresh_token,
            token_endpoint: token_endpoint.to_string(),
            client_id: client_id.to_string(),
            signed_in: crate::health::secs(now),
            rotated: None,
            account,
        }
    }

    /// The same sign-in with the endpoint's new refresh token.
    pub fn rotated(&self, refresh_token: Zeroizing<String>) -> Stored {
        Stored {
            refresh_token,
            token_endpoint: self.token_endpoint.clone(),
            client_id: self.client_id.clone(),
            signed_in: self.signed_in,
            rotated: Some(crate::health::secs(SystemTime::now())),
            account: self.account.clone(),
        }
    }
}

/// Where the sign-in is stored.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn in_spool(spool: &Path) -> Store {
        Store {
            path: spool.join(FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the sign-in; refuses a file that group or others can read,
    /// or that is not a regular file.
    pub fn read(&self) -> Result<Stored, String> {
        let file = crate::os::open_nofollow(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no sign-in is stored".to_string(),
            _ => format!("cannot read it: {e}"),
        })?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err(format!("{} is not a regular file", self.path.display()));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} is readable by group or others (mode {:04o}), so it is not used; run chmod \
                 600 {}",
                self.path.display(),
                meta.permissions().mode() & 0o777,
                self.path.display()
            ));
        }
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_BYTES)
            .read_to_end(&mut text)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&text)
            .map_err(|_| format!("{} is damaged: sign in again", self.path.display()))
    }

    /// Whether this process can write the sign-in, tried before a login
    /// that would otherwise be wasted.
    pub fn check_writable(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let probe = dir.join(format!("{FILE}.{}.probe", std::process::id()));
        let _ = std::fs::remove_file(&probe);
        crate::os::create_nofollow(&probe, 0o600)
            .map(|_| {
                let _ = std::fs::remove_file(&probe);
            })
            .map_err(|e| {
                format!(
                    "cannot write in {} ({e}): run relayctl oauth2 login as root (the package's \
                     spool; or start alert-relayd once to make it)",
                    dir.display()
                )
            })
    }

    /// Replaces the sign-in atomically. The file belongs to the owner of
    /// the directory it is in (the daemon's user), whoever writes it.
    pub fn write(&self, stored: &Stored) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let owner = std::fs::metadata(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "the spool {} does not exist yet: install the package (or start alert-relayd \
                 once), then sign in",
                dir.display()
            ),
            _ => format!("{}: {e}", dir.display()),
        })?;
        let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
        let result = (|| {
            let mut file = crate::os::create_nofollow(&tmp, 0o600).map_err(err)?;
            if crate::os::is_root() {
                std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))
                    .map_err(err)?;
            }
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
            let json = Zeroizing::new(serde_json::to_vec(stored).map_err(|e| e.to_string())?);
            file.write_all(&json)
                .and_then(|()| file.sync_all())
                .map_err(err)?;
            std::fs::rename(&tmp, &self.path).map_err(err)?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("{}: {e}", dir.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        remove_stale_temporaries(dir);
        result
    }
}

/// Removes what a writer killed mid-write left (`oauth2.json.PID.tmp`,
/// which holds a refresh token), once that writer is gone.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&format!("{FILE}.")))
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !crate::os::process_exists(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_is_written_private_and_read_back_and_an_open_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_spool(dir.path());
        assert_eq!(store.read().err().unwrap(), "no sign-in is stored");
        let s = Stored::new(
            Zeroizing::new("RT-1".into()),
            "https://idp/token",
            "app",
            Some("alerts@example.org".into()),
            SystemTime::now(),
        );
        store.write(&s).unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store
            .write(&s.rotated(Zeroizing::new("RT-2".into())))
            .unwrap();
        let back = store.read().unwrap();
        assert_eq!(&*back.refresh_token, "RT-2");
        assert!(back.rotated.is_some());
        assert_eq!(back.account.as_deref(), Some("alerts@example.org"));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );

        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(store.read().err().unwrap().contains("chmod 600"));
        std::fs::write(store.path(), b"{").unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(store.read().err().unwrap().contains("damaged"));
    }
}
