//! Relay faults: aiosmtpd hanging up in the middle of DATA or after the
//! final "." (before its reply), a peer that takes the connection and
//! never speaks, and one that answers every command after 10 s.
//! Messages must stay queued and go out again; timeouts must fire when
//! `relay.timeout` says; the log must name the relay and the stage.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::common::Relay;
use crate::support::{Figures, Install, Outcome, RCPT, Suite, Tally, alert, submit, wait_until};

/// How many alerts each drop scenario sends; the first transaction fails.
const ALERTS: usize = 3;

pub fn drop_in_data(suite: &Suite) -> Outcome {
    // The relay never had the message whole: no duplicate.
    dropped(suite, "drop-in-data", "DATA", 0)
}

pub fn drop_after_dot(suite: &Suite) -> Outcome {
    // The relay stored it and hung up before saying so: the resend is
    // the at-least-once duplicate.
    dropped(suite, "drop-after-dot", "end of DATA", 1)
}

fn dropped(suite: &Suite, fault: &str, stage: &str, duplicates: usize) -> Outcome {
    let relay = Relay::start(&["--pipelining", "--fault", fault, "--fault-count", "1"]);
    let install = Install::new(relay.port, "", "\"1s\"");
    let daemon = install.setup.start();
    let markers = send(suite, &install, fault, ALERTS);
    // The deferred one goes again on the 1 s retry, without a flush.
    let drained = install.wait_drained(Duration::from_secs(30));
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let log = daemon.log();
    let deferral = deferral(&log);

    let lost = tally.lost(&markers);
    let mut f = Figures::new();
    f.set("alerts", ALERTS)
        .set("delivered", ALERTS - lost)
        .set("lost", lost)
        .set("deferred", log.matches("status=deferred").count())
        .set("duplicates", tally.duplicates())
        .set("drops", relay.count("drop"))
        .set("reason", reason(&deferral));
    f.check(relay.count("drop") == 1, "the relay did not drop a session")
        .check(drained, "the queue did not drain")
        .check(lost == 0, format!("{lost} alerts never arrived"))
        .check(
            tally.duplicates() == duplicates,
            format!("{} duplicates, expected {duplicates}", tally.duplicates()),
        );
    names_relay_and_stage(&mut f, &deferral, relay.port, stage);
    f.done()
}

pub fn silent(suite: &Suite) -> Outcome {
    // Takes connections (the kernel completes the handshake) and never
    // says a word.
    let port = crate::common::free_port();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    timed_out(suite, "silent", port, 2, "greeting", move || drop(listener))
}

pub fn slow(suite: &Suite) -> Outcome {
    // Greets at once, then answers each command after 10 s.
    let port = crate::common::free_port();
    let relay = Relay::start_on(port, &["--fault", "slow", "--fault-count", "-1"]);
    if suite.long {
        return slow_but_delivered(suite, relay);
    }
    timed_out(suite, "slow", port, 3, "EHLO", move || drop(relay))
}

/// The relay on `port` never answers within `timeout_s`: the attempt is
/// deferred after that long, naming `stage`. Then `heal` removes it, a
/// good relay takes the port, and a flush delivers.
fn timed_out(
    suite: &Suite,
    name: &str,
    port: u16,
    timeout_s: u64,
    stage: &str,
    heal: impl FnOnce(),
) -> Outcome {
    let install = Install::new(port, "", "\"1h\"");
    set_timeout(&install, timeout_s);
    let daemon = install.setup.start();
    let started = Instant::now();
    let markers = send(suite, &install, name, 1);
    let deferred = wait_until(Duration::from_secs(timeout_s * 3 + 5), || {
        daemon.log().contains("status=deferred")
    });
    let fired = started.elapsed();
    let deferral = deferral(&daemon.log());

    heal();
    let relay = Relay::start_on(port, &["--pipelining"]);
    install.flush();
    let drained = install.wait_drained(Duration::from_secs(30));
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let lost = tally.lost(&markers);

    let limit = Duration::from_secs(timeout_s);
    let mut f = Figures::new();
    f.set("timeout", format!("{timeout_s}s"))
        .set("deferred_after", format!("{:.2}s", fired.as_secs_f64()))
        .set("delivered_after_heal", markers.len() - lost)
        .set("lost", lost)
        .set("reason", reason(&deferral));
    f.check(deferred, "no deferral was logged")
        .check(
            fired >= limit && fired < limit + Duration::from_millis(1500),
            format!("the timeout fired after {fired:?}, not {limit:?}"),
        )
        .check(drained, "the queue did not drain once the relay healed")
        .check(lost == 0, "the alert never arrived");
    names_relay_and_stage(&mut f, &deferral, port, stage);
    f.done()
}

/// The long variant: with `relay.timeout` above the relay's 10 s, the
/// slow relay does take the alert, about ten commands later.
fn slow_but_delivered(suite: &Suite, relay: Relay) -> Outcome {
    let install = Install::new(relay.port, "", "\"1h\"");
    set_timeout(&install, 15);
    let daemon = install.setup.start();
    let started = Instant::now();
    let markers = send(suite, &install, "slow-long", 1);
    let drained = install.wait_drained(Duration::from_secs(300));
    let took = started.elapsed();
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let lost = tally.lost(&markers);
    let mut f = Figures::new();
    f.set("timeout", "15s")
        .set("delivered", markers.len() - lost)
        .set("took", format!("{:.1}s", took.as_secs_f64()))
        .set("deferred", daemon.log().matches("status=deferred").count());
    f.check(drained && lost == 0, "the alert never arrived");
    f.done()
}

/// Submits `n` alerts; panics unless each gets its 250.
fn send(suite: &Suite, install: &Install, name: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let marker = suite.marker(name, i, 0);
            submit(install.port, RCPT, &alert(RCPT, &marker))
                .unwrap_or_else(|e| panic!("submission refused: {e}"));
            marker
        })
        .collect()
}

fn set_timeout(install: &Install, seconds: u64) {
    let path = install.setup.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("timeout = \"5s\"", &format!("timeout = \"{seconds}s\""));
    install.setup.write_config(&text);
}

/// The first `status=deferred` line of the log.
fn deferral(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("status=deferred"))
        .unwrap_or_default()
        .to_string()
}

/// The `reason` of a log line, up to its first colon (the rest is the fix).
fn reason(line: &str) -> String {
    line.split_once("reason=\"")
        .map(|(_, r)| {
            r.split([':', '"', '('])
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn names_relay_and_stage(f: &mut Figures, line: &str, port: u16, stage: &str) {
    f.check(
        line.contains(&format!("relay=127.0.0.1:{port}")),
        format!("the deferral does not name the relay: {line}"),
    )
    .check(
        reason(line).contains(stage),
        format!("the deferral does not name {stage}: {line}"),
    );
}
