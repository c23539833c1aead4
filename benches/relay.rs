//! alert-relay's benchmark: prints figures, asserts nothing.
//!
//!     cargo bench --bench relay
//!
//! 1. Encryption: µs to build the outgoing message for a typical 2 KB
//!    OSSEC alert, RSA-4096 and Curve25519 recipients, both formats.
//! 2. Ingest: alerts/s and latency from one sequential SMTP client, one
//!    connection per alert as OSSEC's maild does, to the 250 that means
//!    "encrypted and on disk" (fsync included), RSA-4096 recipient.
//! 3. End to end: the real `alert-relayd` process between SMTP clients and
//!    a stand-in relay (STARTTLS, AUTH) on loopback, RSA-4096 recipient:
//!    alerts/s from one sequential client and from 8 concurrent ones, the
//!    daemon's CPU per alert, and submit-to-relay latency at 50 alerts/s.
//! 4. Routing: µs to route a 2 KB alert and a 1 MiB message through
//!    ordinary rules and through expressions that backtracking engines
//!    take exponential time on (the `regex` crate's are linear).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alert_relay::config::{Config, MessageFormat};
use alert_relay::context::Context;
use alert_relay::daemon::Daemon;
use alert_relay::encrypt::{Keyring, Sealer};

fn keys_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys").to_string()
}

#[path = "../tests/common/prereq.rs"]
#[allow(dead_code)]
mod prereq;
#[path = "../tests/common/smtp.rs"]
#[allow(dead_code)]
mod smtp;
#[path = "../tests/keys/fingerprints.rs"]
mod test_keys;
use test_keys::fingerprint;

fn config_text(spool: &Path, key: &str) -> String {
    format!(
        r#"[listen]
addresses = ["127.0.0.1:0"]
hostname = "mon.example.org"
max_connections = 256
[queue]
dir = "{spool}"
[relay]
host = "relay.example.net"
sender = "OSSEC HIDS <ossec@example.net>"
[[recipients]]
address = "alerts@example.org"
key = "{keys}/{key}.asc"
fingerprint = "{fpr}"
[aliases]
root = "alerts@example.org"
"#,
        spool = spool.display(),
        keys = keys_dir(),
        fpr = fingerprint(key),
    )
}

/// A 2 KB OSSEC alert.
fn alert(n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: OSSEC HIDS <ossecm@mon.example.org>\r\nTo: <root@localhost>\r\n\
         Subject: OSSEC Notification - (app) 10.20.2.2 - Alert level 7\r\n\r\n\
         OSSEC HIDS Notification.\r\n2026 Nov 27 10:00:00\r\n\r\n\
         Received From: (app) 10.20.2.2->/var/log/auth.log\r\n\
         Rule: 5503 fired (level 7) -> \"User login failed.\" alert {n}\r\n\
         Portion of the log(s):\r\n\r\n"
    );
    while m.len() < 2000 {
        m.push_str("Nov 27 10:00:00 app sshd[4242]: Failed password for invalid user admin from 203.0.113.9 port 52144 ssh2\r\n");
    }
    m.into_bytes()
}

fn encryption() {
    println!("encryption of a 2 KB OSSEC alert (in-process, one recipient)");
    let dir = std::env::temp_dir();
    for key in ["alerts", "journalist"] {
        let algo = if key == "alerts" {
            "RSA-4096  "
        } else {
            "Curve25519"
        };
        let config = Config::parse(&config_text(&dir, key), Path::new("bench.toml")).unwrap();
        let keyring = Keyring::load(&config).unwrap();
        let rk = keyring.iter().next().unwrap().clone();
        for format in [MessageFormat::PgpMime, MessageFormat::Inline] {
            let mut sealer = Sealer::new(&config).unwrap();
            sealer.format = format;
            let msg = alert(0);
            let now = SystemTime::now();
            for _ in 0..50 {
                sealer.outgoing(&msg, &rk, now).unwrap();
            }
            let n = 2000;
            let start = Instant::now();
            for _ in 0..n {
                sealer.outgoing(&msg, &rk, now).unwrap();
            }
            let per = start.elapsed() / n;
            println!(
                "  {algo} {:<8}  {:>7.1} µs/message",
                format!("{format:?}"),
                per.as_secs_f64() * 1e6
            );
        }
    }
}

