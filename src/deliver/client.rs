//! The SMTP client that talks to the relay.
//!
//! Order, and the rule behind it: connect, greeting, EHLO; then TLS
//! (STARTTLS, which is mandatory on a `starttls` relay, or TLS from the
//! first byte on an `implicit` one) with the certificate checked; EHLO
//! again; then AUTH (PLAIN or LOGIN, as offered); only then envelopes. A
//! relay that does not offer STARTTLS, or whose certificate fails, gets
//! nothing but EHLO: no AUTH, no MAIL, no downgrade.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use zeroize::Zeroizing;

pub use super::error::{Class, DeliverError, Stage};
use super::tls::{CertInfo, Tls};
use crate::config::{PasswordSource, TlsMode};
use crate::health::CertCheck;
use crate::oauth2::{TokenError, TokenSource};
pub use crate::reply::Reply;
use crate::reply::{Capabilities, ReplyParser};

/// A byte stream to the relay, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to reach and log in to the relay, built once per config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub mode: TlsMode,
    pub tls: Tls,
    pub timeout: Duration,
    /// Our name in EHLO.
    pub helo: String,
    /// The SASL identity; `None` means no AUTH.
    pub identity: Option<String>,
    pub password: PasswordSource,
    /// With `relay.auth = "oauth2"`: the access tokens, in place of the
    /// password (`Err`: why there can be none).
    pub oauth2: Option<Result<Arc<TokenSource>, TokenError>>,
}

impl Settings {
    /// The relay settings of a validated config; `helo` is our host name.
    pub fn from_config(
        config: &crate::config::Config,
        helo: &str,
    ) -> Result<Settings, super::tls::TlsSetupError> {
        Settings::for_relay(&config.relay, helo, &config.queue.dir)
    }

    /// The settings of one relay section (`[relay]` or `[fallback]`).
    /// `spool` is where an OAuth 2.0 sign-in is stored.
    pub fn for_relay(
        relay: &crate::config::Relay,
        helo: &str,
        spool: &std::path::Path,
    ) -> Result<Settings, super::tls::TlsSetupError> {
        Ok(Settings {
            host: relay.host.clone(),
            port: relay.port,
            mode: relay.tls_mode(),
            tls: Tls::new(relay)?,
            timeout: relay.timeout.0,
            helo: helo.to_string(),
            identity: relay.sasl_identity(),
            password: relay.password_source(),
            oauth2: crate::oauth2::Client::for_relay(relay, spool)
                .map(|client| client.map(|c| Arc::new(TokenSource::new(c)))),
        })
    }

