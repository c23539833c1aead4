//! Crash storm: alerts from concurrent clients while `alert-relayd` is
//! SIGKILLed at random moments and restarted.
//!
//! A client retries an alert that got no 250 under a new marker, as
//! OSSEC would resend it. So "lost" means a marker that got its 250 and
//! never reached the relay, which must never happen; a marker that
//! reached the relay more than once is a duplicate. Delivery is at least
//! once: a kill between the relay's 250 and the removal of the entry sends
//! that entry again after the restart, so each kill may cost one
//! duplicate, never more (the runner records each outcome before the
//! next transaction).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::Relay;
use crate::support::{
    Figures, Install, Outcome, RCPT, Rng, Suite, Tally, alert, check_kills, submit,
};

pub fn run(suite: &Suite) -> Outcome {
    let (alerts, clients, kills) = if suite.long {
        (20_000, 4, 200)
    } else {
        (2_000, 4, 20)
    };
    let relay = Relay::start(&["--pipelining"]);
    let install = Install::new(relay.port, "", "\"1s\"");
    let mut daemon = install.setup.start();

    let next = AtomicUsize::new(0);
    let acked = Mutex::new(Vec::new());
    let resubmitted = AtomicUsize::new(0);
    let mut rng = Rng::new(suite.seed);
    // Set when the killer panics (a restart failed): clients stop.
    let halt = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= alerts || halt.load(Ordering::Relaxed) {
                        return;
                    }
                    // A daemon that never comes back ends this after ~10 s.
                    for k in 0..500 {
                        let marker = suite.marker("storm", n, k);
                        if submit(install.port, RCPT, &alert(RCPT, &marker)).is_ok() {
                            acked.lock().unwrap().push(marker);
                            break;
                        }
                        resubmitted.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
        // Kills spread over the submissions (and the deliveries that
        // run alongside them): 20 to 300 ms apart.
        let _halt = HaltOnPanic(&halt);
        for _ in 0..kills {
            std::thread::sleep(Duration::from_millis(rng.range(20, 300)));
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            daemon = install.setup.start();
        }
    });
    let storm = started.elapsed();

    install.flush();
    let drained = install.wait_drained(Duration::from_secs(120));
    let acked = acked.into_inner().unwrap();
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    let corrupt = install.files("corrupt");
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));

    let lost = tally.lost(&acked);
    let duplicates = tally.duplicates();
    let mut f = Figures::new();
    f.set("alerts", alerts)
        .set("clients", clients)
        .set("kills", kills)
        .set("acked", acked.len())
        .set("resubmitted", resubmitted.load(Ordering::Relaxed))
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("duplicates", duplicates)
        .set("corrupt", corrupt)
        .set("storm", format!("{:.1}s", storm.as_secs_f64()))
        .set("seed", suite.seed);
    f.check(acked.len() == alerts, "not every alert got its 250")
        .check(drained, "the queue did not drain within 120 s");
    check_kills(&mut f, &tally, lost, kills, &install);
    f.done()
}

/// Tells the clients to stop when the thread holding it panics.
struct HaltOnPanic<'a>(&'a AtomicBool);

impl Drop for HaltOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}
