//! Burst memory: 10,000 alerts queued while the relay is down. The
//! daemon's resident memory must stay at or under 40 MiB, `relayctl
//! queue` must answer within a second, and once the relay is back all
//! 10,000 must go out over one connection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::Relay;
use crate::support::{
    Figures, Install, Outcome, RCPT, Suite, Tally, alert, rss_kib, submit, wait_until,
};

const RSS_LIMIT_KIB: u64 = 40 * 1024;

pub fn run(suite: &Suite) -> Outcome {
    let alerts = 10_000;
    let relay_port = crate::common::free_port();
    let install = Install::new(relay_port, "", "\"1h\"");
    let daemon = install.setup.start();
    let pid = daemon.child.id();

    let next = AtomicUsize::new(0);
    let acked = Mutex::new(Vec::new());
    let refused = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= alerts {
                        return;
                    }
                    let marker = suite.marker("burst", n, 0);
                    match submit(install.port, RCPT, &alert(RCPT, &marker)) {
                        Ok(_) => acked.lock().unwrap().push(marker),
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    let submitted = started.elapsed();
    let acked = acked.into_inner().unwrap();
    // Everything acked is in queue/ (deferred: the relay is down).
    let queued = wait_until(Duration::from_secs(30), || {
        install.entries("queue") >= acked.len()
    });
    suite.leaks.scan_tree(&install.setup.spool());
    let (_, peak_queued, threads) = rss_kib(pid);

    let asked = Instant::now();
    // What an admin types: the table.
    let out = install.setup.relayctl(&["queue"]);
    let answered = asked.elapsed();
    let listed = String::from_utf8_lossy(&out.stdout).matches(RCPT).count();

    let relay = Relay::start_on(relay_port, &["--pipelining"]);
    let flushed = Instant::now();
    install.flush();
    let drained = install.wait_drained(Duration::from_secs(300));
    let delivery = flushed.elapsed();
    let (_, peak, _) = rss_kib(pid);
    let messages = relay.messages();
    let tally = Tally::of(suite, &["journalist"], &messages);
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let lost = tally.lost(&acked);
    let connections = relay.count("starttls");

    let mut f = Figures::new();
    f.set("alerts", alerts)
        .set("acked", acked.len())
        .set(
            "submit_rate",
            format!("{:.0}/s", acked.len() as f64 / submitted.as_secs_f64()),
        )
        .set(
            "peak_rss_queued",
            format!("{:.1}MiB", peak_queued as f64 / 1024.0),
        )
        .set("peak_rss", format!("{:.1}MiB", peak as f64 / 1024.0))
        .set("threads", threads)
        .set("queue_listed", listed)
        .set("queue_answered", format!("{:.2}s", answered.as_secs_f64()))
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("duplicates", tally.duplicates())
        .set("connections", connections)
        .set(
            "delivery_rate",
            format!("{:.0}/s", messages.len() as f64 / delivery.as_secs_f64()),
        );
    f.check(
        acked.len() == alerts,
        format!("{} submissions refused", refused.load(Ordering::Relaxed)),
    )
    .check(queued, "not everything acked reached queue/")
    .check(
        peak <= RSS_LIMIT_KIB,
        format!("peak resident memory {peak} KiB is over 40 MiB"),
    )
    .check(
        out.status.success() && listed == acked.len(),
        format!("relayctl queue listed {listed} of {}", acked.len()),
    )
    .check(
        answered < Duration::from_secs(1),
        "relayctl queue took a second or more",
    )
    .check(drained, "the queue did not drain within 300 s")
    .check(lost == 0, format!("{lost} acked alerts never arrived"))
    .check(tally.duplicates() == 0, "duplicates")
    .check(
        connections == 1,
        format!("{connections} connections, not one"),
    );
    f.done()
}