    /// `host:port`, for the logs.
    pub fn relay(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// An open, verified, authenticated connection to the relay.
pub struct Connection {
    conn: Conn<Box<dyn Stream>>,
    /// "TLSv1.3" or "TLSv1.2", for the logs.
    pub tls_version: &'static str,
    /// What the relay announced in EHLO over TLS.
    capabilities: Capabilities,
    /// The relay's certificate and how it was trusted.
    pub certificate: Option<(CertInfo, CertCheck)>,
}

/// The command/reply layer over any stream (plain before STARTTLS, TLS after).
struct Conn<S> {
    io: BufReader<S>,
    timeout: Duration,
}

impl Connection {
    /// Connects, secures and logs in, or says at which step it failed.
    pub async fn open(s: &Settings) -> Result<Connection, DeliverError> {
        let addrs = resolve(s).await?;
        let (tcp, _) = connect(s, &addrs).await?;
        let mut conn = Connection::secure(s, tcp).await?;
        conn.login(s).await?;
        Ok(conn)
    }

    /// TLS on a connected socket (STARTTLS or implicit, per the settings),
    /// then EHLO: the steps before AUTH.
    pub async fn secure(s: &Settings, tcp: TcpStream) -> Result<Connection, DeliverError> {
        let (mut conn, tls_version, verifier) = match s.mode {
            TlsMode::Implicit => {
                let (tls, version, verifier) = handshake_with(s, tcp).await?;
                let mut c = Conn::new(Box::new(tls) as Box<dyn Stream>, s.timeout);
                c.expect_code(Stage::Greeting, 220).await?;
                (c, version, verifier)
            }
            TlsMode::Starttls => {
                let tcp = starttls(s, tcp).await?;
                let (tls, version, verifier) = handshake_with(s, tcp).await?;
                (
                    Conn::new(Box::new(tls) as Box<dyn Stream>, s.timeout),
                    version,
                    verifier,
                )
            }
        };
        let capabilities = conn.ehlo(s).await?;
        Ok(Connection {
            conn,
            tls_version,
            capabilities,
            certificate: verifier.trusted(),
        })
    }

    /// AUTH, when the settings have an identity; a no-op otherwise.
    pub async fn login(&mut self, s: &Settings) -> Result<(), DeliverError> {
        let Some(identity) = &s.identity else {
            return Ok(());
        };
        match &s.oauth2 {
            Some(Ok(tokens)) => {
                // A refused token is refreshed, once, before giving up:
                // it may have been revoked or cut short since it was had.
                let mut refused = None;
                for fresh in [false, true] {
                    let token = tokens.get(fresh).await.map_err(DeliverError::OAuth2)?;
                    match self
                        .conn
                        .auth_bearer(identity, &token, &self.capabilities, s)
                        .await?
                    {
                        None => return Ok(()),
                        Some(e) => refused = Some(e),
                    }
                }
                Err(refused.unwrap_or(DeliverError::NoAuthMechanism(String::new())))
            }
            Some(Err(e)) => Err(DeliverError::OAuth2(e.clone())),
            None => {
                self.conn
                    .auth(identity, &s.password, &self.capabilities)
                    .await
            }
        }
    }

    /// MAIL FROM and RCPT TO, without data: what `relayctl test --no-send`
    /// checks. Follow with [`Connection::rset`].
    pub async fn envelope(&mut self, from: &str, to: &str) -> Result<(), DeliverError> {
        for (stage, line) in [
            (Stage::Mail, format!("MAIL FROM:<{from}>")),
            (Stage::Rcpt, format!("RCPT TO:<{to}>")),
        ] {
            let reply = self.conn.command(stage, &line).await?;
            if reply.code != 250 {
                return Err(DeliverError::Rejected { stage, reply });
            }
        }
        Ok(())
    }

    /// Connects as far as the relay's certificate and returns it, without
    /// judging it (`relayctl fingerprint`), then says QUIT and ends the TLS
    /// session with close_notify. Give it settings whose TLS is
    /// [`Tls::record_only`].
    pub async fn certificate(s: &Settings) -> Result<CertInfo, DeliverError> {
        let (tcp, _) = connect(s, &resolve(s).await?).await?;
        let tcp = match s.mode {
            TlsMode::Implicit => tcp,
            TlsMode::Starttls => starttls(s, tcp).await?,
        };
        let (tls, _, verifier) = handshake_with(s, tcp).await?;
        let cert = verifier.presented().ok_or_else(|| {
            DeliverError::Tls("the handshake succeeded without showing a certificate".into())
        })?;
        let mut conn = Conn::new(tls, s.timeout);
        // Best effort: the certificate is what was asked for.
        if s.mode == TlsMode::Implicit {
            let _ = conn.read_reply(Stage::Greeting).await;
        }
        let _ = conn.command(Stage::Rset, "QUIT").await;
        let mut tls = conn.io.into_inner();
        let _ = tokio::time::timeout(s.timeout, tls.shutdown()).await;
        Ok(cert)
    }

    /// One transaction: MAIL, RCPT, DATA with the payload, after RSET when
    /// `reset` (a connection that carried a transaction before). Returns
    /// the relay's final reply (with its queue id).
    ///
    /// When the relay offers PIPELINING (RFC 2920), RSET, MAIL, RCPT and
    /// DATA go out in one write and their replies are read in order: two
    /// round trips per message instead of five.
    pub async fn send(
        &mut self,
        from: &str,
        to: &str,
        payload: &[u8],
        reset: bool,
    ) -> Result<Reply, DeliverError> {
        self.begin(from, to, reset).await?;
        self.data(payload).await
    }

    /// The first half of [`Connection::send`]: (RSET,) MAIL, RCPT and
    /// DATA, up to the relay's 354. Until [`Connection::data`] sends the
    /// final dot, the relay has nothing it could deliver.
    pub async fn begin(&mut self, from: &str, to: &str, reset: bool) -> Result<(), DeliverError> {
        let mut commands = Vec::with_capacity(4);
        if reset {
            commands.push((Stage::Rset, "RSET".to_string(), 250));
        }
        commands.extend([
            (Stage::Mail, format!("MAIL FROM:<{from}>"), 250),
            (Stage::Rcpt, format!("RCPT TO:<{to}>"), 250),
            (Stage::Data, "DATA".to_string(), 354),
        ]);
        let pipelining = self.capabilities.offers("PIPELINING");
        let c = &mut self.conn;
        if pipelining {
            let batch: String = commands
                .iter()
                .map(|(_, l, _)| format!("{l}\r\n"))
                .collect();
            c.write(Stage::Mail, batch.as_bytes()).await?;
            // Every reply is read, so the next transaction starts in step;
            // the first refusal is the one reported.
            let mut refused = None;
            let mut data_accepted = false;
            for (stage, _, code) in &commands {
                let reply = c.read_reply(*stage).await?;
                data_accepted = *stage == Stage::Data && reply.code == 354;
                if reply.code != *code && refused.is_none() {
                    refused = Some(DeliverError::Rejected {
                        stage: *stage,
                        reply,
                    });
                }
            }
            if let Some(e) = refused {
                // A relay that said 354 after refusing the recipient gets
                // an empty message, ended at once, and its reply ignored.
                if data_accepted {
                    c.write(Stage::Data, b".\r\n").await?;
                    c.read_reply(Stage::Data).await?;
                }
                return Err(e);
            }
        } else {
            for (stage, line, code) in commands {
                let reply = c.command(stage, &line).await?;
                if reply.code != code {
                    return Err(DeliverError::Rejected { stage, reply });
                }
            }
        }
        Ok(())
    }

    /// The second half of [`Connection::send`]: the message and its final
    /// dot, and the relay's verdict.
    pub async fn data(&mut self, payload: &[u8]) -> Result<Reply, DeliverError> {
        let c = &mut self.conn;
        // In pieces, so that a 10 MiB message is not copied whole; the
        // final dot goes out with the last piece (an alert is one piece:
        // one write, one TLS record).
        let mut stuffer = DotStuffer::default();
        let mut chunk = Vec::with_capacity(DATA_CHUNK + DATA_CHUNK / 8);
        for piece in payload.chunks(DATA_CHUNK) {
            if !chunk.is_empty() {
                c.write(Stage::Data, &chunk).await?;
                chunk.clear();
            }
            stuffer.feed(piece, &mut chunk);
        }
        stuffer.finish(&mut chunk);
        c.write(Stage::Data, &chunk).await?;
        let reply = c.read_reply(Stage::DataEnd).await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(DeliverError::Rejected {
                stage: Stage::DataEnd,
                reply,
            })
        }
    }

    /// RSET between transactions; an error means the connection is gone.
    pub async fn rset(&mut self) -> Result<(), DeliverError> {
        self.conn
            .command_expect(Stage::Rset, "RSET", 250)
            .await
            .map(|_| ())
    }

    pub async fn quit(mut self) {
        let _ = self.conn.command(Stage::Rset, "QUIT").await;
    }
}

impl<S: Stream> Conn<S> {
    fn new(stream: S, timeout: Duration) -> Conn<S> {
        Conn {
            io: BufReader::new(stream),
            timeout,
        }
    }