fn routing() {
    println!("routing (in-process, first match wins, no match: every rule is tried)");
    let dir = std::env::temp_dir();
    let rules_for = |routes: &str| {
        let text = format!("{}\n{routes}", config_text(&dir, "alerts"));
        let config = Config::parse(&text, Path::new("bench.toml")).unwrap();
        (config.rules().unwrap(), config.recipients())
    };
    let ordinary = r#"
[[routes]]
match_header = { Subject = "^Cron <root@[^>]*> /usr/local/bin/backup" }
drop = true
[[routes]]
match_header = { X-Wazuh-Level = "^1[2-9]$" }
also = ["root"]
[[routes]]
match_body = "ossec: output: 'head \\-1 /var/lib/securedrop/submissions_today\\.txt"
drop = true
"#;
    // (a+)+$, (a|aa)+$ and ^(\w+\s?)*[!?]$ take exponential time in a
    // backtracking engine on "aaaa...b"; (.*a){20} explodes a naive DFA.
    let hostile = r#"
[[routes]]
match_body = "(a+)+$"
drop = true
[[routes]]
match_body = "(a|aa)+$"
drop = true
[[routes]]
match_header = { Subject = "(.*a){20}" }
drop = true
[[routes]]
match_body = "(?m)^(\\w+\\s?)*[!?]$"
drop = true
"#;
    let mut big = b"Subject: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 4096));
    big.extend_from_slice(b"b\r\n\r\n");
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend_from_slice(b"b\r\n");
    for (name, routes) in [
        ("ordinary rules", ordinary),
        ("hostile expressions", hostile),
    ] {
        let (rules, recipients) = rules_for(routes);
        for (what, msg) in [("2 KB alert", alert(0)), ("1 MiB message", big.clone())] {
            let n = if msg.len() > 4096 { 20 } else { 2000 };
            let start = Instant::now();
            for _ in 0..n {
                std::hint::black_box(rules.route(&recipients, &msg));
            }
            let per = start.elapsed() / n;
            println!(
                "  {name:<20} {what:<14} {:>10.1} µs/message",
                per.as_secs_f64() * 1e6
            );
        }
    }
}

fn smtp_send(port: u16, msg: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = [0u8; 512];
    let mut expect = |s: &mut TcpStream, code: &[u8]| {
        let n = s.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(code),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    };
    expect(&mut s, b"220");
    for (cmd, code) in [
        (&b"Helo notify.ossec.net\r\n"[..], &b"250"[..]),
        (b"Mail From: <ossecm@mon>\r\n", b"250"),
        (b"Rcpt To: <root@localhost>\r\n", b"250"),
        (b"DATA\r\n", b"354"),
    ] {
        s.write_all(cmd).unwrap();
        expect(&mut s, code);
    }
    s.write_all(msg).unwrap();
    s.write_all(b"\r\n.\r\n").unwrap();
    expect(&mut s, b"250");
    s.write_all(b"QUIT\r\n").unwrap();
    expect(&mut s, b"221");
}

