//! `relayctl demo`: the path a message takes, on loopback, with no setup.
//!
//! It writes a throwaway config and spool in a temporary directory, starts
//! the real daemon code on a free loopback port, submits an OSSEC-style
//! alert over SMTP (with OSSEC's own spelling of the commands) and a
//! cron-style message through the `sendmail` code path, shows each SMTP
//! exchange and what the spool then holds, and removes everything.
//!
//! It generates a throwaway OpenPGP key for the demo recipient and a
//! throwaway TLS certificate for a stand-in relay (STARTTLS and AUTH, in
//! this process), pins that certificate in the config, and lets the real
//! queue runner deliver. It shows what the relay received and, with the
//! secret key only the demo has, its decryption.

pub mod standin;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::serialize::Serialize;

use crate::config::{Config, Pin};
use crate::daemon::Daemon;
use crate::ingest::sendmail;
use crate::spool::Spool;
use standin::StandIn;

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("alert-relay-demo-{}-{nanos:x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A throwaway Curve25519 key for the demo recipient.
fn demo_key(dir: &Path) -> Result<(Cert, String), String> {
    let (cert, _revocation) = CertBuilder::general_purpose(Some("Demo <alerts@example.org>"))
        .set_cipher_suite(CipherSuite::Cv25519)
        .generate()
        .map_err(|e| format!("cannot generate the demo key: {e}"))?;
    let mut armored = Vec::new();
    cert.armored()
        .serialize(&mut armored)
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("alerts.asc"), armored).map_err(|e| e.to_string())?;
    let fingerprint = cert.fingerprint().to_hex();
    Ok((cert, fingerprint))
}

/// The stand-in relay's SASL login: throwaway, like everything here.
const DEMO_LOGIN: (&str, &str) = ("ossec@example.net", "demo-password");

fn demo_config(dir: &Path, fingerprint: &str, relay_port: u16, pin: &str) -> String {
    format!(
        r#"[listen]
addresses = ["127.0.0.1:0"]
hostname = "mon.example.org"

[queue]
dir = "{dir}/spool"

[relay]
host = "127.0.0.1"
port = {relay_port}
tls = "starttls"
fingerprints = ["{pin}"]
username = "ossec"
domain = "example.net"
password_file = "{dir}/sasl_password"
sender = "OSSEC HIDS <ossec@example.net>"

[[recipients]]
address = "alerts@example.org"
key = "{dir}/alerts.asc"
fingerprint = "{fingerprint}"

[aliases]
root = "alerts@example.org"
"#,
        dir = dir.display()
    )
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs the demo, printing as it goes.
pub fn run() -> Result<(), String> {
    let dir = TempDir::new()?;
    let config_path = dir.0.join("relay.toml");
    let (secret, fingerprint) = demo_key(&dir.0)?;
    let (tls, relay_cert) = StandIn::throwaway_tls("relay.demo.invalid")?;
    write_private(&dir.0.join("sasl_password"), DEMO_LOGIN.1.as_bytes())?;
    let pin = Pin::CertSha256(relay_cert.sha256).to_string();

    let runtime = crate::runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let relay = StandIn::start(tls, DEMO_LOGIN.0, DEMO_LOGIN.1)
            .await
            .map_err(|e| format!("cannot start the stand-in relay: {e}"))?;
        std::fs::write(
            &config_path,
            demo_config(&dir.0, &fingerprint, relay.addr.port(), &pin),
        )
        .map_err(|e| format!("cannot write the demo config: {e}"))?;
        let config = Config::load(&config_path).map_err(|e| e.to_string())?;
        config.check_secrets().map_err(|e| e.to_string())?;
        println!("alert-relay demo: local mail in, encrypted, spooled, relayed over pinned TLS");
        println!("  config   {}", config_path.display());
        println!("  key      {fingerprint} (alerts@example.org, generated for the demo)");
        println!("  spool    {}", config.queue.dir.display());
        println!(
            "  relay    {} (a stand-in with STARTTLS and AUTH; its certificate, generated for the demo, pinned as {pin})",
            relay.addr
        );

        let ctx = crate::context::Context::new(config.clone()).map_err(|e| e.to_string())?;
        let daemon = Daemon::start(&config_path, ctx)
            .await
            .map_err(|e| e.to_string())?;
        let addr = *daemon
            .local_addrs()
            .first()
            .ok_or("the daemon bound no address")?;
        println!("  daemon   listening on {addr}\n");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(daemon.run(async {
            let _ = stopped.await;
        }));

        println!("1. An OSSEC alert over SMTP, as OSSEC's maild sends it:");
        ossec_dialogue(addr).await?;

        println!("\n2. A cron job's mail through sendmail (the same code as /usr/sbin/sendmail):");
        let args = sendmail::parse_args("sendmail", &["-oi".into(), "root".into()])
            .map_err(|e| e.to_string())?;
        // The demo's sendmail runs as its user: no privilege to split.
        let submitter = crate::context::Context::new(config.clone()).map_err(|e| e.to_string())?;
        let dropbox = sendmail::Dropbox::Direct(
            Spool::open_submitter(&config.queue.dir).map_err(|e| e.to_string())?,
        );
        let entries = sendmail::submit(
            &submitter,
            &dropbox,
            &args,
            b"Subject: Cron <root@mon> /usr/local/bin/backup\n\nbackup finished\n",
        )
        .map_err(|f| f.message)?;
        for e in &entries {
            println!("   queued as {} for {}", e.id, e.recipient);
        }

        println!("\n3. Delivery: the daemon encrypted both, then relayed them over TLS to the pinned relay:");
        let spool = Spool::at(&config.queue.dir);
        if tokio::time::timeout(Duration::from_secs(20), relay.wait_for(2))
            .await
            .is_err()
        {
            let rows = spool.list().map_err(|e| e.to_string())?;
            return Err(format!(
                "the stand-in relay did not receive both messages within 20 s; the queue:\n{}",
                crate::control::queue_table(&rows)
            ));
        }
        let received = relay.received();
        for r in &received {
            println!(
                "   relay got {} bytes from <{}> for <{}>, authenticated as {}",
                r.data.len(),
                r.mail_from,
                r.rcpt_to.join(">, <"),
                r.login
            );
        }

        println!("\n4. What the relay received (and all it, or anyone on the way, can read):");
        let first = &received[0].data;
        for line in String::from_utf8_lossy(first).lines().take(22) {
            println!("   | {line}");
        }
        println!("   | ...");

        println!("\n5. Their decryption, with the recipient's secret key (which the host never has):");
        for r in &received {
            let plain = decrypt(&secret, &r.data)?;
            for line in String::from_utf8_lossy(&plain).lines() {
                println!("   | {line}");
            }
            println!("   +--");
        }

        println!("\n6. The spool afterwards:");
        let deadline = Instant::now() + Duration::from_secs(5);
        let rows = loop {
            let rows = spool.list().map_err(|e| e.to_string())?;
            if rows.is_empty() || Instant::now() > deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for line in crate::control::queue_table(&rows).lines() {
            println!("   {line}");
        }

        let _ = stop.send(());
        running
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        println!("\nThe daemon stopped; the demo's keys, certificate and files are removed.");
        Ok::<(), String>(())
    })
}

