//! The fault-injection suite: "nothing lost,
//! nothing leaked", tried the way it breaks. Each scenario drives the real
//! binaries against aiosmtpd, counts what arrived by decrypting it with
//! GnuPG, and prints one line of figures:
//!
//! ```text
//! PASS crash-storm          12.3s  alerts=2000 acked=2000 ... lost=0 duplicates=4
//! SKIP lossy-link                  no netem and no nftables: ...
//! ```
//!
//! `cargo test --test faults` runs them all (CI does); `-- NAME` runs
//! those whose name contains NAME; `-- --long` runs the long variants. A
//! scenario that cannot run on this machine says why and counts as
//! skipped, never as passed. The last line checks for leaks across all
//! scenarios that ran.

#[path = "../common/mod.rs"]
mod common;

mod burst;
mod certchange;
mod corrupt;
mod disk;
mod large;
mod link;
mod oauth2;
mod relay;
mod reload;
mod storm;
mod support;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Figures, Outcome, Suite};

type Scenario = fn(&Suite) -> Outcome;

/// In the order they run; `leaks` comes last, over all of them.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("crash-storm", storm::run),
    ("disk-full", disk::run),
    ("relay-drop-in-data", relay::drop_in_data),
    ("relay-drop-after-dot", relay::drop_after_dot),
    ("relay-silent", relay::silent),
    ("relay-slow", relay::slow),
    ("relay-cert-change", certchange::run),
    ("relay-cert-change-fallback", certchange::with_fallback),
    ("lossy-link", link::run),
    ("reload-under-load", reload::run),
    ("corrupt-spool", corrupt::run),
    ("burst-memory", burst::run),
    ("burst-large", large::run),
    ("oauth2-refresh", oauth2::run),
];

fn main() {
    let mut long = false;
    let mut filters = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--long" => long = true,
            // libtest's flags, passed by `cargo test -- ...`, mean nothing here.
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    let selected: Vec<_> = SCENARIOS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let suite = Suite::new(long);
    let file_canary = suite.leaks.file_canary(&suite.nonce, &suite.token_mark);
    let stop = AtomicBool::new(false);
    let mut counts = Counts::default();
    std::thread::scope(|s| {
        s.spawn(|| suite.leaks.watch_processes(&stop, &suite.nonce));
        for (name, scenario) in &selected {
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&suite)))
                .unwrap_or_else(|panic| {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into());
                    Outcome::Fail(Figures::new(), vec![why])
                });
            counts.report(name, &outcome, started.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
    });
    if !selected.is_empty() {
        let mut f = Figures::new();
        let found = suite.leaks.found();
        f.set("files_scanned", suite.leaks.files.load(Ordering::Relaxed))
            .set("bytes_scanned", suite.leaks.bytes.load(Ordering::Relaxed))
            .set(
                "process_samples",
                suite.leaks.ps_samples.load(Ordering::Relaxed),
            )
            .set("found", found.len())
            .check(
                file_canary,
                "the file scan missed a canary (or read held/, or the stored sign-in for tokens): it cannot see leaks either",
            )
            .check(
                suite.leaks.canary_seen.load(Ordering::Relaxed),
                "the process watch did not see its canary: it cannot see leaks either",
            );
        for place in found.iter().take(5) {
            f.check(false, place.clone());
        }
        counts.report("leaks", &f.done(), Duration::ZERO);
    }
    // libtest's summary line, which .ci/run adds up.
    println!(
        "test result: {}. {} passed; {} failed; {} ignored; 0 measured; 0 filtered out",
        if counts.failed == 0 { "ok" } else { "FAILED" },
        counts.passed,
        counts.failed,
        counts.skipped
    );
    if counts.failed > 0 {
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    /// Prints the scenario's line (and what failed) and counts it.
    fn report(&mut self, name: &str, outcome: &Outcome, took: Duration) {
        let took = if took.is_zero() {
            String::new()
        } else {
            format!("{:.1}s", took.as_secs_f64())
        };
        match outcome {
            Outcome::Pass(f) => {
                self.passed += 1;
                println!("PASS {name:<22} {took:>6}  {}", f.line());
            }
            Outcome::Fail(f, why) => {
                self.failed += 1;
                println!("FAIL {name:<22} {took:>6}  {}", f.line());
                for w in why {
                    println!("     {name}: {w}");
                }
            }
            Outcome::Skip(why) => {
                self.skipped += 1;
                println!("SKIP {name:<22} {took:>6}  {why}");
            }
        }
    }
}