    /// One reply, within `timeout` for the whole of it, and within the
    /// sizes of [`super::reply`]: a relay that sends an endless line, or
    /// drips a long reply, is cut off with the reason.
    async fn read_reply(&mut self, stage: Stage) -> Result<Reply, DeliverError> {
        let deadline = Instant::now() + self.timeout;
        let mut parser = ReplyParser::default();
        let mut line = Vec::with_capacity(128);
        loop {
            line.clear();
            self.read_line(stage, deadline, &mut line).await?;
            match parser.line(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(why) => return Err(DeliverError::Protocol { stage, line: why }),
            }
        }
    }

    /// Reads up to and including the next LF into `line`, but never more
    /// than [`crate::reply::MAX_LINE`] bytes (plus one, so the parser can
    /// say the line was too long).
    async fn read_line(
        &mut self,
        stage: Stage,
        deadline: Instant,
        line: &mut Vec<u8>,
    ) -> Result<(), DeliverError> {
        loop {
            let available = tokio::time::timeout_at(deadline, self.io.fill_buf())
                .await
                .map_err(|_| DeliverError::Timeout(stage))?
                .map_err(|e| DeliverError::Io {
                    stage,
                    error: e.to_string(),
                })?;
            if available.is_empty() {
                return Err(DeliverError::Io {
                    stage,
                    error: "the relay closed the connection".into(),
                });
            }
            let room = crate::reply::MAX_LINE + 1 - line.len();
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(pos) if pos < room => (pos + 1, true),
                _ => (available.len().min(room), false),
            };
            line.extend_from_slice(&available[..take]);
            self.io.consume(take);
            if done || line.len() > crate::reply::MAX_LINE {
                return Ok(());
            }
        }
    }

