//! The SMTP server's I/O: the accept loop, one task per connection, and
//! the limits that keep one client from hurting another.
//!
//! Each connection holds a permit of a semaphore sized by
//! `listen.max_connections`; a client over the limit gets 421 and is
//! closed. A client silent for `listen.idle_timeout` gets 421 and is
//! closed. A command line longer than [`MAX_COMMAND_LINE`] gets 500 and is
//! skipped; a message over `listen.max_message_size` is read to its end
//! (so the session stays in step) and refused with 552. Replies are
//! flushed before every read, so a client that sends one command and waits
//! for one reply always gets it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::Context;
use super::data::{DataReader, Progress};
use super::session::{DataFailure, Reply, Session, Step, data_reply};
use crate::deliver::runner::Arrivals;
use crate::spool::{Entry, Spool, SpoolError};

/// The longest command line accepted, CRLF included (Postfix's
/// `line_length_limit` default).
pub const MAX_COMMAND_LINE: usize = 2048;

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
                let entries = ctx.entries(sender, recipients, body);
                spool.commit(&entries)?;
                arrivals.queued(&entries);
                Ok(entries)
            }
            Sink::Incoming(dropbox) => {
                let entries = ctx.submissions(sender, recipients, body);
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
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, ctx, sink, shutdown).await {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
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
    Shutdown,
}

/// One client connection's buffers.
struct Conn<IO> {
    io: IO,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    idle: Duration,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    fn queue_reply(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&reply.to_wire());
    }

    /// Flushes pending replies, then reads more input. `Ok(false)` on EOF,
    /// `Err(TimedOut)` when the client stayed silent too long.
    async fn fill(&mut self, shutdown: Option<&mut watch::Receiver<bool>>) -> io::Result<Fill> {
        self.flush().await?;
        let read = tokio::time::timeout(self.idle, self.io.read_buf(&mut self.inbuf));
        let result = match shutdown {
            Some(rx) => tokio::select! {
                r = read => r,
                _ = rx.wait_for(|stop| *stop) => return Ok(Fill::Shutdown),
            },
            None => read.await,
        };
        match result {
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
                Fill::Shutdown => return Ok(Input::Shutdown),
            }
        }
    }

    /// Reads message data up to the end line. `None` on EOF or timeout.
    async fn read_data(&mut self, reader: &mut DataReader) -> io::Result<Option<()>> {
        loop {
            match reader.feed(&self.inbuf) {
                Progress::Done(n) => {
                    self.inbuf.drain(..n);
                    return Ok(Some(()));
                }
                Progress::More => self.inbuf.clear(),
            }
            match self.fill(None).await? {
                Fill::Data => {}
                Fill::Eof | Fill::Idle | Fill::Shutdown => return Ok(None),
            }
        }
    }
}

enum Fill {
    Data,
    Eof,
    Idle,
    Shutdown,
}

/// Serves one SMTP session on any byte stream (a TCP connection, or
/// stdin/stdout for `sendmail -bs`).
pub async fn serve<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    ctx: Arc<Context>,
    sink: Sink,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut conn = Conn {
        io,
        inbuf: Vec::with_capacity(4096),
        out: Vec::with_capacity(512),
        idle: ctx.config.listen.idle_timeout.0,
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
                let mut reader = DataReader::new(usize::try_from(max).unwrap_or(usize::MAX));
                if conn.read_data(&mut reader).await?.is_none() {
                    // The client went away or stalled mid-message: nothing
                    // was acknowledged, so nothing is kept.
                    conn.queue_reply(&Reply::new(421, "4.4.2 Error: timeout exceeded, closing"));
                    return conn.flush().await;
                }
                let envelope = session.take_envelope();
                let result = if reader.too_big() {
                    Err(DataFailure::TooBig(max))
                } else {
                    accept(
                        &ctx,
                        &sink,
                        &envelope.sender,
                        &envelope.recipients,
                        reader.into_body(),
                    )
                    .await
                };
                conn.queue_reply(&data_reply(&result));
            }
        }
    }
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