fn ingest() {
    let dir = std::env::temp_dir().join(format!("alert-relay-bench-{}", std::process::id()));
    let spool = dir.join("spool");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.toml");
    std::fs::write(&path, config_text(&spool, "alerts")).unwrap();
    let ctx = Context::new(Config::load(&path).unwrap()).unwrap();

    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
    let daemon = rt.block_on(Daemon::start(&path, ctx)).unwrap();
    let port = daemon.local_addrs()[0].port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            rt.block_on(daemon.run(async {
                let _ = stopped.await;
            }))
        })
    };

    let n = 1000;
    let msgs: Vec<Vec<u8>> = (0..n).map(alert).collect();
    for m in msgs.iter().take(20) {
        smtp_send(port, m);
    }
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut lat: Vec<Duration> = Vec::with_capacity(n);
    for m in &msgs {
        let t = Instant::now();
        smtp_send(port, m);
        lat.push(t.elapsed());
    }
    let wall = start.elapsed();
    let cpu = cpu_time() - cpu0;
    let (p50, p99) = p50_p99_ms(&mut lat);
    println!(
        "ingest over SMTP, one sequential client, one connection per alert, RSA-4096, fsync on"
    );
    println!(
        "  {n} alerts in {:.2} s: {:.0} alerts/s, latency p50 {:.2} ms, p99 {:.2} ms, \
         CPU (client and server) {:.2} ms/alert",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        p50,
        p99,
        cpu.as_secs_f64() * 1e3 / n as f64,
    );
    let _ = stop.send(());
    let _ = runner.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// This process's CPU time (user + system).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The daemon's CPU time so far, from /proc.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Sends one alert; returns the queue id from the 250.
/// One alert, as OSSEC's maild sends it (the tests' client).
fn submit(port: u16, msg: &[u8]) -> String {
    smtp::submit(port, "root@localhost", msg).unwrap_or_else(|e| panic!("{e}"))
}