    async fn write(&mut self, stage: Stage, bytes: &[u8]) -> Result<(), DeliverError> {
        let io = self.io.get_mut();
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| DeliverError::Timeout(stage))?
            .map_err(|e| DeliverError::Io {
                stage,
                error: e.to_string(),
            })
    }

    async fn command(&mut self, stage: Stage, line: &str) -> Result<Reply, DeliverError> {
        self.write(stage, format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(stage).await
    }

    async fn expect_code(&mut self, stage: Stage, code: u16) -> Result<Reply, DeliverError> {
        let reply = self.read_reply(stage).await?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(DeliverError::Rejected { stage, reply })
        }
    }

    async fn command_expect(
        &mut self,
        stage: Stage,
        line: &str,
        code: u16,
    ) -> Result<Reply, DeliverError> {
        let reply = self.command(stage, line).await?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(DeliverError::Rejected { stage, reply })
        }
    }

    /// EHLO; returns what the relay announced.
    async fn ehlo(&mut self, s: &Settings) -> Result<Capabilities, DeliverError> {
        let reply = self
            .command_expect(Stage::Ehlo, &format!("EHLO {}", s.helo), 250)
            .await?;
        Ok(Capabilities::from_ehlo(&reply))
    }

    async fn auth(
        &mut self,
        identity: &str,
        password: &PasswordSource,
        caps: &Capabilities,
    ) -> Result<(), DeliverError> {
        let offered = caps.auth_mechanisms();
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let password = password.read().map_err(DeliverError::Password)?;
        let reply = if offered.iter().any(|m| m == "PLAIN") {
            let mut token = Zeroizing::new(Vec::with_capacity(identity.len() + password.len() + 2));
            token.push(0);
            token.extend_from_slice(identity.as_bytes());
            token.push(0);
            token.extend_from_slice(password.as_bytes());
            let line = Zeroizing::new(format!("AUTH PLAIN {}", b64(&token)));
            self.command(Stage::Auth, &line).await?
        } else if offered.iter().any(|m| m == "LOGIN") {
            let first = self.command(Stage::Auth, "AUTH LOGIN").await?;
            if first.code != 334 {
                return Err(DeliverError::AuthFailed(first));
            }
            let user = self.command(Stage::Auth, &b64(identity.as_bytes())).await?;
            if user.code != 334 {
                return Err(DeliverError::AuthFailed(user));
            }
            let line = Zeroizing::new(b64(password.as_bytes()));
            self.command(Stage::Auth, &line).await?
        } else {
            return Err(DeliverError::NoAuthMechanism(if offered.is_empty() {
                "no AUTH at all".into()
            } else {
                offered.join(" ")
            }));
        };
        if reply.code == 235 {
            Ok(())
        } else {
            Err(DeliverError::AuthFailed(reply))
        }
    }
}

