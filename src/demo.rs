//! `relayctl demo`: the path a message takes, on loopback, with no setup.
//!
//! It writes a throwaway config and spool in a temporary directory, starts
//! the real daemon code on a free loopback port, submits an OSSEC-style
//! alert over SMTP (with OSSEC's own spelling of the commands) and a
//! cron-style message through the `sendmail` code path, shows each SMTP
//! exchange and what the spool then holds, and removes everything.
//!
//! It generates a throwaway OpenPGP key for the demo recipient, shows the
//! encrypted message the spool holds and, with the secret key only the
//! demo has, its decryption. Delivery through a relay joins the demo as it
//! lands.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::serialize::Serialize;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};

use crate::config::Config;
use crate::daemon::Daemon;
use crate::encrypt::keys::POLICY;
use crate::ingest::sendmail;
use crate::spool::Spool;

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

fn demo_config(dir: &Path, fingerprint: &str) -> String {
    format!(
        r#"[listen]
addresses = ["127.0.0.1:0"]
hostname = "mon.example.org"

[queue]
dir = "{dir}/spool"

[relay]
# Delivery joins the demo with the stand-in relay; until then, a closed port.
host = "127.0.0.1"
port = 9
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

/// Runs the demo, printing as it goes.
pub fn run() -> Result<(), String> {
    let dir = TempDir::new()?;
    let config_path = dir.0.join("relay.toml");
    let (secret, fingerprint) = demo_key(&dir.0)?;
    std::fs::write(&config_path, demo_config(&dir.0, &fingerprint))
        .map_err(|e| format!("cannot write the demo config: {e}"))?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    println!("alert-relay demo: local mail in, encrypted, durably spooled");
    println!("  config   {}", config_path.display());
    println!("  key      {fingerprint} (alerts@example.org, generated for the demo)");
    println!("  spool    {}", config.queue.dir.display());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let ctx = crate::ingest::Context::new(config.clone()).map_err(|e| e.to_string())?;
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
        let entries = sendmail::submit(
            config.clone(),
            &args,
            b"Subject: Cron <root@mon> /usr/local/bin/backup\n\nbackup finished\n",
        )
        .map_err(|f| f.message)?;
        for e in &entries {
            println!("   queued as {} for {}", e.id, e.recipient);
        }

        println!(
            "\n3. The spool (this demo has no relay yet: delivery is deferred, nothing is lost):"
        );
        let spool = Spool::at(&config.queue.dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        let rows = loop {
            let in_queue = spool.pending().map_err(|e| e.to_string())?.len();
            if in_queue >= 2 || Instant::now() > deadline {
                break spool.list().map_err(|e| e.to_string())?;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for line in crate::control::queue_table(&rows).lines() {
            println!("   {line}");
        }

        if let Some(first) = rows.first() {
            let entry = spool.read(&first.id).map_err(|e| e.to_string())?;
            println!(
                "\n4. What the spool holds for {} (and what will leave the host):",
                first.id
            );
            let text = String::from_utf8_lossy(&entry.payload);
            for line in text.lines().take(22) {
                println!("   | {line}");
            }
            println!("   | ...");
            println!(
                "\n5. Its decryption, with the recipient's secret key (which the host never has):"
            );
            let plain = decrypt(&secret, &entry.payload)?;
            for line in String::from_utf8_lossy(&plain).lines() {
                println!("   | {line}");
            }
        }

        let _ = stop.send(());
        running
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        println!("\nThe daemon stopped; the demo's files are removed.");
        Ok::<(), String>(())
    })
}

/// Decrypts the armored message inside `message` with `secret`: what the
/// recipient's mail client does.
fn decrypt(secret: &Cert, message: &[u8]) -> Result<Vec<u8>, String> {
    let begin = find(message, b"-----BEGIN PGP MESSAGE-----").ok_or("no OpenPGP message")?;
    let end = find(message, b"-----END PGP MESSAGE-----").ok_or("no OpenPGP message end")? + 25;
    let helper = Helper { secret };
    let mut decryptor = DecryptorBuilder::from_bytes(&message[begin..end])
        .and_then(|b| b.with_policy(&POLICY, None, helper))
        .map_err(|e| format!("cannot decrypt: {e}"))?;
    let mut plain = Vec::new();
    std::io::copy(&mut decryptor, &mut plain).map_err(|e| e.to_string())?;
    Ok(plain)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Helper<'a> {
    secret: &'a Cert,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }

    fn check(&mut self, _: MessageStructure) -> openpgp::Result<()> {
        // Alerts are encrypted, not signed: nothing to verify.
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let keys = self
            .secret
            .keys()
            .with_policy(&POLICY, None)
            .for_transport_encryption()
            .secret();
        for key in keys {
            let mut pair = key.key().clone().into_keypair()?;
            for pkesk in pkesks {
                if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo)
                    && decrypt(algo, &sk)
                {
                    return Ok(None);
                }
            }
        }
        Err(openpgp::anyhow::anyhow!("no key to decrypt with"))
    }
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
