//! The relay the delivery tests talk to: aiosmtpd (tests/relay/smtpd.py),
//! a server this project did not write, with TLS and AUTH.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        super::prereq::aiosmtpd();
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
        let (child, port) = spawn_ready(&mut cmd, "python3 with aiosmtpd (pip install aiosmtpd)");
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

/// Starts a test server that prints "READY <port>" once listening and
/// runs until its stdin closes; returns it and the port.
pub fn spawn_ready(cmd: &mut Command, what: &str) -> (Child, u16) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("{what} did not start: {line:?}"))
        .parse()
        .unwrap();
    (child, port)
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
    super::prereq::openssl();
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
    super::prereq::openssl();
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

/// A self-signed certificate for localhost valid `days` more days, made
/// with openssl in `dir` (its key beside it, as short.key).
pub fn short_lived_cert(dir: &Path, days: u32) -> std::path::PathBuf {
    super::prereq::openssl();
    let cert = dir.join("short.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            &days.to_string(),
            "-keyout",
        ])
        .arg(dir.join("short.key"))
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    cert
}