/// Decrypts the armored message inside `message` with `secret`: what the
/// recipient's mail client does.
fn decrypt(secret: &Cert, message: &[u8]) -> Result<Vec<u8>, String> {
    let begin = find(message, b"-----BEGIN PGP MESSAGE-----").ok_or("no OpenPGP message")?;
    let end = find(message, b"-----END PGP MESSAGE-----").ok_or("no OpenPGP message end")? + 25;
    crate::encrypt::open::decrypt(secret, &message[begin..end])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// OSSEC's dialogue, one reply read per command, printed as it goes.
async fn ossec_dialogue(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    let mut recv = async |stream: &mut TcpStream| -> Result<String, String> {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
    };
    println!("   S: {}", recv(&mut stream).await?);
    let steps: [&[u8]; 6] = [
        b"Helo notify.ossec.net\r\n",
        b"Mail From: <ossecm@mon.example.org>\r\n",
        b"Rcpt To: <root@localhost>\r\n",
        b"DATA\r\n",
        b"From: OSSEC HIDS <ossecm@mon.example.org>\r\nTo: <root@localhost>\r\n\
          Subject: OSSEC Notification - (mon) 10.20.2.2 - Alert level 7\r\n\r\n\
          OSSEC HIDS Notification.\r\nRule: 5503 fired (level 7) -> \"User login failed.\"\r\n\
          \r\n.\r\n",
        b"QUIT\r\n",
    ];
    for step in steps {
        let text = String::from_utf8_lossy(step);
        let shown = if step.len() > 60 {
            "<headers and body of the alert> .".to_string()
        } else {
            text.trim_end().to_string()
        };
        println!("   C: {shown}");
        stream.write_all(step).await.map_err(|e| e.to_string())?;
        println!("   S: {}", recv(&mut stream).await?);
    }
    Ok(())
}
