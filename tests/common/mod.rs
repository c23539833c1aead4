//! Test harness: a temporary install (config, spool) and the real binaries.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use alert_relay::spool::Entry;

pub mod users;

pub const DAEMON: &str = env!("CARGO_BIN_EXE_alert-relayd");
pub const SENDMAIL: &str = env!("CARGO_BIN_EXE_sendmail");
pub const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");

/// The test keys made by tests/keys/generate.sh.
pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// A test key's fingerprint, from tests/keys/fingerprints.txt.
pub fn fingerprint(name: &str) -> String {
    let list = std::fs::read_to_string(key_path("fingerprints.txt")).unwrap();
    list.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no test key {name}"))
        .to_string()
}

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

/// A raw SMTP client that reads each reply with a single `recv`, as
/// OSSEC's maild does.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client { stream }
    }

    /// One `recv`: whatever the server sent in one go.
    pub fn recv(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command and returns the reply code of the one reply read.
    pub fn cmd(&mut self, line: &str) -> u16 {
        self.send(format!("{line}\r\n").as_bytes());
        code(&self.recv())
    }

    /// Sends one message to `rcpt` (OSSEC's way: one reply read per
    /// command) and returns the reply to the data.
    pub fn send_message(&mut self, rcpt: &str, data: &[u8]) -> String {
        let banner = self.recv();
        assert_eq!(code(&banner), 220, "{banner}");
        for (line, want) in [
            ("HELO t".to_string(), 250),
            ("MAIL FROM:<ossecm@mon>".to_string(), 250),
            (format!("RCPT TO:<{rcpt}>"), 250),
            ("DATA".to_string(), 354),
        ] {
            assert_eq!(self.cmd(&line), want, "{line}");
        }
        self.send(data);
        self.send(b".\r\n");
        self.recv()
    }

    /// Reads until the server closes; returns all it sent.
    pub fn read_to_close(&mut self) -> String {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The code of a reply; panics unless it is one complete reply.
pub fn code(reply: &str) -> u16 {
    assert!(reply.ends_with("\r\n"), "incomplete reply {reply:?}");
    let last = reply.trim_end().lines().last().unwrap();
    assert_eq!(last.as_bytes().get(3), Some(&b' '), "bad reply {reply:?}");
    last[..3].parse().unwrap()
}

/// Submits one message over SMTP with Python's smtplib, a client this
/// project did not write. Returns smtplib's outcome line.
pub fn smtplib_send(port: u16, from: &str, to: &[&str], message: &[u8]) -> String {
    let script = r#"
import smtplib, sys
port, sender, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
msg = sys.stdin.buffer.read()
try:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        refused = s.sendmail(sender, rcpts, msg)
        print("ok", sorted(refused))
except smtplib.SMTPRecipientsRefused as e:
    print("refused", sorted(e.recipients))
except smtplib.SMTPResponseException as e:
    print("error", e.smtp_code, e.smtp_error.decode())
"#;
    python(script, &[&port.to_string(), from, &to.join(",")], message)
}

/// Runs a Python `script` with `args`, `stdin` on its standard input;
/// returns what it printed, trimmed.
pub fn python(script: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A loopback port below the kernel's ephemeral range that nothing holds
/// now, for a peer that binds it later (a relay that comes up, a daemon
/// restarted on its port). A port from the ephemeral range could meanwhile
/// be given to an outgoing connection: that made a relay's bind fail in CI.
/// Ports are handed out once per process, from a start that depends on
/// the pid, so parallel tests and test binaries do not collide.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let low: usize = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (first, span) = (10_000, low.saturating_sub(10_000).max(1));
    let start = std::process::id() as usize * 7919;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free loopback port below {low}");
        let port = (first + (start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

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

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `bytes` with CRLF line endings turned into LF, for comparing texts.
pub fn lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(b);
    }
    out
}

/// The decrypted content of a spooled entry, by GnuPG with the test
/// recipients' secret keys.
pub fn plain(entry: &Entry) -> Vec<u8> {
    static GPG: std::sync::OnceLock<Gpg> = std::sync::OnceLock::new();
    GPG.get_or_init(|| Gpg::with_keys(&["alerts", "journalist"]))
        .decrypt(&entry.payload)
}

/// Whether `haystack` contains `needle`, comparing with LF line endings.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(&lf(haystack), &lf(needle)).is_some()
}

/// A real SMTP relay (aiosmtpd, tests/relay/smtpd.py) on 127.0.0.1 with
/// TLS and AUTH, stopped when dropped.
pub struct Relay {
    child: Child,
    pub port: u16,
    pub outdir: tempfile::TempDir,
}

pub const RELAY_USER: &str = "ossec@example.net";
pub const RELAY_PASSWORD: &str = "correct horse battery staple";

impl Relay {
    /// `args` are smtpd.py's options, e.g. `["--cert", "relay2.pem"]`
    /// (certificate names are looked up in certs/).
    pub fn start(args: &[&str]) -> Relay {
        Relay::start_on(0, args)
    }

    pub fn start_on(port: u16, args: &[&str]) -> Relay {
        Relay::start_in(&[], port, args)
    }

    /// Starts the relay under `wrapper` (e.g. `ip netns exec NS`).
    pub fn start_in(wrapper: &[&str], port: u16, args: &[&str]) -> Relay {
        let outdir = tempfile::tempdir().unwrap();
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg("python3");
                c
            }
            None => Command::new("python3"),
        };
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay/smtpd.py"))
            .arg("--outdir")
            .arg(outdir.path())
            .arg("--port")
            .arg(port.to_string());
        let mut has_cert = false;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if *a == "--cert" {
                let name = it.next().unwrap();
                let key = name
                    .replace(".pem", ".key")
                    .replace("relay-renewed.key", "relay.key");
                cmd.arg("--cert")
                    .arg(certs.join(name))
                    .arg("--key")
                    .arg(certs.join(key));
                has_cert = true;
            } else {
                cmd.arg(a);
            }
        }
        if !has_cert {
            cmd.arg("--cert")
                .arg(certs.join("relay.pem"))
                .arg("--key")
                .arg(certs.join("relay.key"));
        }
        // The private keys are committed without their 0600 mode.
        for k in ["relay.key", "relay2.key", "selfsigned.key", "ca.key"] {
            let _ = std::fs::set_permissions(
                certs.join(k),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            );
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("the test relay did not start: {line:?}"))
            .parse()
            .unwrap();
        Relay {
            child,
            port,
            outdir,
        }
    }

    /// The messages the relay accepted, in order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut n = 1;
        let mut out = Vec::new();
        while let Ok(m) = std::fs::read(self.outdir.path().join(format!("{n}.eml"))) {
            out.push(m);
            n += 1;
        }
        out
    }

    /// Waits for `n` messages.
    pub fn wait_messages(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The session events, one JSON object per line.
    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.outdir.path().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn count(&self, event: &str) -> usize {
        let needle = format!("\"event\": \"{event}\"");
        self.events().iter().filter(|e| e.contains(&needle)).count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl x509 -fingerprint` of a certificate in certs/, as the admin
/// would compute it: ("SHA1", "AB:CD:...").
pub fn openssl_fingerprint(cert: &str, digest: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(cert);
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-fingerprint",
            &format!("-{digest}"),
            "-in",
        ])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().split_once('=').unwrap().1.to_string()
}

/// The SPKI pin of a certificate in certs/, computed with openssl.
pub fn openssl_spki_pin(cert: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(cert);
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        path.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    format!(
        "sha256-spki:{}",
        String::from_utf8(out.stdout).unwrap().trim()
    )
}
