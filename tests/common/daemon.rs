//! A throwaway install (config, spool) and the real `alert-relayd`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alert_relay::spool::Entry;

use super::smtp::Client;
use super::{RELAY_PASSWORD, fingerprint, key_path};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_alert-relayd");
pub const SENDMAIL: &str = env!("CARGO_BIN_EXE_sendmail");
pub const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");

/// A throwaway installation: its own directory, config and spool.
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// Extra lines for the [listen] section.
    pub listen: String,
    /// The [relay] section's lines but `sender`. By default a closed port
    /// on loopback: delivery fails at once, and mail stays queued.
    pub relay: std::cell::RefCell<String>,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with_listen("")
    }

    pub fn with_listen(extra: &str) -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
            listen: extra.to_string(),
            relay: std::cell::RefCell::new("host = \"127.0.0.1\"\nport = 1".to_string()),
        };
        setup.write_config(&setup.config_text(""));
        setup
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("relay.toml")
    }

    pub fn spool(&self) -> PathBuf {
        self.path("spool")
    }

    /// The standard config, with `extra` appended.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            r#"[listen]
addresses = ["127.0.0.1:0"]
hostname = "mon.example.org"
{listen}

[queue]
dir = "{spool}"

[relay]
{relay}
sender = "OSSEC HIDS <ossec@example.net>"

[[recipients]]
address = "alerts@example.org"
key = "{alerts_key}"
fingerprint = "{alerts_fpr}"

[[recipients]]
address = "journalist@example.org"
key = "{journalist_key}"
fingerprint = "{journalist_fpr}"

[aliases]
root = "alerts@example.org"
ossec = ["alerts@example.org", "journalist@example.org"]
{extra}
"#,
            listen = self.listen,
            relay = self.relay.borrow(),
            spool = self.spool().display(),
            alerts_key = key_path("alerts.asc").display(),
            alerts_fpr = fingerprint("alerts"),
            journalist_key = key_path("journalist.asc").display(),
            journalist_fpr = fingerprint("journalist"),
        )
    }

    /// The standard config (plus `extra`), with the key of `recipient`
    /// ("alerts" or "journalist") replaced by the test key `name`.
    pub fn config_with_key(&self, recipient: &str, name: &str, extra: &str) -> String {
        self.config_text(extra)
            .replacen(
                &format!("tests/keys/{recipient}.asc"),
                &format!("tests/keys/{name}.asc"),
                1,
            )
            .replacen(&fingerprint(recipient), &fingerprint(name), 1)
    }

    /// Points this setup at a relay on 127.0.0.1:`port` with TLS checked
    /// against certs/ca.pem (unless `extra` sets pins) and AUTH with the
    /// test relay's login; `extra` adds [relay] lines. Retries wait an
    /// hour, so a deferred message waits for the test's flush.
    pub fn use_relay(&self, port: u16, extra: &str) {
        let pw = self.path("sasl_password");
        std::fs::write(&pw, format!("{RELAY_PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
        let ca_line = if extra.contains("fingerprints") {
            String::new()
        } else {
            format!("ca_file = \"{}\"\n", ca.display())
        };
        *self.relay.borrow_mut() = format!(
            "host = \"127.0.0.1\"\nport = {port}\n{ca_line}username = \"ossec\"\ndomain = \"example.net\"\n\
             password_file = \"{}\"\ntimeout = \"5s\"\n{extra}",
            pw.display()
        );
        self.write_config(&self.config_text("").replacen(
            "[queue]\n",
            "[queue]\nretry = [\"1h\"]\n",
            1,
        ));
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn start(&self) -> Daemon {
        Daemon::start(&self.config_path(), &self.path("daemon.log"))
    }

    /// Runs `sendmail` (or a link to it named `program`) with `stdin`.
    pub fn sendmail_as(&self, program: &str, args: &[&str], stdin: &[u8]) -> Output {
        let exe = if program == "sendmail" {
            PathBuf::from(SENDMAIL)
        } else {
            let link = self.path(program);
            if !link.exists() {
                std::os::unix::fs::symlink(SENDMAIL, &link).unwrap();
            }
            link
        };
        let mut child = Command::new(exe)
            .args(args)
            .env("ALERT_RELAY_CONFIG", self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // sendmail may exit (bad config, bad flags) before reading its input.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }

    pub fn sendmail(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.sendmail_as("sendmail", args, stdin)
    }

    pub fn relayctl(&self, args: &[&str]) -> Output {
        Command::new(RELAYCTL)
            .args(args)
            .env("ALERT_RELAY_CONFIG", self.config_path())
            .output()
            .unwrap()
    }

    /// The entries in one spool directory (`queue`, `incoming`, ...).
    pub fn entries(&self, dir: &str) -> Vec<Entry> {
        let Ok(rd) = std::fs::read_dir(self.spool().join(dir)) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "msg"))
            .map(|p| Entry::decode(&std::fs::read(&p).unwrap()).unwrap())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Waits until `queue/` is empty; false if it never gets there.
    pub fn wait_queue_empty(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.queued().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn queued(&self) -> Vec<Entry> {
        self.entries("queue")
    }

    /// Waits until `queue/` holds `n` entries.
    pub fn wait_queued(&self, n: usize) -> Vec<Entry> {
        self.wait_entries("queue", n)
    }

    /// Waits until spool directory `dir` holds `n` entries.
    pub fn wait_entries(&self, dir: &str, n: usize) -> Vec<Entry> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let q = self.entries(dir);
            if q.len() >= n || Instant::now() > deadline {
                return q;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `alert-relayd`, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, log: &Path) -> Daemon {
        let mut cmd = Command::new(DAEMON);
        cmd.arg("--config").arg(config);
        Daemon::start_command(cmd, log)
    }

    /// Starts `cmd` (alert-relayd, or a wrapper that execs it) with its
    /// stderr appended to `log`, and waits until it listens.
    pub fn start_command(mut cmd: Command, log: &Path) -> Daemon {
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let skip = std::fs::read_to_string(log).unwrap_or_default().len();
        let child = cmd.stderr(logfile).spawn().unwrap();
        let mut daemon = Daemon {
            child,
            port: 0,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let fresh = &text[skip.min(text.len())..];
            if let Some(port) = fresh
                .lines()
                .find_map(|l| l.split("listening addr=127.0.0.1:").nth(1))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                && fresh.contains("started")
            {
                daemon.port = port;
                return daemon;
            }
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("alert-relayd exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "alert-relayd did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to exit; panics after 30 s.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "alert-relayd did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
