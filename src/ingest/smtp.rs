//! The SMTP server's I/O: the accept loop, one task per connection, and
//! the limits that keep one client from hurting another.
//!
//! - Each connection holds a permit of a semaphore sized by
//!   `listen.max_connections`; a client over the limit gets 421 and is
//!   closed.
//! - A client silent for `listen.idle_timeout` gets 421 and is closed.
//! - Replies are flushed before every read, so a client that sends one
//!   command and waits for one reply always gets it; and so a client that
//!   does not read its replies is not read either. When a reply cannot be
//!   written within [`write_timeout`] (the client's buffers are full: it
//!   pushes commands and never reads), the connection is dropped, and its
//!   slot is free again.
//! - No session lasts longer than [`SESSION_IDLE_TIMES`] times the idle
//!   timeout: a client that drips a byte at a time cannot hold a slot for
//!   ever.
//! - A command line longer than [`MAX_COMMAND_LINE`] gets 500 and is
//!   skipped; a message over `listen.max_message_size` is read to its end
//!   (so the session stays in step) and refused with 552.
//! - Message bytes in memory, with what their encryption will need, come
//!   out of one budget for all sessions ([`Budget`], `listen.max_in_flight`).
//!   A message that does not fit is read to its end, discarded and
//!   refused with 452 4.3.1: its client sends it again later, and the
//!   daemon is never killed for memory.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::data::{DataReader, Progress};
use super::session::{DataFailure, Reply, Session, Step, data_reply};
use crate::context::Context;
use crate::spool::Arrivals;
use crate::spool::{Entry, Spool, SpoolError};

/// The longest command line accepted, CRLF included (Postfix's
/// `line_length_limit` default).
pub const MAX_COMMAND_LINE: usize = 2048;

/// A session ends after this many idle timeouts (30 minutes by default).
pub const SESSION_IDLE_TIMES: u32 = 6;

/// How long a reply may take to leave: the idle timeout, at most 10 s. A
/// loopback client that reads its replies never comes near it.
pub fn write_timeout(idle: Duration) -> Duration {
    idle.min(Duration::from_secs(10))
}

/// Message bytes in memory across all sessions (`listen.max_in_flight`).
/// Counted in KiB, as the semaphore's permits.
///
/// A message whose needs are larger than the whole budget takes all of it
/// (when nothing else is in flight), so that any message the size limit
/// allows can be taken.
#[derive(Debug, Clone)]
pub struct Budget {
    kib: Option<Arc<Semaphore>>,
    total_kib: usize,
}

impl Budget {
    pub fn new(bytes: u64) -> Budget {
        let total_kib = usize::try_from(bytes / 1024)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Budget {
            kib: Some(Arc::new(Semaphore::new(total_kib))),
            total_kib,
        }
    }

    /// No limit: `sendmail -bs` serves one session in its own process.
    pub fn unlimited() -> Budget {
        Budget {
            kib: None,
            total_kib: 0,
        }
    }

    /// Grows `held` to cover `bytes` (at most the whole budget); false
    /// when the budget cannot.
    fn cover(&self, held: &mut Held, bytes: usize) -> bool {
        let Some(sem) = &self.kib else {
            return true;
        };
        let want = bytes.div_ceil(1024).min(self.total_kib);
        if want <= held.kib {
            return true;
        }
        let more = u32::try_from(want - held.kib).unwrap_or(u32::MAX);
        match sem.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                match &mut held.permit {
                    Some(p) => p.merge(permit),
                    None => held.permit = Some(permit),
                }
                held.kib = want;
                true
            }
            Err(_) => false,
        }
    }
}

/// What one message holds of the [`Budget`]; given back when dropped.
#[derive(Debug, Default)]
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    kib: usize,
}

/// What encrypting a message of `len` bytes for `recipients` holds in
/// memory at most: the received bytes, and about 1.4 times their size in
/// armored ciphertext per recipient (the plaintext is streamed into the
/// encryption, and the outgoing message is wrapped around the armor in
/// place: tests/faults, burst-large, measures it).
fn working_set(len: usize, recipients: usize) -> usize {
    len.saturating_add(len.saturating_mul(3) / 2 * recipients)
}

/// Where accepted messages go.
#[derive(Debug, Clone)]
pub enum Sink {
    /// The daemon: straight into `queue/`, and tell the queue runner.
    Queue(Spool, Arc<Arrivals>),
    /// `sendmail -bs`: into `incoming/`, for the daemon to check and pick up.
    Incoming(super::sendmail::Dropbox),
}

