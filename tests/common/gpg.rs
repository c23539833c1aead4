//! GnuPG: what alert-relay encrypted is checked with it, never with
//! alert-relay's own code.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use alert_relay::spool::Entry;

use super::{find, key_path};

/// A GnuPG home holding the test recipients' secret keys: the tests check
/// what alert-relay encrypted with GnuPG, never with alert-relay's code.
pub struct Gpg {
    home: tempfile::TempDir,
    /// Tests run in parallel threads; one gpg at a time per home keeps
    /// its agent start-up from racing.
    lock: std::sync::Mutex<()>,
}

impl Gpg {
    /// A GnuPG home with the secret keys of `names` imported.
    pub fn with_keys(names: &[&str]) -> Gpg {
        super::prereq::gpg();
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let gpg = Gpg {
            home,
            lock: std::sync::Mutex::new(()),
        };
        for name in names {
            let out = gpg.run(
                &["--import"],
                &std::fs::read(key_path(&format!("{name}.sec.asc"))).unwrap(),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        gpg
    }

    /// A GnuPG home with the secret key in `path` (any OpenPGP key file).
    pub fn with_secret_file(path: &Path) -> Gpg {
        let gpg = Gpg::with_keys(&[]);
        let out = gpg.run(&["--import"], &std::fs::read(path).unwrap());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        gpg
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--quiet",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// Decrypts the armored OpenPGP message inside `message`; panics if
    /// GnuPG cannot.
    pub fn decrypt(&self, message: &[u8]) -> Vec<u8> {
        let out = self.try_decrypt(message);
        assert!(
            out.status.success(),
            "gpg could not decrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn try_decrypt(&self, message: &[u8]) -> Output {
        self.run(&["--decrypt"], armored_block(message))
    }

    /// `gpg --list-packets` of the armored message inside `message`.
    pub fn list_packets(&self, message: &[u8]) -> String {
        let out = self.run(&["--list-packets"], armored_block(message));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// The armored OpenPGP message within a mail message.
pub fn armored_block(message: &[u8]) -> &[u8] {
    let text = message;
    let begin = find(text, b"-----BEGIN PGP MESSAGE-----").expect("no armored OpenPGP message");
    let end = find(text, b"-----END PGP MESSAGE-----").expect("unterminated armor") + 25;
    &text[begin..end]
}

/// The decrypted content of a spooled entry, by GnuPG with the test
/// recipients' secret keys.
pub fn plain(entry: &Entry) -> Vec<u8> {
    static GPG: std::sync::OnceLock<Gpg> = std::sync::OnceLock::new();
    static HOME: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    /// At exit (a static is never dropped): the shared home's agent and
    /// the home itself, with its secret keys, go too.
    extern "C" fn clean_up() {
        if let Some(home) = HOME.get() {
            kill_agent(home);
            let _ = std::fs::remove_dir_all(home);
        }
    }
    GPG.get_or_init(|| {
        let gpg = Gpg::with_keys(&["alerts", "journalist"]);
        let _ = HOME.set(gpg.home.path().to_path_buf());
        // SAFETY: registers a plain function, run once at process exit.
        unsafe { libc::atexit(clean_up) };
        gpg
    })
    .decrypt(&entry.payload)
}

/// Stops the gpg-agent that GnuPG started for `home`: it would otherwise
/// outlive the test, holding the secret keys in memory.
fn kill_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Gpg {
    fn drop(&mut self) {
        kill_agent(self.home.path());
    }
}
