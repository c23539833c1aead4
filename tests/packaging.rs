//! The systemd units in packaging/systemd/, checked with systemd's own
//! tools (installed by .ci/run): they verify cleanly, the service's
//! sandbox rates 1.5 or better, and its stop timeout covers the daemon's
//! SIGTERM grace.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn units() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd")
}

fn systemd_analyze(args: &[&str], dir: &Path) -> (bool, String) {
    common::prereq::systemd_analyze();
    let out = Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("systemd-analyze (Debian's systemd package; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_service_rates_1_5_or_better() {
    let (ok, text) = systemd_analyze(
        &["security", "--offline=yes", "./alert-relay.service"],
        &units(),
    );
    assert!(ok, "{text}");
    let figure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for alert-relay.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{text}"));
    assert!(figure <= 1.5, "exposure {figure}:\n{text}");
    println!("systemd-analyze security: alert-relay.service exposure {figure}");
}

#[test]
fn the_units_verify_without_a_warning() {
    // `verify` wants the binaries where ExecStart= says; point it at the
    // ones cargo built, in a copy of the units.
    let dir = tempfile::tempdir().unwrap();
    let service = std::fs::read_to_string(units().join("alert-relay.service"))
        .unwrap()
        .replace("/usr/sbin/alert-relayd", env!("CARGO_BIN_EXE_alert-relayd"));
    std::fs::write(dir.path().join("alert-relay.service"), service).unwrap();
    std::fs::copy(
        units().join("alert-relay.socket"),
        dir.path().join("alert-relay.socket"),
    )
    .unwrap();
    let (ok, text) = systemd_analyze(
        &[
            "verify",
            "--man=no",
            "./alert-relay.service",
            "./alert-relay.socket",
        ],
        dir.path(),
    );
    assert!(ok && text.trim().is_empty(), "{text}");
}

/// The value of `key=` in a unit file.
fn setting(unit: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(units().join(unit)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_stop_timeout_covers_the_sigterm_grace() {
    // alert-relayd waits up to listen.idle_timeout + 5 s for sessions in flight.
    let grace =
        alert_relay::config::Listen::default().idle_timeout.0 + std::time::Duration::from_secs(5);
    let timeout = setting("alert-relay.service", "TimeoutStopSec");
    let secs: u64 = timeout[0].trim_end_matches('s').parse().unwrap();
    assert!(
        secs >= grace.as_secs(),
        "TimeoutStopSec={secs}s < {grace:?}"
    );
}

#[test]
fn the_socket_is_loopback_port_25_and_the_service_is_notify() {
    let listen = setting("alert-relay.socket", "ListenStream");
    assert_eq!(listen, ["127.0.0.1:25", "[::1]:25"]);
    assert_eq!(setting("alert-relay.service", "Type"), ["notify"]);
    assert_eq!(setting("alert-relay.service", "User"), ["alert-relay"]);
    assert_eq!(
        setting("alert-relay.service", "CapabilityBoundingSet"),
        [""]
    );
    assert_eq!(
        setting("alert-relay.service", "LoadCredential"),
        ["sasl_password:/etc/alert-relay/sasl_password"]
    );
}

#[test]
fn no_core_dumps_and_bounded_memory_and_tasks() {
    assert_eq!(setting("alert-relay.service", "LimitCORE"), ["0"]);
    // The burst-large fault scenario peaks near 105 MiB with the default
    // listen.max_in_flight; the limit leaves room, and is not absurd.
    let memory = setting("alert-relay.service", "MemoryMax");
    let mib: u64 = memory[0].trim_end_matches('M').parse().unwrap();
    let in_flight = alert_relay::config::Listen::default().max_in_flight.0 >> 20;
    assert!(
        (2 * in_flight..=8 * in_flight).contains(&mib),
        "MemoryMax={mib}M for {in_flight} MiB in flight"
    );
    let tasks: usize = setting("alert-relay.service", "TasksMax")[0]
        .parse()
        .unwrap();
    assert!(
        tasks > alert_relay::runtime::MAX_BLOCKING_THREADS + 4,
        "TasksMax={tasks}"
    );
}
