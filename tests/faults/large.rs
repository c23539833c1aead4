//! Burst of large messages: eight clients at once, each sending messages
//! of nearly `listen.max_message_size` (10 MiB) to two recipients, while
//! the relay is up. The daemon must never hold more than its budget
//! (`listen.max_in_flight`, 64 MiB) in messages: the clients it cannot
//! take now get 452 and send again, as a mailer does. Peak resident
//! memory must stay under the figure packaging/systemd's `MemoryMax=`
//! assumes, and everything acknowledged must arrive.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::Relay;
use crate::support::{Figures, Install, Outcome, Suite, Tally, alert, rss_kib, submit};

/// The unit's MemoryMax= is 256M: the daemon must stay well under it.
const RSS_LIMIT_KIB: u64 = 128 * 1024;
/// Both test recipients: the `ossec` alias.
const TO: &str = "ossec";

pub fn run(suite: &Suite) -> Outcome {
    let clients = 8;
    let per_client = if suite.long { 4 } else { 1 };
    let relay = Relay::start(&["--pipelining"]);
    let install = Install::new(relay.port, "", "\"1s\"");
    let daemon = install.setup.start();
    let pid = daemon.child.id();
    // About 9.5 MiB of text around the marker: just under the limit.
    let filler: Vec<u8> =
        b"0123456789 log line of a chatty cron job, repeated to make it large\r\n"
            .repeat(9_500_000 / 69);

    let acked = Mutex::new(Vec::new());
    let busy = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (acked, busy, errors, filler) = (&acked, &busy, &errors, &filler);
            s.spawn(move || {
                for n in 0..per_client {
                    let marker = suite.marker("large", c * per_client + n, 0);
                    let mut body = alert(TO, &marker);
                    body.extend_from_slice(filler);
                    let deadline = Instant::now() + Duration::from_secs(240);
                    loop {
                        match submit(install.port, TO, &body) {
                            Ok(_) => {
                                acked.lock().unwrap().push(marker);
                                break;
                            }
                            Err(e) if e.starts_with("452 4.3.1") => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                if Instant::now() > deadline {
                                    errors.lock().unwrap().push("452 for 240 s".to_string());
                                    break;
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => {
                                errors.lock().unwrap().push(e);
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let submitted = started.elapsed();
    let acked = acked.into_inner().unwrap();
    let drained = install.wait_drained(Duration::from_secs(300));
    let (_, peak, threads) = rss_kib(pid);
    let messages = relay.messages();
    let tally = Tally::of(suite, &["alerts", "journalist"], &messages);
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let lost = tally.lost(&acked);
    let errors = errors.into_inner().unwrap();
    let busy = busy.load(Ordering::Relaxed);

    let mut f = Figures::new();
    f.set("messages", clients * per_client)
        .set("size", "9.5MiB")
        .set("recipients", 2)
        .set("acked", acked.len())
        .set("refused_452", busy)
        .set("submit_time", format!("{:.1}s", submitted.as_secs_f64()))
        .set("peak_rss", format!("{:.1}MiB", peak as f64 / 1024.0))
        .set("threads", threads)
        .set("delivered", acked.len() - lost)
        .set("lost", lost);
    f.check(
        errors.is_empty(),
        format!("clients saw errors other than 452: {errors:?}"),
    )
    .check(
        acked.len() == clients * per_client,
        format!("{} of {} acked", acked.len(), clients * per_client),
    )
    .check(busy > 0, "no 452: the budget was never reached")
    .check(
        peak <= RSS_LIMIT_KIB,
        format!(
            "peak resident memory {:.1} MiB is over {} MiB",
            peak as f64 / 1024.0,
            RSS_LIMIT_KIB / 1024
        ),
    )
    .check(drained, "the queue did not drain within 300 s")
    .check(lost == 0, format!("{lost} acked messages never arrived"));
    f.done()
}
