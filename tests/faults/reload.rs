//! Reload under load: SIGHUP with a config that adds a recipient (with a
//! new key) while clients submit, then SIGHUP with a config that no longer
//! parses. No connection may be refused, nothing acked may be lost, mail
//! accepted after the reload must reach the new recipient encrypted to
//! the new key, and the broken config must leave the running one in place.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Relay, fingerprint, key_path};
use crate::support::{
    Figures, Install, Outcome, RCPT, StopOnDrop, Suite, Tally, alert, submit, wait_until,
};

/// The alias the clients write to: the journalist, then also the new one.
const OPS: &str = "ops@mon.example.org";
const NEW: &str = "rsa2048@example.org";

pub fn run(suite: &Suite) -> Outcome {
    let relay = Relay::start(&["--pipelining"]);
    let install = Install::new(relay.port, "", "\"1s\"");
    let base = std::fs::read_to_string(install.setup.config_path()).unwrap();
    let before = base.replace(
        "[aliases]\n",
        &format!("[aliases]\n\"{}\" = \"{RCPT}\"\n", local(OPS)),
    );
    let after = base
        .replace(
            "[aliases]\n",
            &format!("[aliases]\n\"{}\" = [\"{RCPT}\", \"{NEW}\"]\n", local(OPS)),
        )
        .replace(
            "[aliases]\n",
            &format!(
                "[[recipients]]\naddress = \"{NEW}\"\nkey = \"{}\"\nfingerprint = \"{}\"\n\n[aliases]\n",
                key_path("rsa2048.asc").display(),
                fingerprint("rsa2048")
            ),
        );
    install.setup.write_config(&before);
    let mut daemon = install.setup.start();

    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let refused = Mutex::new(Vec::new());
    let seq = AtomicUsize::new(0);
    let origin = Instant::now();
    let mut reloaded_at = Duration::ZERO;
    let mut rejected = false;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let marker = suite.marker("reload", n, 0);
                    // A session keeps the config it started with.
                    let began = origin.elapsed();
                    match submit(install.port, OPS, &alert(OPS, &marker)) {
                        Ok(_) => acked.lock().unwrap().push((marker, began)),
                        Err(e) => refused.lock().unwrap().push(e),
                    }
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_millis(700));
        install.setup.write_config(&after);
        daemon.signal(libc::SIGHUP);
        if wait_until(Duration::from_secs(10), || {
            daemon.log().contains("reloaded")
        }) {
            reloaded_at = origin.elapsed();
        }
        std::thread::sleep(Duration::from_millis(700));
        install.setup.write_config("[relay\nthis is not TOML\n");
        daemon.signal(libc::SIGHUP);
        rejected = wait_until(Duration::from_secs(10), || {
            daemon.log().contains("config rejected")
        });
        std::thread::sleep(Duration::from_millis(700));
    });
    let alive = daemon.child.try_wait().ok().flatten().is_none();
    // The running config is the one with the new recipient: put it back
    // on disk for relayctl flush.
    install.setup.write_config(&after);
    install.flush();
    let drained = install.wait_drained(Duration::from_secs(60));
    let acked = acked.into_inner().unwrap();
    let refused = refused.into_inner().unwrap();
    let messages = relay.messages();
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));

    // Which copies went where, by the outer To: header.
    let to_new: Vec<Vec<u8>> = messages
        .iter()
        .filter(|m| header_to(m).contains(NEW))
        .cloned()
        .collect();
    let to_journalist: Vec<Vec<u8>> = messages
        .iter()
        .filter(|m| header_to(m).contains(RCPT))
        .cloned()
        .collect();
    let journalist = Tally::of(suite, &["journalist"], &to_journalist);
    // Only the new key decrypts what went to the new recipient.
    let new = Tally::of(suite, &["rsa2048"], &to_new);
    let all: Vec<String> = acked.iter().map(|(m, _)| m.clone()).collect();
    // Sessions begun after the reload was logged.
    let after_reload: Vec<String> = acked
        .iter()
        .filter(|(_, began)| !reloaded_at.is_zero() && *began > reloaded_at)
        .map(|(m, _)| m.clone())
        .collect();
    let lost = journalist.lost(&all);
    let new_lost = new.lost(&after_reload);

    let mut f = Figures::new();
    f.set("acked", all.len())
        .set("refused", refused.len())
        .set("delivered", all.len() - lost)
        .set("lost", lost)
        .set("after_reload", after_reload.len())
        .set("to_new_key", after_reload.len() - new_lost)
        .set(
            "bad_config",
            if rejected { "rejected" } else { "not rejected" },
        )
        .set("daemon", if alive { "running" } else { "dead" });
    f.check(
        refused.is_empty(),
        format!(
            "{} submissions refused, e.g. {:?}",
            refused.len(),
            refused.first()
        ),
    )
    .check(!reloaded_at.is_zero(), "the reload was not logged")
    .check(rejected, "the broken config was not rejected")
    .check(alive, "the daemon died")
    .check(drained, "the queue did not drain")
    .check(
        lost == 0,
        format!("{lost} acked alerts never reached {RCPT}"),
    )
    .check(
        !after_reload.is_empty(),
        "nothing was acked after the reload",
    )
    .check(
        new_lost == 0,
        format!("{new_lost} alerts acked after the reload never reached {NEW} under its key"),
    )
    .check(
        journalist.unreadable == 0 && new.unreadable == 0,
        "a copy its recipient's key cannot read",
    );
    f.done()
}

/// The local part of an address.
fn local(address: &str) -> &str {
    address.split('@').next().unwrap_or(address)
}

/// The outer To: header of a message.
fn header_to(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .unwrap_or_default()
        .to_string()
}
