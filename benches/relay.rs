//! alert-relay's benchmark: prints figures, asserts nothing.
//!
//!     cargo bench --bench relay
//!
//! 1. Encryption: µs to build the outgoing message for a typical 2 KB
//!    OSSEC alert, RSA-4096 and Curve25519 recipients, both formats.
//! 2. Ingest: alerts/s and latency from one sequential SMTP client, one
//!    connection per alert as OSSEC's maild does, to the 250 that means
//!    "encrypted and on disk" (fsync included), RSA-4096 recipient.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alert_relay::config::{Config, MessageFormat};
use alert_relay::daemon::Daemon;
use alert_relay::encrypt::{Keyring, Sealer};
use alert_relay::ingest::Context;
use alert_relay::spool::QueueId;

fn keys_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys").to_string()
}

fn fingerprint(name: &str) -> String {
    let list = std::fs::read_to_string(format!("{}/fingerprints.txt", keys_dir())).unwrap();
    list.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap()
        .to_string()
}

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
            let mut sealer = Sealer::new(&config, "mon.example.org").unwrap();
            sealer.format = format;
            let msg = alert(0);
            let id = QueueId::generate();
            let now = SystemTime::now();
            for _ in 0..50 {
                sealer.seal(&msg, &rk, &id, now).unwrap();
            }
            let n = 2000;
            let start = Instant::now();
            for _ in 0..n {
                sealer.seal(&msg, &rk, &id, now).unwrap();
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
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "ingest over SMTP, one sequential client, one connection per alert, RSA-4096, fsync on"
    );
    println!(
        "  {n} alerts in {:.2} s: {:.0} alerts/s, latency p50 {:.2} ms, p99 {:.2} ms, \
         CPU (client and server) {:.2} ms/alert",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
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

fn main() {
    encryption();
    ingest();
}
