//! Test harness: the real binaries in a temporary install, and the peers
//! they talk to, one file each: `daemon` (the install and alert-relayd),
//! `relay` (aiosmtpd), `gpg` (GnuPG, to check what was encrypted), `smtp`
//! (SMTP clients), `users` (local accounts, as root), `disk` (a small
//! file system for the spool, as root).
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub mod daemon;
pub mod disk;
pub mod gpg;
pub mod prereq;
pub mod relay;
pub mod smtp;
pub mod tokend;
pub mod users;

pub use daemon::{DAEMON, Daemon, RELAYCTL, SENDMAIL, Setup};
pub use gpg::{Gpg, armored_block, plain};
pub use relay::{
    RELAY_PASSWORD, RELAY_USER, Relay, openssl_fingerprint, openssl_spki_pin, short_lived_cert,
};
pub use smtp::{Client, code, python, smtplib_send, submit};
pub use tokend::TokenServer;

/// The test keys made by tests/keys/generate.sh.
pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

#[path = "../keys/fingerprints.rs"]
mod test_keys;
pub use test_keys::fingerprint;

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

/// Whether `haystack` contains `needle`, comparing with LF line endings.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(&lf(haystack), &lf(needle)).is_some()
}

/// A finished command's exit code (-1 when killed by a signal) and its
/// stdout and stderr as one text.
pub fn code_and_text(out: &std::process::Output) -> (i32, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
