//! A stand-in relay: a small in-process SMTP server with STARTTLS and
//! AUTH, for `relayctl demo` and the benchmark. It is not used to prove
//! that delivery works (the tests talk to aiosmtpd for that); it is fast
//! enough not to be what a benchmark measures.
//!
//! It offers STARTTLS before TLS and AUTH PLAIN/LOGIN after, accepts one
//! user and password, and keeps every message it receives in memory.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::deliver::tls::CertInfo;

/// A message as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The identity the client authenticated as.
    pub login: String,
    pub data: Vec<u8>,
}

/// A running stand-in relay; it stops when the runtime does.
#[derive(Clone)]
pub struct StandIn {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
}

impl StandIn {
    /// Listens on 127.0.0.1 (a free port) with `tls` for STARTTLS.
    pub async fn start(
        tls: Arc<ServerConfig>,
        user: &str,
        password: &str,
    ) -> std::io::Result<StandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let standin = StandIn {
            addr: listener.local_addr()?,
            received: Arc::new(Mutex::new(Vec::new())),
            arrived: Arc::new(Notify::new()),
        };
        let acceptor = TlsAcceptor::from(tls);
        let login = (user.to_string(), password.to_string());
        let s = standin.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let (s, acceptor, login) = (s.clone(), acceptor.clone(), login.clone());
                tokio::spawn(async move {
                    let _ = s.session(tcp, acceptor, login).await;
                });
            }
        });
        Ok(standin)
    }

    /// A TLS server config with a freshly generated self-signed
    /// certificate for `name`, and that certificate's fingerprints (for
    /// the client's `relay.fingerprints`). The key never leaves memory.
    pub fn throwaway_tls(name: &str) -> Result<(Arc<ServerConfig>, CertInfo), String> {
        use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()])
            .map_err(|e| format!("cannot generate a certificate: {e}"))?;
        let cert = generated.cert.der().clone();
        let info = CertInfo::from_der(&cert)?;
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert], key))
                .map_err(|e| format!("cannot set up TLS: {e}"))?;
        Ok((Arc::new(config), info))
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Waits until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return;
            }
            notified.await;
        }
    }

    async fn session(
        &self,
        tcp: tokio::net::TcpStream,
        acceptor: TlsAcceptor,
        login: (String, String),
    ) -> std::io::Result<()> {
        let mut plain = BufReader::new(tcp);
        plain
            .get_mut()
            .write_all(b"220 stand-in relay ESMTP\r\n")
            .await?;
        loop {
            let mut line = String::new();
            if plain.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let verb = line.trim_end().to_ascii_uppercase();
            let reply: &[u8] = if verb.starts_with("EHLO") {
                b"250-stand-in\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
            } else if verb == "STARTTLS" {
                plain.get_mut().write_all(b"220 go ahead\r\n").await?;
                let tls = acceptor.accept(plain.into_inner()).await?;
                return self.secure(BufReader::new(tls), login).await;
            } else if verb == "QUIT" {
                plain.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"530 5.7.0 must issue STARTTLS first\r\n"
            };
            plain.get_mut().write_all(reply).await?;
        }
    }

    async fn secure<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut io: BufReader<S>,
        (user, password): (String, String),
    ) -> std::io::Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let plain_token = {
            let mut t = vec![0u8];
            t.extend_from_slice(user.as_bytes());
            t.push(0);
            t.extend_from_slice(password.as_bytes());
            b64.encode(t)
        };
        let mut authed = false;
        let mut mail_from = String::new();
        let mut rcpt_to = Vec::new();
        loop {
            let mut line = String::new();
            if io.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let text = line.trim_end();
            let verb = text.to_ascii_uppercase();
            let reply: String = if verb.starts_with("EHLO") {
                "250-stand-in\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN\r\n".into()
            } else if let Some(token) = text.strip_prefix("AUTH PLAIN ") {
                authed = token == plain_token;
                if authed {
                    "235 2.7.0 ok\r\n"
                } else {
                    "535 5.7.8 bad credentials\r\n"
                }
                .into()
            } else if verb == "AUTH LOGIN" {
                io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                let mut u = String::new();
                io.read_line(&mut u).await?;
                io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                let mut p = String::new();
                io.read_line(&mut p).await?;
                authed = u.trim_end() == b64.encode(&user) && p.trim_end() == b64.encode(&password);
                if authed {
                    "235 2.7.0 ok\r\n"
                } else {
                    "535 5.7.8 bad credentials\r\n"
                }
                .into()
            } else if !authed
                && (verb.starts_with("MAIL") || verb.starts_with("RCPT") || verb == "DATA")
            {
                "530 5.7.0 authentication required\r\n".into()
            } else if verb.starts_with("MAIL FROM:") {
                mail_from = text[10..].trim().trim_matches(['<', '>']).to_string();
                rcpt_to.clear();
                "250 ok\r\n".into()
            } else if verb.starts_with("RCPT TO:") {
                rcpt_to.push(text[8..].trim().trim_matches(['<', '>']).to_string());
                "250 ok\r\n".into()
            } else if verb == "DATA" {
                io.get_mut().write_all(b"354 go ahead\r\n").await?;
                let data = read_data(&mut io).await?;
                let n = {
                    let mut r = self
                        .received
                        .lock()
                        .map_err(|_| std::io::Error::other("poisoned"))?;
                    r.push(Received {
                        at: Instant::now(),
                        mail_from: mail_from.clone(),
                        rcpt_to: rcpt_to.clone(),
                        login: user.clone(),
                        data,
                    });
                    r.len()
                };
                self.arrived.notify_waiters();
                format!("250 2.0.0 queued as STANDIN{n}\r\n")
            } else if verb == "RSET" || verb == "NOOP" {
                "250 ok\r\n".into()
            } else if verb == "QUIT" {
                io.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                "502 5.5.1 not implemented\r\n".into()
            };
            io.get_mut().write_all(reply.as_bytes()).await?;
        }
    }
}

/// Reads DATA up to its end line, unstuffing dots: the daemon's own DATA
/// reader, on what is buffered.
async fn read_data<R: AsyncRead + Unpin>(io: &mut BufReader<R>) -> std::io::Result<Vec<u8>> {
    use crate::ingest::data::{DataReader, Progress};
    let mut reader = DataReader::new(usize::MAX);
    loop {
        let buffered = io.fill_buf().await?;
        if buffered.is_empty() {
            return Err(std::io::Error::other("EOF in DATA"));
        }
        match reader.feed(buffered) {
            Progress::Done(n) => {
                io.consume(n);
                return Ok(reader.into_body());
            }
            Progress::More => {
                let n = buffered.len();
                io.consume(n);
            }
        }
    }
}