fn end_to_end() {
    use alert_relay::demo::standin::StandIn;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let certs = vec![
        rustls::pki_types::CertificateDer::from_pem_file(root.join("certs/relay.pem")).unwrap(),
    ];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(root.join("certs/relay.key")).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    // The stand-in runs on its own thread and runtime.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = StandIn::start(Arc::new(tls), "ossec@example.net", "bench-password")
                .await
                .unwrap();
            tx.send(s).unwrap();
            std::future::pending::<()>().await
        })
    });
    let standin = rx.recv().unwrap();
    let wait_for = |n: usize| {
        while standin.count() < n {
            std::thread::sleep(Duration::from_micros(200));
        }
    };

    let dir = std::env::temp_dir().join(format!("alert-relay-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("sasl_password");
    std::fs::write(&pw, "bench-password").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = config_text(&dir.join("spool"), "alerts").replace(
        "host = \"relay.example.net\"",
        &format!(
            "host = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\nusername = \"ossec\"\ndomain = \"example.net\"\npassword_file = \"{}\"",
            standin.addr.port(),
            root.join("certs/ca.pem").display(),
            pw.display()
        ),
    );
    let path = dir.join("relay.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.join("daemon.log");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_alert-relayd"))
        .arg("--config")
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port: u16 = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(p) = text
            .lines()
            .find_map(|l| l.split("listening addr=127.0.0.1:").nth(1))
        {
            break p.trim().parse().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let pid = daemon.id();
    println!(
        "end to end: alert-relayd between SMTP clients and a stand-in relay (STARTTLS, AUTH), RSA-4096"
    );

    // Warm up: the first connection to the relay, page cache.
    for i in 0..20 {
        submit(port, &alert(i));
    }
    wait_for(20);

    // 1. One sequential client.
    let n = 1000;
    let msgs: Vec<Vec<u8>> = (0..n).map(alert).collect();
    let base = standin.count();
    let cpu0 = process_cpu(pid);
    let own0 = cpu_time();
    let start = Instant::now();
    for m in &msgs {
        submit(port, m);
    }
    wait_for(base + n);
    let wall = start.elapsed();
    let cpu = process_cpu(pid) - cpu0;
    let own = cpu_time() - own0;
    println!(
        "  sequential client: {n} alerts in {:.2} s = {:.0} alerts/s; daemon CPU {:.2} ms/alert \
         (client and stand-in relay {:.2} ms/alert)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / n as f64,
        own.as_secs_f64() * 1e3 / n as f64
    );

    // 2. Eight concurrent clients.
    let clients = 8;
    let per = 250;
    let base = standin.count();
    let cpu0 = process_cpu(pid);
    let own0 = cpu_time();
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                for i in 0..per {
                    submit(port, &alert(c * per + i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ingested = start.elapsed();
    let at_ingest = standin.count() - base;
    wait_for(base + clients * per);
    let wall = start.elapsed();
    let cpu = process_cpu(pid) - cpu0;
    let own = cpu_time() - own0;
    let total = clients * per;
    println!(
        "  {clients} concurrent clients: {total} alerts in {:.2} s = {:.0} alerts/s; daemon CPU {:.2} ms/alert \
         (clients and stand-in relay {:.2} ms/alert)",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e3 / total as f64,
        own.as_secs_f64() * 1e3 / total as f64
    );
    println!(
        "    every 250 received after {:.2} s, when {at_ingest} had reached the relay",
        ingested.as_secs_f64()
    );

    // 3. Latency, submit to relay, at 50 alerts/s for 10 s. The outgoing
    // Message-ID is random (it must not name the queue id), so arrivals
    // are matched to submissions by order: at this pace each alert is at
    // the relay long before the next is sent.
    let rate = 50;
    let count = rate * 10;
    let mut sent_at = Vec::with_capacity(count);
    let mut acked = Vec::with_capacity(count);
    let base = standin.count();
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t = Instant::now();
        submit(port, &alert(i));
        acked.push(t.elapsed());
        sent_at.push(t);
    }
    wait_for(base + count);
    std::thread::sleep(Duration::from_millis(200));
    let mut arrivals: Vec<Instant> = standin.received().iter().skip(base).map(|r| r.at).collect();
    arrivals.sort();
    let mut lat: Vec<Duration> = arrivals
        .iter()
        .zip(&sent_at)
        .map(|(at, t)| at.duration_since(*t))
        .collect();
    if !lat.is_empty() {
        let (p50, p99) = p50_p99_ms(&mut lat);
        println!(
            "  at {rate} alerts/s: submit-to-relay latency p50 {p50:.2} ms, p99 {p99:.2} ms ({} alerts)",
            lat.len()
        );
        let (p50, p99) = p50_p99_ms(&mut acked);
        println!("    of which submit to 250: p50 {p50:.2} ms, p99 {p99:.2} ms");
    }

    machine_floor(rate);

    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The machine's own latency floor: a fixed CPU task of 0.5 ms (on an idle
/// core, as calibrated here), started `rate` times a second like the alerts
/// above, with nothing else to do. On a shared virtual machine the host
/// preempts it now and then, and its p99 is far above its p50; a path with
/// more work and more wake-ups meets such preemptions at least as often.
fn machine_floor(rate: usize) {
    let work = |n: u64| {
        let mut x = 0u64;
        for k in 0..n {
            x = x.wrapping_add(std::hint::black_box(k).wrapping_mul(k));
        }
        std::hint::black_box(x);
    };
    let timed = |n: u64| {
        let t = Instant::now();
        work(n);
        t.elapsed()
    };
    let target = Duration::from_micros(500);
    let mut n = 1_000u64;
    while (0..5).map(|_| timed(n)).min().unwrap_or_default() < target {
        n += n / 2;
    }
    let mut took: Vec<Duration> = (0..rate * 10)
        .map(|_| {
            std::thread::sleep(Duration::from_secs_f64(1.0 / rate as f64));
            timed(n)
        })
        .collect();
    let (p50, p99) = p50_p99_ms(&mut took);
    println!(
        "  the machine itself: a 0.5 ms CPU task, {rate} times a second, takes p50 {p50:.2} ms, p99 {p99:.2} ms"
    );
}

/// The median and the 99th percentile of `times`, in ms (sorts them).
fn p50_p99_ms(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let at = |p: f64| match times.len() {
        0 => f64::NAN,
        n => times[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3,
    };
    (at(0.5), at(0.99))
}

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("encryption") {
        encryption();
    }
    if run("ingest") {
        ingest();
    }
    if run("e2e") {
        end_to_end();
    }
    if run("routing") {
        routing();
    }
}