impl<S: Stream> Conn<S> {
    /// A command that holds a secret: the line is built and sent from
    /// zeroized memory.
    async fn command_secret(&mut self, stage: Stage, line: &str) -> Result<Reply, DeliverError> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(stage, &bytes).await?;
        self.read_reply(stage).await
    }

    /// SASL OAUTHBEARER (RFC 7628) when the relay offers it, else XOAUTH2
    /// (Microsoft offers only that), with `token` for `user`. `Ok(None)`
    /// is success, `Ok(Some(why))` the relay's refusal (the connection is
    /// still usable for another try), `Err` a failure of the connection.
    async fn auth_bearer(
        &mut self,
        user: &str,
        token: &str,
        caps: &Capabilities,
        s: &Settings,
    ) -> Result<Option<DeliverError>, DeliverError> {
        let offered = caps.auth_mechanisms();
        let oauthbearer = offered.iter().any(|m| m == "OAUTHBEARER");
        if !oauthbearer && !offered.iter().any(|m| m == "XOAUTH2") {
            return Err(DeliverError::NoAuthMechanism(format!(
                "{}; relay.auth = \"oauth2\" needs XOAUTH2 or OAUTHBEARER",
                if offered.is_empty() {
                    "no AUTH at all".to_string()
                } else {
                    offered.join(" ")
                }
            )));
        }
        let (name, payload) = if oauthbearer {
            // RFC 5801's saslname: "," and "=" escaped.
            let user = user.replace('=', "=3D").replace(',', "=2C");
            (
                "OAUTHBEARER",
                Zeroizing::new(format!(
                    "n,a={user},\x01host={}\x01port={}\x01auth=Bearer {token}\x01\x01",
                    s.host, s.port
                )),
            )
        } else {
            (
                "XOAUTH2",
                Zeroizing::new(format!("user={user}\x01auth=Bearer {token}\x01\x01")),
            )
        };
        let encoded =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(payload.as_bytes()));
        // RFC 4954: no initial response on a line longer than SMTP's 512
        // octets; Microsoft's tokens (2 to 5 KB) go after a 334.
        let inline = Zeroizing::new(format!("AUTH {name} {}", &*encoded));
        let reply = if inline.len() + 2 <= 512 {
            self.command_secret(Stage::Auth, &inline).await?
        } else {
            let go = self.command(Stage::Auth, &format!("AUTH {name}")).await?;
            if go.code != 334 {
                return Ok(Some(DeliverError::OAuth2Refused {
                    reply: go,
                    status: None,
                }));
            }
            self.command_secret(Stage::Auth, &encoded).await?
        };
        match reply.code {
            235 => Ok(None),
            // A temporary refusal (454 4.7.0, 421): not the token's fault.
            code if code < 500 && code != 334 => Err(DeliverError::Rejected {
                stage: Stage::Auth,
                reply,
            }),
            // The error challenge (RFC 7628 3.2.2): the client answers
            // (an empty line for XOAUTH2, ^A for OAUTHBEARER) and the
            // relay then says its final word.
            334 => {
                let status = challenge_status(&reply);
                let answer = if oauthbearer { "AQ==" } else { "" };
                let last = self.command(Stage::Auth, answer).await?;
                Ok(Some(DeliverError::OAuth2Refused {
                    reply: last,
                    status,
                }))
            }
            _ => Ok(Some(DeliverError::OAuth2Refused {
                reply,
                status: None,
            })),
        }
    }
}

/// The `status` of an OAuth error challenge (base64 JSON), for the log.
fn challenge_status(reply: &Reply) -> Option<String> {
    let text = reply.lines.first()?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let status = value.get("status")?;
    let status = status
        .as_str()
        .map_or_else(|| status.to_string(), str::to_string);
    Some(
        status
            .chars()
            .filter(|c| !c.is_control())
            .take(40)
            .collect(),
    )
}

/// The plain part of a `starttls` connection: greeting, EHLO, STARTTLS.
/// Returns the socket, ready for the TLS handshake.
async fn starttls(s: &Settings, tcp: TcpStream) -> Result<TcpStream, DeliverError> {
    let mut plain = Conn::new(tcp, s.timeout);
    plain.expect_code(Stage::Greeting, 220).await?;
    let caps = plain.ehlo(s).await?;
    if !caps.offers("STARTTLS") {
        let _ = plain.command(Stage::Rset, "QUIT").await;
        return Err(DeliverError::NoStartTls);
    }
    plain
        .command_expect(Stage::StartTls, "STARTTLS", 220)
        .await?;
    // Nothing the relay sent before TLS may be read as if it came after it
    // (the STARTTLS command injection of CVE-2011-0411).
    if !plain.io.buffer().is_empty() {
        return Err(DeliverError::Protocol {
            stage: Stage::StartTls,
            line: "data after the STARTTLS reply".into(),
        });
    }
    Ok(plain.io.into_inner())
}

/// The relay's addresses.
pub async fn resolve(s: &Settings) -> Result<Vec<SocketAddr>, DeliverError> {
    let addrs: Vec<SocketAddr> = tokio::time::timeout(
        s.timeout,
        tokio::net::lookup_host((s.host.as_str(), s.port)),
    )
    .await
    .map_err(|_| DeliverError::Timeout(Stage::Resolve))?
    .map_err(|e| DeliverError::Resolve(e.to_string()))?
    .collect();
    if addrs.is_empty() {
        return Err(DeliverError::Resolve("no address".into()));
    }
    Ok(addrs)
}

