//! What the tests need beyond a Rust toolchain. A test that meets a
//! missing one stops the whole test binary with one line naming it and
//! what installs it, instead of failing every test far below the cause.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Checks once per test binary that `program args...` runs and exits 0;
/// else prints why and exits.
fn need(what: &str, program: &str, args: &[&str], install: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen
        .get_or_insert_with(HashSet::new)
        .insert(what.to_string())
    {
        return;
    }
    let ok = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        // Straight to the descriptor: the test harness captures
        // eprintln!, and the exit below would throw the capture away.
        let _ = writeln!(
            std::io::stderr(),
            "\nmissing test prerequisite: {what}. Run ./test.sh, which installs what the tests \
             need, or: {install}\n"
        );
        std::process::exit(2);
    }
}

pub fn python3() {
    need(
        "python3",
        "python3",
        &["-c", "pass"],
        "apt-get install python3",
    );
}

/// aiosmtpd, the relay the delivery tests talk to.
pub fn aiosmtpd() {
    python3();
    need(
        "aiosmtpd (python3 -c 'import aiosmtpd' fails)",
        "python3",
        &["-c", "import aiosmtpd"],
        "python3 -m pip install aiosmtpd",
    );
}

/// prometheus_client, whose parser reads `relayctl health --prometheus`.
pub fn prometheus_client() {
    python3();
    need(
        "prometheus_client (python3 -c 'import prometheus_client' fails)",
        "python3",
        &["-c", "import prometheus_client"],
        "python3 -m pip install prometheus_client",
    );
}

/// GnuPG, which checks what was encrypted.
pub fn gpg() {
    need(
        "gpg (GnuPG)",
        "gpg",
        &["--version"],
        "apt-get install gnupg",
    );
}

pub fn openssl() {
    need(
        "openssl",
        "openssl",
        &["version"],
        "apt-get install openssl",
    );
}

/// systemd-analyze, which checks the units.
pub fn systemd_analyze() {
    need(
        "systemd-analyze",
        "systemd-analyze",
        &["--version"],
        "apt-get install systemd",
    );
}