impl Sink {
    /// Encrypts a received message for each recipient and stores it
    /// durably; returns the entries stored.
    fn store(
        &self,
        ctx: &Context,
        sender: &str,
        recipients: &[crate::route::Recipient],
        body: &[u8],
    ) -> Result<Vec<Entry>, SpoolError> {
        match self {
            Sink::Queue(spool, arrivals) => {
                let routed = super::route(ctx, recipients, body);
                let now = std::time::SystemTime::now();
                let plan = match &routed.journalist {
                    Some(journalists) => {
                        super::journalist::plan(ctx, spool, sender, journalists, body, now)
                    }
                    None => super::journalist::Plan {
                        entries: super::entries_for(ctx, sender, &routed.recipients, body),
                        stamp: false,
                    },
                };
                spool.commit(&plan.entries)?;
                arrivals.queued(&plan.entries);
                // Once queued: a notification whose stamp is lost is sent
                // again the next day, never lost.
                if plan.stamp
                    && let Err(e) = super::journalist::stamp(spool, now)
                {
                    tracing::error!("cannot record the journalist notification's stamp: {e}");
                }
                Ok(plan.entries)
            }
            Sink::Incoming(dropbox) => {
                let entries = super::submissions(ctx, sender, recipients, body);
                dropbox.submit(&entries)?;
                Ok(entries)
            }
        }
    }
}

/// Accepts connections until `shutdown` turns true. Each connection uses
/// the config current when it was accepted.
pub async fn listen(
    listener: TcpListener,
    ctx: watch::Receiver<Arc<Context>>,
    sink: Sink,
    permits: Arc<Semaphore>,
    budget: Budget,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "too many connections; refused with 421");
            tokio::spawn(async move {
                let reply = Reply::new(421, "4.7.0 Too many connections, try again later");
                let _ = stream.write_all(&reply.to_wire()).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let ctx = ctx.borrow().clone();
        let sink = sink.clone();
        let budget = budget.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match serve(stream, ctx, sink, budget, shutdown).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    tracing::warn!(client = %peer, "dropped a client: {e}");
                }
                Err(e) => {
                    tracing::debug!(client = %peer, error = %e, "connection ended with an error")
                }
            }
            drop(permit);
        });
    }
}

/// What reading the next command produced.
enum Input {
    Line(Vec<u8>),
    TooLong,
    Eof,
    Idle,
    /// The session's deadline passed.
    Expired,
    Shutdown,
}

/// One client connection's buffers and clocks.
struct Conn<IO> {
    io: IO,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    idle: Duration,
    /// When the session must end, whatever the client is doing.
    deadline: Instant,
}

/// Reading one message's data: the bytes, and what they hold of the budget.
struct Data<'a> {
    reader: DataReader,
    budget: &'a Budget,
    held: Held,
    /// The budget ran out: the rest is read and dropped.
    starved: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    /// Sends pending replies. A client that does not take them within
    /// the write timeout is not reading: `TimedOut`, and the caller drops it.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let write = async {
                self.io.write_all(&self.out).await?;
                self.io.flush().await
            };
            match tokio::time::timeout(write_timeout(self.idle), write).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "it stopped reading its replies",
                    ));
                }
            }
            self.out.clear();
        }
        Ok(())
    }

    fn queue_reply(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&reply.to_wire());
    }

    /// Flushes pending replies, then reads more input, until the idle
    /// timeout or the session's deadline, whichever comes first.
    async fn fill(&mut self, shutdown: Option<&mut watch::Receiver<bool>>) -> io::Result<Fill> {
        self.flush().await?;
        let idle_until = Instant::now() + self.idle;
        let until = idle_until.min(self.deadline);
        let read = tokio::time::timeout_at(until, self.io.read_buf(&mut self.inbuf));
        let result = match shutdown {
            Some(rx) => tokio::select! {
                r = read => r,
                _ = rx.wait_for(|stop| *stop) => return Ok(Fill::Shutdown),
            },
            None => read.await,
        };
        match result {
            Err(_) if until == self.deadline => Ok(Fill::Expired),
            Err(_) => Ok(Fill::Idle),
            Ok(Ok(0)) => Ok(Fill::Eof),
            Ok(Ok(_)) => Ok(Fill::Data),
            Ok(Err(e)) => Err(e),
        }
    }

    /// The next command line, bounded by [`MAX_COMMAND_LINE`].
    async fn next_line(&mut self, shutdown: &mut watch::Receiver<bool>) -> io::Result<Input> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.inbuf.drain(..=pos).collect();
                if discarding || line.len() > MAX_COMMAND_LINE {
                    return Ok(Input::TooLong);
                }
                return Ok(Input::Line(line));
            }
            if self.inbuf.len() > MAX_COMMAND_LINE {
                // Keep memory bounded: drop what we have, remember the line
                // was too long, and answer once its end arrives.
                self.inbuf.clear();
                discarding = true;
            }
            let stop = if discarding {
                None
            } else {
                Some(&mut *shutdown)
            };
            match self.fill(stop).await? {
                Fill::Data => {}
                Fill::Eof => return Ok(Input::Eof),
                Fill::Idle => return Ok(Input::Idle),
                Fill::Expired => return Ok(Input::Expired),
                Fill::Shutdown => return Ok(Input::Shutdown),
            }
        }
    }

    /// Reads message data up to the end line, keeping what the budget
    /// covers. `None` on EOF, timeout or the session's deadline.
    async fn read_data(&mut self, data: &mut Data<'_>) -> io::Result<Option<()>> {
        loop {
            let progress = data.reader.feed(&self.inbuf);
            if !data.starved && !data.budget.cover(&mut data.held, data.reader.len()) {
                // Keep reading to the end line, so the session stays in
                // step, but keep nothing more.
                data.starved = true;
                data.reader.discard();
            }
            match progress {
                Progress::Done(n) => {
                    self.inbuf.drain(..n);
                    return Ok(Some(()));
                }
                Progress::More => self.inbuf.clear(),
            }
            match self.fill(None).await? {
                Fill::Data => {}
                Fill::Eof | Fill::Idle | Fill::Expired | Fill::Shutdown => return Ok(None),
            }
        }
    }
}