/// A TCP connection to the first of `addrs` that answers.
pub async fn connect(
    s: &Settings,
    addrs: &[SocketAddr],
) -> Result<(TcpStream, SocketAddr), DeliverError> {
    let mut last = DeliverError::Resolve("no address".into());
    for &addr in addrs {
        match tokio::time::timeout(s.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok((tcp, addr));
            }
            Ok(Err(e)) => {
                last = DeliverError::Connect {
                    addr,
                    error: e.to_string(),
                }
            }
            Err(_) => last = DeliverError::Timeout(Stage::Connect),
        }
    }
    Err(last)
}

/// The TLS handshake on a connected socket; with the verifier, to ask
/// what the relay presented.
async fn handshake_with(
    s: &Settings,
    tcp: TcpStream,
) -> Result<
    (
        tokio_rustls::client::TlsStream<TcpStream>,
        &'static str,
        Arc<super::tls::Verifier>,
    ),
    DeliverError,
> {
    let (connector, verifier): (_, Arc<super::tls::Verifier>) = s
        .tls
        .connector()
        .map_err(|e| DeliverError::Tls(e.to_string()))?;
    let result = tokio::time::timeout(s.timeout, connector.connect(s.tls.server_name(), tcp))
        .await
        .map_err(|_| DeliverError::Timeout(Stage::Tls))?;
    match result {
        Ok(tls) => {
            let version = match tls.get_ref().1.protocol_version() {
                Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "TLS",
            };
            Ok((tls, version, verifier))
        }
        Err(e) => {
            let rustls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<tokio_rustls::rustls::Error>());
            match rustls_error {
                Some(tokio_rustls::rustls::Error::InvalidCertificate(error)) => {
                    Err(DeliverError::Certificate {
                        error: error.clone(),
                        presented: verifier.presented().map(Box::new),
                        pinned: s.tls.pinned(),
                    })
                }
                _ => Err(DeliverError::Tls(e.to_string())),
            }
        }
    }
}

/// How much of a message goes to the relay per write.
const DATA_CHUNK: usize = 64 << 10;

/// The payload as DATA carries it: CRLF line ends, leading dots doubled,
/// and the final "." line.
pub fn dot_stuff(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / 32 + 8);
    let mut stuffer = DotStuffer::default();
    stuffer.feed(payload, &mut out);
    stuffer.finish(&mut out);
    out
}

/// [`dot_stuff`] in pieces: a line end split between two pieces is one
/// line end.
#[derive(Debug)]
struct DotStuffer {
    at_line_start: bool,
    /// The last byte was a CR (already written as CRLF).
    after_cr: bool,
    empty: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            after_cr: false,
            empty: true,
        }
    }
}

impl DotStuffer {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            let after_cr = std::mem::take(&mut self.after_cr);
            match b {
                // The LF of a CRLF whose CR was written as CRLF.
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    self.after_cr = b == b'\r';
                }
                b => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.at_line_start = false;
                }
            }
            self.empty = false;
        }
    }

    /// The end: a line end if the message lacks a last one, then ".".
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.empty || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_the_final_dot_a_5xx_fails_and_a_lost_reply_defers_with_a_warning() {
        let reply = Reply {
            code: 554,
            lines: vec!["5.7.1 rejected".into()],
        };
        let rejected = DeliverError::Rejected {
            stage: Stage::DataEnd,
            reply,
        };
        assert!(rejected.is_permanent());
        let lost = DeliverError::Io {
            stage: Stage::DataEnd,
            error: "connection reset".into(),
        };
        assert!(!lost.is_permanent() && !lost.before_data());
        let text = lost.to_string();
        assert!(
            text.starts_with("connection lost at end of DATA") && text.contains("twice"),
            "{text}"
        );
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\n..b\nc"), b"..a\r\n...b\r\nc\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
        assert_eq!(dot_stuff(b"x\r\n"), b"x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\rb\r\r\n.c"), b"a\r\nb\r\n\r\n..c\r\n.\r\n");
    }

    #[test]
    fn dot_stuffing_in_pieces_is_dot_stuffing_whole() {
        let message = b"From: a\r\n\r\n.line\r\n..two\r\nbare\nlf\rcr\r\n.\r\nend".repeat(7);
        let whole = dot_stuff(&message);
        for size in [1, 2, 3, 7, 64] {
            let mut out = Vec::new();
            let mut s = DotStuffer::default();
            for piece in message.chunks(size) {
                s.feed(piece, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, whole, "pieces of {size}");
        }
    }
}
