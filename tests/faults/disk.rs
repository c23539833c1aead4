//! Disk full: the spool on a small tmpfs, filled up while the relay is
//! down. New mail must get 452 4.3.1 (sendmail: exit 75), what was
//! already spooled must stay whole, the daemon must keep running, and
//! everything acked must go out once space returns.

use std::time::Duration;

use crate::common::Relay;
use crate::common::disk::{Tmpfs, fill};
use crate::support::{Figures, Install, Outcome, RCPT, Suite, Tally, alert, submit};

/// How much room is left when the filler is in place: a few dozen alerts.
const ROOM: u64 = 160 * 1024;

pub fn run(suite: &Suite) -> Outcome {
    let relay_port = crate::common::free_port();
    let install = Install::new(relay_port, "", "\"1h\"");
    let spool = install.setup.spool();
    std::fs::create_dir_all(&spool).unwrap();
    let _mount = match Tmpfs::mount(&spool, "8m") {
        Ok(m) => m,
        Err(why) => return Outcome::Skip(format!("cannot mount a tmpfs for the spool: {why}")),
    };
    let mut daemon = install.setup.start();
    let filler = spool.join("filler");
    fill(&filler, ROOM);

    // Alerts until the spool is full; the relay is down, so they stay.
    let mut acked = Vec::new();
    let mut full_reply = None;
    for n in 0..2000 {
        let marker = suite.marker("disk", n, 0);
        match submit(install.port, RCPT, &alert(RCPT, &marker)) {
            Ok(_) => acked.push(marker),
            Err(reply) => {
                full_reply = Some(reply);
                break;
            }
        }
    }
    let full_reply = full_reply.unwrap_or_else(|| "none: the spool never filled".into());
    // Still full: the next alert is refused the same way, and sendmail
    // says "try again later".
    let again = submit(
        install.port,
        RCPT,
        &alert(RCPT, &suite.marker("disk-again", 0, 0)),
    );
    let sendmail = install
        .setup
        .sendmail(&[RCPT], &alert(RCPT, &suite.marker("disk-sendmail", 0, 0)));
    let alive = daemon.child.try_wait().ok().flatten().is_none();

    // Nothing spooled was damaged: every entry in queue/ decodes, and the
    // count of alerts matches what was acked. The rest are the daemon's
    // warnings to the admin that the spool is filling up.
    let queue = install.setup.spool().join("queue");
    let mut whole = 0;
    let mut broken = 0;
    let mut warnings = 0;
    for e in std::fs::read_dir(&queue).unwrap().flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "msg") {
            match alert_relay::spool::Entry::decode(&std::fs::read(&path).unwrap()) {
                Ok(entry) if entry.recipient.as_str() == RCPT => whole += 1,
                Ok(_) => warnings += 1,
                Err(_) => broken += 1,
            }
        }
    }

    // Space returns, the relay comes up: everything acked goes out, and
    // new mail is taken again.
    std::fs::remove_file(&filler).unwrap();
    let relay = Relay::start_on(relay_port, &["--pipelining"]);
    install.flush();
    let after = suite.marker("disk-after", 0, 0);
    let after_ok = submit(install.port, RCPT, &alert(RCPT, &after)).is_ok();
    if after_ok {
        acked.push(after);
    }
    let drained = install.wait_drained(Duration::from_secs(60));
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let log = daemon.log();
    let lost = tally.lost(&acked);
    let _ = daemon.child.kill();

    let mut f = Figures::new();
    f.set("tmpfs", "8M")
        .set("acked_before_full", acked.len() - usize::from(after_ok))
        .set("reply", &full_reply)
        .set("sendmail_exit", sendmail.status.code().unwrap_or(-1))
        .set("daemon", if alive { "running" } else { "dead" })
        .set("intact", format!("{whole}/{}", whole + broken))
        .set("warnings_queued", warnings)
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("duplicates", tally.duplicates());
    f.check(
        full_reply.starts_with("452 4.3.1"),
        format!("a full spool answered {full_reply:?}, not 452 4.3.1"),
    )
    .check(
        again.as_ref().is_err_and(|r| r.starts_with("452 4.3.1")),
        format!("the next alert got {again:?}"),
    )
    .check(
        sendmail.status.code() == Some(75),
        format!(
            "sendmail exited {:?}: {}",
            sendmail.status.code(),
            String::from_utf8_lossy(&sendmail.stderr)
        ),
    )
    .check(alive, "the daemon died")
    .check(
        !acked.is_empty(),
        "nothing was acked before the spool filled",
    )
    .check(
        broken == 0 && whole == acked.len() - usize::from(after_ok),
        format!(
            "{whole} whole and {broken} broken entries for {} acked",
            acked.len()
        ),
    )
    .check(after_ok, "mail was refused after space returned")
    .check(
        warnings >= 1 && log.contains("queued a warning"),
        "the admin was not warned that the spool is filling up",
    )
    .check(drained, "the queue did not drain")
    .check(lost == 0, format!("{lost} acked alerts never arrived"))
    .check(tally.duplicates() == 0, "duplicates")
    .check(
        log.contains("message not queued") && log.contains("the spool's file system is full"),
        "the log does not say the spool was full",
    );
    f.done()
}
