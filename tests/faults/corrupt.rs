//! Corrupt spool entries: a truncated file, a garbage file and one with a
//! bad header, named like entries in `queue/`, next to good alerts. Each
//! must move to `corrupt/` with a log line naming it, once; the good
//! alerts must flow.

use std::time::Duration;

use alert_relay::spool::{Entry, QueueId};

use crate::common::Relay;
use crate::support::{Figures, Install, Outcome, RCPT, Suite, Tally, alert, wait_until};

pub fn run(suite: &Suite) -> Outcome {
    let relay = Relay::start(&["--pipelining"]);
    let install = Install::new(relay.port, "", "\"1h\"");
    // Two good alerts through sendmail, while no daemon runs.
    let mut markers = Vec::new();
    for n in 0..2 {
        let marker = suite.marker("corrupt", n, 0);
        let out = install.setup.sendmail(&[RCPT], &alert(RCPT, &marker));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        markers.push(marker);
    }
    let good = install.setup.entries("incoming");
    let whole = good[0].encode();
    let bad: [Vec<u8>; 3] = [
        whole[..whole.len() / 2].to_vec(),
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        b"alert-relay-entry 9\nid ZZZ\n\n-not-an-entry-\n".to_vec(),
    ];
    let queue = install.setup.spool().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    let mut names = Vec::new();
    for bytes in &bad {
        let name = format!("{}.msg", QueueId::generate());
        std::fs::write(queue.join(&name), bytes).unwrap();
        names.push(name);
    }

    let daemon = install.setup.start();
    let drained = install.wait_drained(Duration::from_secs(20));
    let corrupt = install.setup.spool().join("corrupt");
    let moved = wait_until(Duration::from_secs(10), || {
        names.iter().all(|n| corrupt.join(n).exists())
    });
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let log = daemon.log();
    let lost = tally.lost(&markers);
    let named = names.iter().filter(|n| log.contains(n.as_str())).count();
    // Each looked at once: no retries of what cannot be sent.
    let attempts = log.matches("status=").count();
    let left = std::fs::read_dir(&queue).map(|d| d.count()).unwrap_or(0);

    let mut f = Figures::new();
    f.set("corrupt_files", names.len())
        .set(
            "moved",
            names.iter().filter(|n| corrupt.join(n).exists()).count(),
        )
        .set("named_in_log", named)
        .set("good", markers.len())
        .set("delivered", markers.len() - lost)
        .set("attempts", attempts);
    f.check(moved, "not every corrupt file moved to corrupt/")
        .check(
            named == names.len(),
            "the log does not name every corrupt file",
        )
        .check(
            log.matches("corrupt spool file").count() == names.len(),
            "not one log line per corrupt file",
        )
        .check(drained && lost == 0, "the good alerts did not all arrive")
        .check(attempts == markers.len(), "corrupt files were attempted")
        .check(left == 0, format!("{left} files left in queue/"))
        .check(
            good.iter().all(|e: &Entry| !e.payload.is_empty()),
            "an empty good entry",
        );
    f.done()
}
