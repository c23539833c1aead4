//! Lossy link: the relay in its own network namespace, behind a veth
//! pair that delays and drops packets both ways. TCP and the retry
//! schedule must get every alert through.
//!
//! netem (tc) does delay and loss; where the kernel has no netem, as on
//! some CI machines, nftables drops packets at random instead (loss, no
//! delay), and the figures say which ran. Without either, or without
//! the right to make a namespace, the scenario is skipped.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Relay, openssl_fingerprint};
use crate::support::{Figures, Install, Outcome, RCPT, Suite, Tally, alert, submit};

const LOSS_PERCENT: u32 = 10;

pub fn run(suite: &Suite) -> Outcome {
    let alerts = if suite.long { 500 } else { 60 };
    let net = match Netns::create() {
        Ok(n) => n,
        Err(why) => return Outcome::Skip(format!("cannot make a network namespace: {why}")),
    };
    let relay = Relay::start_in(
        &["ip", "netns", "exec", &net.name],
        0,
        &["--host", &net.relay_ip, "--pipelining"],
    );
    // After the relay's start-up probe, which must not be the one to lose.
    let method = match net.impair() {
        Ok(m) => m,
        Err(why) => return Outcome::Skip(why),
    };
    // The relay's name is not its address here: pin its certificate.
    let pin = openssl_fingerprint("relay.pem", "sha256");
    let install = Install::new(
        relay.port,
        &format!("fingerprints = [\"{pin}\"]\n"),
        "\"1s\"",
    );
    let config = std::fs::read_to_string(install.setup.config_path())
        .unwrap()
        .replace(
            "host = \"127.0.0.1\"",
            &format!("host = \"{}\"", net.relay_ip),
        );
    install.setup.write_config(&config);
    let daemon = install.setup.start();

    let started = Instant::now();
    let mut acked = Vec::new();
    for n in 0..alerts {
        let marker = suite.marker("link", n, 0);
        if submit(install.port, RCPT, &alert(RCPT, &marker)).is_ok() {
            acked.push(marker);
        }
    }
    let drained = install.wait_drained(Duration::from_secs(180));
    let took = started.elapsed();
    let tally = Tally::of(suite, &["journalist"], &relay.messages());
    suite
        .leaks
        .scan_install(&install, Some(relay.outdir.path()));
    let deferred = daemon.log().matches("status=deferred").count();
    let dropped = net.dropped();
    let lost = tally.lost(&acked);

    let mut f = Figures::new();
    f.set("link", &method)
        .set("alerts", alerts)
        .set("packets_dropped", dropped)
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("deferred", deferred)
        .set("duplicates", tally.duplicates())
        .set("connections", relay.count("starttls"))
        .set("took", format!("{:.1}s", took.as_secs_f64()));
    f.check(acked.len() == alerts, "a submission on loopback failed")
        .check(
            dropped > 0,
            "the link dropped nothing: the scenario proved nothing",
        )
        .check(drained, "the queue did not drain within 180 s")
        .check(lost == 0, format!("{lost} alerts never arrived"))
        .check(
            tally.duplicates() <= deferred,
            "more duplicates than deferred attempts",
        );
    f.done()
}

/// A namespace holding one end of a veth pair; removed when dropped.
struct Netns {
    name: String,
    host_if: String,
    relay_if: String,
    relay_ip: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let id = std::process::id();
        let net = Netns {
            name: format!("arf{id}"),
            host_if: format!("arf{id}h"),
            relay_if: format!("arf{id}r"),
            relay_ip: format!("10.254.{}.2", id % 250),
        };
        ip(&["netns", "add", &net.name])?;
        let host_ip = format!("10.254.{}.1/24", id % 250);
        let relay_cidr = format!("{}/24", net.relay_ip);
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &net.relay_if,
        ])?;
        ip(&["link", "set", &net.relay_if, "netns", &net.name])?;
        ip(&["addr", "add", &host_ip, "dev", &net.host_if])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        net.exec(&["ip", "addr", "add", &relay_cidr, "dev", &net.relay_if])?;
        net.exec(&["ip", "link", "set", &net.relay_if, "up"])?;
        net.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(net)
    }

    /// Delay and loss both ways; says how.
    fn impair(&self) -> Result<String, String> {
        let netem = |dev: &str, inside: bool| {
            let mut args = vec!["tc", "qdisc", "add", "dev", dev, "root", "netem"];
            let loss = format!("{LOSS_PERCENT}%");
            args.extend(["delay", "20ms", "5ms", "loss", &loss]);
            if inside {
                self.exec(&args)
            } else {
                command(&args)
            }
        };
        if netem(&self.host_if, false).is_ok() {
            netem(&self.relay_if, true)?;
            return Ok(format!(
                "netem delay 20ms±5ms loss {LOSS_PERCENT}% each way"
            ));
        }
        // On the veth end only: the namespace's own loopback stays clean.
        let rule = format!("numgen random mod 100 < {LOSS_PERCENT} counter drop");
        let dev = &self.relay_if;
        let nft = [
            "add table inet lossy".to_string(),
            "add chain inet lossy in { type filter hook input priority 0 ; }".to_string(),
            "add chain inet lossy out { type filter hook output priority 0 ; }".to_string(),
            format!("add rule inet lossy in iifname {dev} {rule}"),
            format!("add rule inet lossy out oifname {dev} {rule}"),
        ];
        for command in &nft {
            let mut args = vec!["nft"];
            args.extend(command.split(' '));
            self.exec(&args).map_err(|e| {
                format!("no netem in this kernel and no nftables ({e}) to make a lossy link")
            })?;
        }
        Ok(format!(
            "nftables loss {LOSS_PERCENT}% each way, no delay (this kernel has no netem)"
        ))
    }

    /// Packets the impairment dropped, by its own counters.
    fn dropped(&self) -> u64 {
        let read = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &self.name];
            all.extend(args);
            Command::new(all[0])
                .args(&all[1..])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        // nft: "... counter packets N bytes M drop"; tc: "(dropped N, ...".
        let nft = read(&["nft", "list", "table", "inet", "lossy"]);
        let tc = read(&["tc", "-s", "qdisc", "show", "dev", &self.relay_if]);
        let after = |text: &str, word: &str| -> u64 {
            text.split(word)
                .skip(1)
                .filter_map(|rest| {
                    rest.trim_start()
                        .split([' ', ','])
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .sum()
        };
        after(&nft, "packets") + after(&tc, "dropped")
    }

    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend(args);
        command(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and so the pair.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let mut all = vec!["ip"];
    all.extend(args);
    command(&all)
}

/// Runs a command; the error is its stderr.
fn command(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
