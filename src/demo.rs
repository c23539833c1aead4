//! `relayctl demo`: the path a message takes, on loopback, with no setup.
//!
//! It writes a throwaway config and spool in a temporary directory, starts
//! the real daemon code on a free loopback port, submits an OSSEC-style
//! alert over SMTP (with OSSEC's own spelling of the commands) and a
//! cron-style message through the `sendmail` code path, shows each SMTP
//! exchange and what the spool then holds, and removes everything.
//!
//! This release covers receiving and spooling. Encryption and delivery
//! through a relay join the demo as they land.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::daemon::Daemon;
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

fn demo_config(dir: &Path) -> String {
    format!(
        r#"[listen]
addresses = ["127.0.0.1:0"]
hostname = "mon.example.org"

[queue]
dir = "{dir}/spool"

[relay]
host = "relay.example.net"
sender = "OSSEC HIDS <ossec@example.net>"

[[recipients]]
address = "alerts@example.org"
key = "{dir}/alerts.asc"
fingerprint = "0000000000000000000000000000000000000000"

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
    std::fs::write(&config_path, demo_config(&dir.0))
        .map_err(|e| format!("cannot write the demo config: {e}"))?;
    let config = Config::load(&config_path).map_err(|e| e.to_string())?;
    println!("alert-relay demo: local mail in, durably spooled");
    println!("  config   {}", config_path.display());
    println!("  spool    {}", config.queue.dir.display());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let daemon = Daemon::start(&config_path, config.clone())
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

        println!("\n3. The spool, once the daemon picked up sendmail's submission:");
        let spool = Spool::at(&config.queue.dir);
        let deadline = Instant::now() + Duration::from_secs(10);
        let rows = loop {
            let rows = spool.list().map_err(|e| e.to_string())?;
            if rows.iter().all(|r| r.state == "queued") || Instant::now() > deadline {
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
        println!("\nThe daemon stopped; the demo's files are removed.");
        Ok::<(), String>(())
    })
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
