//! What the scenarios share: an install pointed at a relay, an OSSEC-like
//! client that never panics, alerts carrying unique markers, counting
//! what the relay received (decrypted by GnuPG), and the leak watch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crate::common::submit;
use crate::common::{Gpg, RELAY_PASSWORD, Setup, armored_block};

/// Where the scenarios send alerts: a Curve25519 key, so that GnuPG can
/// check thousands of messages in seconds.
pub const RCPT: &str = "journalist@example.org";

/// What one scenario came to.
pub enum Outcome {
    /// Every check held; the figures.
    Pass(Figures),
    /// The figures and the checks that did not hold.
    Fail(Figures, Vec<String>),
    /// Why it could not run on this machine.
    Skip(String),
}

/// One scenario's line of figures, and the checks made on them.
#[derive(Default)]
pub struct Figures {
    items: Vec<(String, String)>,
    failed: Vec<String>,
}

impl Figures {
    pub fn new() -> Figures {
        Figures::default()
    }

    /// Adds `name=value` to the line.
    pub fn set(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Figures {
        self.items.push((name.to_string(), value.to_string()));
        self
    }

    /// Records `what` as failed unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) -> &mut Figures {
        if !ok {
            self.failed.push(what.into());
        }
        self
    }

    pub fn line(&self) -> String {
        self.items
            .iter()
            .map(|(k, v)| {
                if v.contains(' ') {
                    format!("{k}=\"{v}\"")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn done(self) -> Outcome {
        if self.failed.is_empty() {
            Outcome::Pass(self)
        } else {
            let failed = self.failed.clone();
            Outcome::Fail(self, failed)
        }
    }
}

/// The suite's shared state.
pub struct Suite {
    /// Run the long variants.
    pub long: bool,
    /// Unique to this run: every marker starts with it.
    pub nonce: String,
    /// Unique to this run too: every OAuth 2.0 token issued starts with
    /// it (tokend.py's TOKEND_TOKEN_PREFIX), so the leak watch finds
    /// them all.
    pub token_mark: String,
    pub seed: u64,
    pub leaks: Leaks,
}

impl Suite {
    pub fn new(long: bool) -> Suite {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let nonce = format!("FAULTMARK{:x}{:x}", std::process::id(), now.subsec_nanos());
        let token_mark = format!("OAUTHTOK{:x}{:x}", std::process::id(), now.subsec_nanos());
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(now.as_nanos() as u64 | 1);
        Suite {
            long,
            leaks: Leaks::new(&nonce, &token_mark),
            nonce,
            token_mark,
            seed,
        }
    }

    /// The unique marker of try `k` of alert `n` of `scenario`.
    pub fn marker(&self, scenario: &str, n: usize, k: usize) -> String {
        format!("{}-{scenario}-{n}-{k}", self.nonce)
    }

    /// The marker inside a decrypted message, if any.
    pub fn marker_in(&self, plain: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(plain);
        let at = text.find(&self.nonce)?;
        let m: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        Some(m)
    }
}

/// An OSSEC alert as maild writes it, carrying `marker` in the log
/// excerpt, as real alert text would carry a user name or a path.
pub fn alert(to: &str, marker: &str) -> Vec<u8> {
    format!(
        "From: OSSEC HIDS <ossecm@mon.example.org>\r\n\
         To: <{to}>\r\n\
         Subject: OSSEC Notification - mon - Alert level 10\r\n\
         \r\n\
         OSSEC HIDS Notification.\r\n\
         \r\n\
         Received From: mon->/var/log/auth.log\r\n\
         Rule: 5712 fired (level 10) -> \"SSHD brute force trying to get access to the system.\"\r\n\
         Portion of the log(s):\r\n\
         \r\n\
         sshd[4711]: Failed password for invalid user {marker} from 192.0.2.7 port 52022 ssh2\r\n"
    )
    .into_bytes()
}

/// A throwaway install whose daemon listens on a fixed port (it must keep
/// it across restarts) and delivers to the relay on `relay_port`.
pub struct Install {
    pub setup: Setup,
    pub port: u16,
}

impl Install {
    /// `retry` is the `queue.retry` list's inside, e.g. `"1s"`.
    pub fn new(relay_port: u16, relay_extra: &str, retry: &str) -> Install {
        let setup = Setup::new();
        setup.use_relay(relay_port, relay_extra);
        let port = crate::common::free_port();
        let text = std::fs::read_to_string(setup.config_path())
            .unwrap()
            .replace(
                "addresses = [\"127.0.0.1:0\"]",
                &format!("addresses = [\"127.0.0.1:{port}\"]"),
            )
            .replace("retry = [\"1h\"]", &format!("retry = [{retry}]"));
        setup.write_config(&text);
        Install { setup, port }
    }

    /// Runs `relayctl flush`: everything deferred is due now.
    pub fn flush(&self) {
        let out = self.setup.relayctl(&["flush"]);
        assert!(
            out.status.success(),
            "relayctl flush: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Files in spool directory `dir` (any name).
    pub fn files(&self, dir: &str) -> usize {
        self.count(dir, |_| true)
    }

    /// Entries (`*.msg`, whole or not) in spool directory `dir`.
    pub fn entries(&self, dir: &str) -> usize {
        self.count(dir, |p| p.extension().is_some_and(|x| x == "msg"))
    }

    fn count(&self, dir: &str, what: impl Fn(&Path) -> bool) -> usize {
        std::fs::read_dir(self.setup.spool().join(dir))
            .map(|rd| rd.flatten().filter(|e| what(&e.path())).count())
            .unwrap_or(0)
    }

    /// Waits until nothing waits in `incoming/` or `queue/`.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.entries("queue") == 0 && self.entries("incoming") == 0
        })
    }
}

/// The checks of a storm of kills: nothing acked lost, at most one
/// duplicate per kill, every message readable, nothing in `corrupt/` or
/// `failed/`.
pub fn check_kills(f: &mut Figures, tally: &Tally, lost: usize, kills: usize, install: &Install) {
    let duplicates = tally.duplicates();
    let (corrupt, failed) = (install.files("corrupt"), install.files("failed"));
    f.check(lost == 0, format!("{lost} acked alerts never arrived"))
        .check(
            duplicates <= kills,
            format!("{duplicates} duplicates for {kills} kills"),
        )
        .check(tally.unreadable == 0, "a message GnuPG could not read")
        .check(
            corrupt == 0 && failed == 0,
            "entries in corrupt/ or failed/",
        );
}

/// Stops the clients when dropped, even by a panic.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the relay received, by marker, as GnuPG decrypted it.
pub struct Tally {
    pub copies: HashMap<String, usize>,
    /// Messages GnuPG could not decrypt or that carried no marker.
    pub unreadable: usize,
}

impl Tally {
    /// Decrypts every message with the secret keys of `keys`: one gpg
    /// process per thousand messages (--decrypt-files).
    pub fn of(suite: &Suite, keys: &[&str], messages: &[Vec<u8>]) -> Tally {
        let gpg = Gpg::with_keys(keys);
        let dir = tempfile::tempdir().unwrap();
        let mut tally = Tally {
            copies: HashMap::new(),
            unreadable: 0,
        };
        for (chunk_no, chunk) in messages.chunks(1000).enumerate() {
            let mut names = Vec::new();
            for (i, m) in chunk.iter().enumerate() {
                let name = dir.path().join(format!("{chunk_no}-{i}.asc"));
                let has_block = crate::common::find(m, b"-----BEGIN PGP MESSAGE-----").is_some();
                std::fs::write(&name, if has_block { armored_block(m) } else { b"" }).unwrap();
                names.push(name.display().to_string());
            }
            let mut args = vec!["--yes", "--decrypt-files"];
            args.extend(names.iter().map(String::as_str));
            gpg.run(&args, b"");
            for name in &names {
                let plain = std::fs::read(name.trim_end_matches(".asc")).unwrap_or_default();
                match suite.marker_in(&plain) {
                    Some(m) => *tally.copies.entry(m).or_default() += 1,
                    None => tally.unreadable += 1,
                }
            }
        }
        tally
    }

    /// How many of `acked` never arrived.
    pub fn lost(&self, acked: &[String]) -> usize {
        acked
            .iter()
            .filter(|m| !self.copies.contains_key(*m))
            .count()
    }

    /// Copies beyond the first, over all markers.
    pub fn duplicates(&self) -> usize {
        self.copies.values().map(|n| n - 1).sum()
    }
}

/// Looks for alert text (any marker of this run) and the SASL password
/// where neither may be: the spool outside `held/`, the daemon's log,
/// what the relay received, and every process's arguments.
/// What the leak watch calls a token it finds.
const TOKEN: &str = "an OAuth 2.0 token";

pub struct Leaks {
    needles: Vec<(&'static str, Vec<u8>)>,
    found: Mutex<Vec<String>>,
    pub files: AtomicUsize,
    pub bytes: AtomicUsize,
    pub ps_samples: AtomicUsize,
    /// A process planted with a marker in its arguments, to prove the
    /// watch sees what it looks for; and whether it did.
    canary: std::sync::atomic::AtomicU32,
    pub canary_seen: AtomicBool,
}

impl Leaks {
    fn new(nonce: &str, token_mark: &str) -> Leaks {
        Leaks {
            needles: vec![
                ("alert text", nonce.as_bytes().to_vec()),
                ("the SASL password", RELAY_PASSWORD.as_bytes().to_vec()),
                (TOKEN, token_mark.as_bytes().to_vec()),
            ],
            found: Mutex::new(Vec::new()),
            files: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            ps_samples: AtomicUsize::new(0),
            canary: std::sync::atomic::AtomicU32::new(0),
            canary_seen: AtomicBool::new(false),
        }
    }

    pub fn found(&self) -> Vec<String> {
        self.found.lock().unwrap().clone()
    }

    /// Looks for every needle in what `place` holds (`relayctl`'s
    /// output, say).
    pub fn scan(&self, bytes: &[u8], place: &str) {
        self.scan_but(bytes, place, None);
    }

    fn scan_but(&self, bytes: &[u8], place: &str, but: Option<&str>) {
        self.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        for (what, needle) in self.needles.iter().filter(|(w, _)| Some(*w) != but) {
            if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                self.found
                    .lock()
                    .unwrap()
                    .push(format!("{what} in {place}"));
            }
        }
    }

    /// Scans every file under `root`, but `held/` (held mail is
    /// plaintext by design, readable by root only), and the stored
    /// sign-in for anything but tokens (it holds the refresh token by
    /// design, mode 0600).
    pub fn scan_tree(&self, root: &Path) {
        let Ok(rd) = std::fs::read_dir(root) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.file_name().is_some_and(|n| n == "held") {
                continue;
            }
            if path.is_dir() {
                self.scan_tree(&path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                self.files.fetch_add(1, Ordering::Relaxed);
                let but = path.file_name().is_some_and(|n| n == "oauth2.json");
                self.scan_but(&bytes, &path.display().to_string(), but.then_some(TOKEN));
            }
        }
    }

    /// Proves the file scan works: a scratch tree with a marker in
    /// `queue/` and one in `held/`, a token in `queue/` and one in the
    /// stored sign-in must yield exactly the two finds in `queue/`, which
    /// are then forgotten.
    pub fn file_canary(&self, nonce: &str, token_mark: &str) -> bool {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["queue", "held"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("x"), format!("{nonce}-canary")).unwrap();
        }
        for file in ["queue/y", "oauth2.json"] {
            std::fs::write(dir.path().join(file), format!("{token_mark}RT-canary")).unwrap();
        }
        let before = self.found.lock().unwrap().len();
        self.scan_tree(dir.path());
        let mut found = self.found.lock().unwrap();
        let mut canaries: Vec<String> = found.drain(before..).collect();
        canaries.sort();
        canaries.len() == 2
            && canaries[0].starts_with("alert text in ")
            && canaries[0].ends_with("queue/x")
            && canaries[1].starts_with(TOKEN)
            && canaries[1].ends_with("queue/y")
    }

    /// Scans an install (spool and daemon log) and a relay's mailbox.
    pub fn scan_install(&self, install: &Install, relay_dir: Option<&Path>) {
        self.scan_tree(&install.setup.spool());
        let log = install.setup.path("daemon.log");
        if let Ok(bytes) = std::fs::read(&log) {
            self.files.fetch_add(1, Ordering::Relaxed);
            self.scan(&bytes, "the daemon's log");
        }
        if let Some(dir) = relay_dir {
            self.scan_tree(dir);
        }
    }

    /// Reads every process's arguments every 50 ms until `stop`. A
    /// canary process carrying a marker runs for the first second.
    pub fn watch_processes(&self, stop: &AtomicBool, nonce: &str) {
        // Python, which keeps its arguments and forks nothing (a shell's
        // forked child would carry the marker under another pid).
        let mut canary = std::process::Command::new("python3")
            .args([
                "-c",
                "import time; time.sleep(1)",
                &format!("{nonce}-canary"),
            ])
            .spawn()
            .ok();
        if let Some(c) = &canary {
            self.canary.store(c.id(), Ordering::Relaxed);
        }
        while !stop.load(Ordering::Relaxed) {
            if let Ok(rd) = std::fs::read_dir("/proc") {
                for e in rd.flatten() {
                    let name = e.file_name();
                    let Some(pid) = name
                        .to_str()
                        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    else {
                        continue;
                    };
                    if let Ok(args) = std::fs::read(e.path().join("cmdline")) {
                        if pid.parse() == Ok(self.canary.load(Ordering::Relaxed)) {
                            let seen = args.windows(nonce.len()).any(|w| w == nonce.as_bytes());
                            if seen {
                                self.canary_seen.store(true, Ordering::Relaxed);
                            }
                            continue;
                        }
                        let place = format!("the arguments of process {pid}");
                        for (what, needle) in &self.needles {
                            if args.windows(needle.len()).any(|w| w == needle.as_slice()) {
                                self.found
                                    .lock()
                                    .unwrap()
                                    .push(format!("{what} in {place}"));
                            }
                        }
                    }
                }
            }
            self.ps_samples.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(c) = canary.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// xorshift64*: the storm's kill times, reproducible from `seed`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo)
    }
}

/// Process `pid`'s resident set now and at its peak, in KiB, and its
/// thread count.
pub fn rss_kib(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"), field("Threads:"))
}
