//! OAuth 2.0 under faults: clients submit while the daemon signs in with
//! OAuth 2.0 (tokend.py over TLS, aiosmtpd taking XOAUTH2 with the
//! current access token only). The sign-in is revoked (`invalid_grant`)
//! until the admin signs in again; then the daemon is SIGKILLed in the
//! middle of refreshes and write-backs, and the token endpoint goes down.
//!
//! Every access token lives as long as the daemon's margin, so every new
//! relay connection refreshes, and every refresh rotates the refresh
//! token and writes it back (earlier ones stay valid, as Microsoft's
//! do). Nothing acked may be lost, each kill may cost one duplicate, no
//! refresh may be refused after the new sign-in (a refused one would
//! mean a torn or lost sign-in), and the leak watch looks for
//! every token issued (they all start with the suite's token mark) in
//! every process's arguments, the spool but the stored sign-in, the log,
//! the relay's mailbox and what `relayctl` printed.

use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Relay, TokenServer};
use crate::support::{
    Figures, Install, Outcome, RCPT, Rng, StopOnDrop, Suite, Tally, alert, check_kills, submit,
    wait_until,
};

pub fn run(suite: &Suite) -> Outcome {
    let kills = if suite.long { 20 } else { 4 };
    let tokens = TokenServer::start_marked(
        &["--rotate", "--keep-old", "--expires-in", "300"],
        &suite.token_mark,
    );
    let token_file = tokens.access_token_file();
    let relay = Relay::start(&[
        "--pipelining",
        "--mechanisms",
        "XOAUTH2",
        "--oauth-token-file",
        token_file.to_str().unwrap(),
    ]);
    let install = Install::new(relay.port, "", "\"1s\"");
    tokens.configure(&install.setup, "");
    let login = |place: &str| {
        let out = install.setup.relayctl(&["oauth2", "login"]);
        suite.leaks.scan(&out.stdout, place);
        suite.leaks.scan(&out.stderr, place);
        assert!(
            out.status.success(),
            "{place}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    login("relayctl oauth2 login");
    let mut daemon = install.setup.start();

    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let acked = Mutex::new(Vec::new());
    let mut rng = Rng::new(suite.seed);
    let mut released = String::new();
    let mut refused_at = 0;
    let mut sign_in_failure_seen = false;
    let mut signed_in_again = false;
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..500 {
                        let marker = suite.marker("oauth2", n, k);
                        if submit(install.port, RCPT, &alert(RCPT, &marker)).is_ok() {
                            acked.lock().unwrap().push(marker);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        // The sign-in revoked: alerts wait, and health says why, until
        // the admin signs in again, which releases them at once.
        let mut restart = |rng: &mut Rng| {
            std::thread::sleep(Duration::from_millis(rng.range(100, 500)));
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            daemon = install.setup.start();
        };
        // The daemon refreshes at start, and for each new connection to
        // the relay: the restart meets the revocation at once.
        tokens.set("revoke", true);
        restart(&mut rng);
        sign_in_failure_seen = wait_until(Duration::from_secs(20), || {
            let health = install.setup.relayctl(&["health"]);
            health.status.code() == Some(2)
                && String::from_utf8_lossy(&health.stdout).contains("class auth")
        });
        released = login("relayctl oauth2 login, again");
        signed_in_again = wait_until(Duration::from_secs(20), || {
            let health = install.setup.relayctl(&["health"]);
            let report = String::from_utf8_lossy(&health.stdout);
            matches!(health.status.code(), Some(0 | 1))
                && report.contains("delivery")
                && !report.contains("class auth")
        });
        // From here on no refresh may be refused.
        refused_at = tokens.count("refresh", Some(false));
        // Kills among refreshes and write-backs, around an outage of the
        // token endpoint.
        restart(&mut rng);
        tokens.set("down", true);
        std::thread::sleep(Duration::from_millis(1500));
        tokens.set("down", false);
        for _ in 2..kills {
            restart(&mut rng);
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let storm = started.elapsed();

    install.flush();
    let drained = install.wait_drained(Duration::from_secs(60));
    let refused = tokens.count("refresh", Some(false)) - refused_at;
    let mut said = Vec::new();
    for args in [
        &["oauth2", "status"][..],
        &["queue"],
        &["health"],
        &["test", "--no-send"],
    ] {
        let out = install.setup.relayctl(args);
        let place = format!("relayctl {}", args.join(" "));
        suite.leaks.scan(&out.stdout, &place);
        suite.leaks.scan(&out.stderr, &place);
        said.push((place, out.status.success()));
    }
    let acked = acked.into_inner().unwrap();
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    let mode = std::fs::metadata(install.setup.spool().join("oauth2.json"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    drop(daemon);

    let lost = tally.lost(&acked);
    let duplicates = tally.duplicates();
    let mut f = Figures::new();
    f.set("acked", acked.len())
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("duplicates", duplicates)
        .set("kills", kills)
        .set("revoked_refusals", refused_at)
        .set("refreshes", tokens.count("refresh", Some(true)))
        .set("outage_refusals", tokens.count("down", None))
        .set("storm", format!("{:.1}s", storm.as_secs_f64()))
        .set("seed", suite.seed);
    f.check(!acked.is_empty(), "no alert got its 250")
        .check(drained, "the queue did not drain within 60 s")
        .check(
            refused == 0,
            format!("{refused} refreshes refused after the new sign-in: one was torn or lost"),
        )
        .check(
            (1..=2).contains(&refused_at),
            format!(
                "the revoked sign-in was offered {refused_at} times: once for each daemon that \
                 met it, then held"
            ),
        )
        .check(
            sign_in_failure_seen,
            "relayctl health did not say CRITICAL, class auth, while the sign-in was revoked",
        )
        .check(
            released.contains("due now"),
            format!("the new sign-in released nothing: {released}"),
        )
        .check(
            signed_in_again,
            "relayctl health still said class auth 20 s after the new sign-in",
        )
        .check(mode == 0o600, format!("oauth2.json has mode {mode:o}"));
    for (place, ok) in said {
        f.check(ok, format!("{place} failed"));
    }
    check_kills(&mut f, &tally, lost, kills, &install);
    f.done()
}