enum Fill {
    Data,
    Eof,
    Idle,
    Expired,
    Shutdown,
}

/// Serves one SMTP session on any byte stream (a TCP connection, or
/// stdin/stdout for `sendmail -bs`).
pub async fn serve<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    ctx: Arc<Context>,
    sink: Sink,
    budget: Budget,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let idle = ctx.config.listen.idle_timeout.0;
    let mut conn = Conn {
        io,
        inbuf: Vec::with_capacity(4096),
        out: Vec::with_capacity(512),
        idle,
        deadline: Instant::now() + idle * SESSION_IDLE_TIMES,
    };
    let mut session = Session::new();
    conn.queue_reply(&Session::banner(&ctx));
    loop {
        let line = match conn.next_line(&mut shutdown).await? {
            Input::Line(line) => line,
            Input::TooLong => {
                conn.queue_reply(&Reply::new(500, "5.5.2 Error: line too long"));
                continue;
            }
            Input::Eof => return Ok(()),
            Input::Idle => {
                conn.queue_reply(&Reply::new(421, "4.4.2 Error: timeout exceeded, closing"));
                return conn.flush().await;
            }
            Input::Expired => return expired(&mut conn).await,
            Input::Shutdown => {
                conn.queue_reply(&Reply::new(
                    421,
                    "4.3.2 Service shutting down, try again later",
                ));
                return conn.flush().await;
            }
        };
        match session.command(&ctx, &line) {
            Step::Reply(reply) => conn.queue_reply(&reply),
            Step::Close(reply) => {
                conn.queue_reply(&reply);
                return conn.flush().await;
            }
            Step::Data(reply) => {
                conn.queue_reply(&reply);
                let max = ctx.config.listen.max_message_size.0;
                let mut data = Data {
                    reader: DataReader::new(usize::try_from(max).unwrap_or(usize::MAX)),
                    budget: &budget,
                    held: Held::default(),
                    starved: false,
                };
                if conn.read_data(&mut data).await?.is_none() {
                    // The client went away or stalled mid-message: nothing
                    // was acknowledged, so nothing is kept.
                    if Instant::now() >= conn.deadline {
                        return expired(&mut conn).await;
                    }
                    conn.queue_reply(&Reply::new(421, "4.4.2 Error: timeout exceeded, closing"));
                    return conn.flush().await;
                }
                let envelope = session.take_envelope();
                let result = if data.reader.too_big() {
                    Err(DataFailure::TooBig(max))
                } else if data.starved
                    || !budget.cover(
                        &mut data.held,
                        working_set(data.reader.len(), envelope.recipients.len()),
                    )
                {
                    tracing::warn!(
                        size = data.reader.len(),
                        "message refused for now (452): more message bytes in flight than \
                         listen.max_in_flight allows"
                    );
                    Err(DataFailure::Busy)
                } else {
                    accept(
                        &ctx,
                        &sink,
                        &envelope.sender,
                        &envelope.recipients,
                        data.reader.into_body(),
                    )
                    .await
                };
                drop(data.held);
                conn.queue_reply(&data_reply(&result));
            }
        }
    }
}

/// Ends a session that reached its deadline.
async fn expired<IO: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<IO>) -> io::Result<()> {
    conn.queue_reply(&Reply::new(421, "4.4.2 Error: session too long, closing"));
    conn.flush().await?;
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "its session reached its deadline",
    ))
}

/// Builds the outgoing entries and stores them durably, off the async
/// threads (encryption and fsync both block).
async fn accept(
    ctx: &Arc<Context>,
    sink: &Sink,
    sender: &str,
    recipients: &[crate::route::Recipient],
    body: Vec<u8>,
) -> Result<Vec<String>, DataFailure> {
    let ctx = ctx.clone();
    let sink = sink.clone();
    let sender = sender.to_string();
    let recipients = recipients.to_vec();
    let stored =
        tokio::task::spawn_blocking(move || sink.store(&ctx, &sender, &recipients, &body)).await;
    match stored {
        Ok(Ok(entries)) => {
            super::log_stored(&entries, "smtp");
            Ok(entries.into_iter().map(|e| e.id.to_string()).collect())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "message not queued");
            Err(match e {
                SpoolError::Full { .. } => DataFailure::SpoolFull,
                _ => DataFailure::Spool,
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "message not queued: the spool task failed");
            Err(DataFailure::Spool)
        }
    }
}
