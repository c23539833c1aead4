//! The SMTP server's protocol state, without any I/O.
//!
//! [`Session::command`] takes one command line and says what to answer.
//! Every command gets exactly one reply, at once: OSSEC's maild reads one
//! reply per command with a single `recv` and no timeout, so a command
//! that got no answer would hang it. Nothing here waits on the upstream
//! relay.
//!
//! Commands are parsed by smtp-proto, which accepts OSSEC's spellings
//! (`Helo x`, `Mail From: <x>`, `Rcpt To: <x>`). The command line length
//! limit is enforced by the I/O loop before a line gets here.

use smtp_proto::{Error as ParseError, Request};

use crate::context::Context;
pub use crate::reply::Reply;
use crate::route::{Recipient, RouteError};

/// What the I/O loop must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the reply and read the next command.
    Reply(Reply),
    /// Send 354 and read the message with a [`super::data::DataReader`].
    Data(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
}

/// The envelope of one message, complete once DATA starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<Recipient>,
}

/// One SMTP session's state.
#[derive(Debug)]
pub struct Session {
    /// The envelope being built, once MAIL was accepted.
    envelope: Option<Envelope>,
    /// RCPT commands accepted in this transaction.
    accepted_rcpts: usize,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            envelope: None,
            accepted_rcpts: 0,
        }
    }

    /// The greeting sent when a client connects.
    pub fn banner(ctx: &Context) -> Reply {
        Reply::new(220, format!("{} ESMTP alert-relay", ctx.hostname))
    }

    /// Handles one command line (with its line ending).
    pub fn command(&mut self, ctx: &Context, line: &[u8]) -> Step {
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => return Step::Reply(self.parse_error(ctx, line, e)),
        };
        match request {
            Request::Helo { .. } => {
                self.reset();
                Step::Reply(Reply::new(250, ctx.hostname.clone()))
            }
            Request::Ehlo { .. } => {
                self.reset();
                Step::Reply(ehlo(ctx))
            }
            Request::Mail { from } => {
                Step::Reply(self.mail(ctx, from.address.into_owned(), from.size))
            }
            Request::Rcpt { to } => Step::Reply(self.rcpt(ctx, &to.address)),
            Request::Data => match &self.envelope {
                None => Step::Reply(Reply::new(503, "5.5.1 Error: need MAIL command")),
                Some(e) if e.recipients.is_empty() => {
                    Step::Reply(Reply::new(554, "5.5.1 Error: no valid recipients"))
                }
                Some(_) => Step::Data(Reply::new(354, "End data with <CR><LF>.<CR><LF>")),
            },
            Request::Rset => {
                self.reset();
                Step::Reply(Reply::new(250, "2.0.0 Ok"))
            }
            Request::Noop { .. } => Step::Reply(Reply::new(250, "2.0.0 Ok")),
            Request::Quit => Step::Close(Reply::new(221, "2.0.0 Bye")),
            Request::Vrfy { .. } => Step::Reply(Reply::new(
                252,
                "2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Help { .. } => Step::Reply(Reply::new(
                214,
                "2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
            )),
            Request::StartTls => Step::Reply(Reply::new(
                502,
                "5.5.1 STARTTLS not offered: alert-relay listens on loopback only",
            )),
            Request::Auth { .. } => Step::Reply(Reply::new(
                502,
                "5.5.1 AUTH not offered: local clients need none",
            )),
            Request::Lhlo { .. }
            | Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                Step::Reply(Reply::new(502, "5.5.1 Error: command not implemented"))
            }
        }
    }

    fn mail(&mut self, ctx: &Context, sender: String, declared_size: usize) -> Reply {
        if self.envelope.is_some() {
            return Reply::new(503, "5.5.1 Error: nested MAIL command");
        }
        let max = ctx.config.listen.max_message_size.0;
        if declared_size as u64 > max {
            return Reply::new(
                552,
                format!("5.3.4 Message size exceeds fixed limit of {max} bytes"),
            );
        }
        self.envelope = Some(Envelope {
            sender,
            recipients: Vec::new(),
        });
        self.accepted_rcpts = 0;
        Reply::new(250, "2.1.0 Ok")
    }

    fn rcpt(&mut self, ctx: &Context, address: &str) -> Reply {
        let max = ctx.config.listen.max_recipients;
        let accepted = self.accepted_rcpts;
        let Some(envelope) = self.envelope.as_mut() else {
            return Reply::new(503, "5.5.1 Error: need MAIL command");
        };
        if accepted >= max {
            return Reply::new(
                452,
                format!("4.5.3 Error: too many recipients (at most {max})"),
            );
        }
        match ctx.router.resolve(address) {
            Ok(targets) => {
                for t in targets {
                    if !envelope.recipients.contains(&t) {
                        envelope.recipients.push(t);
                    }
                }
                self.accepted_rcpts += 1;
                Reply::new(250, "2.1.5 Ok")
            }
            Err(RouteError::Unknown(_)) => Reply::new(
                550,
                format!(
                    "5.1.1 <{address}>: Recipient address rejected: not a configured recipient or alias"
                ),
            ),
            Err(RouteError::AliasLoop(_)) => {
                Reply::new(451, "4.3.0 Error: alias loop; check [aliases]")
            }
        }
    }

    fn parse_error(&mut self, ctx: &Context, line: &[u8], e: ParseError) -> Reply {
        match e {
            // smtp-proto wants a domain; local scripts say `RCPT TO:<root>`
            // and `MAIL FROM:<cron>`, which Postfix accepts too.
            ParseError::InvalidRecipientAddress if let Some(name) = local_name(line, b"rcpt") => {
                self.rcpt(ctx, &name)
            }
            ParseError::InvalidSenderAddress if let Some(name) = local_name(line, b"mail") => {
                self.mail(ctx, name, 0)
            }
            // HELO and EHLO take any argument, including none.
            ParseError::SyntaxError { syntax } if syntax.starts_with("EHLO") => ehlo(ctx),
            ParseError::SyntaxError { syntax } if syntax.starts_with("HELO") => {
                Reply::new(250, ctx.hostname.clone())
            }
            ParseError::SyntaxError { syntax } => {
                Reply::new(501, format!("5.5.4 Syntax: {syntax}"))
            }
            ParseError::InvalidSenderAddress => Reply::new(501, "5.1.7 Bad sender address syntax"),
            ParseError::InvalidRecipientAddress => {
                Reply::new(501, "5.1.3 Bad recipient address syntax")
            }
            ParseError::InvalidParameter { param } => {
                Reply::new(501, format!("5.5.4 Invalid parameter {param}"))
            }
            ParseError::UnsupportedParameter { param } => {
                Reply::new(555, format!("5.5.4 Unsupported parameter {param}"))
            }
            ParseError::NeedsMoreData { .. } if line.iter().all(u8::is_ascii_whitespace) => {
                Reply::new(500, "5.5.2 Error: empty command")
            }
            _ => Reply::new(500, "5.5.2 Error: command not recognized"),
        }
    }

    /// Ends the transaction, keeping the session.
    pub fn reset(&mut self) {
        self.envelope = None;
        self.accepted_rcpts = 0;
    }

    /// The envelope of the message whose data was just read; the session
    /// is ready for the next MAIL.
    pub fn take_envelope(&mut self) -> Envelope {
        self.accepted_rcpts = 0;
        self.envelope.take().unwrap_or_default()
    }
}

/// The bare local name in `MAIL FROM:<name>` or `RCPT TO:<name>`, when the
/// line is that command with nothing else.
fn local_name(line: &[u8], verb: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if !text.as_bytes().get(..4)?.eq_ignore_ascii_case(verb) {
        return None;
    }
    let open = text.find('<')?;
    let close = text.rfind('>')?;
    let name = text.get(open + 1..close)?.trim();
    let rest = text.get(close + 1..)?.trim();
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    (plain && rest.is_empty()).then(|| name.to_string())
}

fn ehlo(ctx: &Context) -> Reply {
    Reply {
        code: 250,
        lines: vec![
            ctx.hostname.clone(),
            format!("SIZE {}", ctx.config.listen.max_message_size.0),
            "8BITMIME".into(),
            "PIPELINING".into(),
            "ENHANCEDSTATUSCODES".into(),
        ],
    }
}

/// What the server answers after the data of a message.
pub fn data_reply(result: &Result<Vec<String>, DataFailure>) -> Reply {
    match result {
        // Every recipient dropped by a route: taken, and nothing to send.
        Ok(ids) if ids.is_empty() => Reply::new(250, "2.0.0 Ok: discarded by a route"),
        Ok(ids) => Reply::new(250, format!("2.0.0 Ok: queued as {}", ids.join(" "))),
        Err(DataFailure::TooBig(max)) => Reply::new(
            552,
            format!("5.3.4 Message size exceeds fixed limit of {max} bytes"),
        ),
        Err(DataFailure::SpoolFull) => Reply::new(452, "4.3.1 Insufficient system storage"),
        Err(DataFailure::Busy) => Reply::new(
            452,
            "4.3.1 Insufficient system resources: too many large messages at once, try again later",
        ),
        Err(DataFailure::Spool) => Reply::new(
            451,
            "4.3.0 Local error in processing: the message was not queued; try again",
        ),
    }
}

/// Why a message whose data was read was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFailure {
    TooBig(u64),
    SpoolFull,
    Spool,
    /// Over the memory budget for messages in flight (`listen.max_in_flight`).
    Busy,
}

#[cfg(test)]
mod tests {
    use super::*;

    mod test_keys {
        include!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/keys/fingerprints.rs"
        ));
    }
    use crate::config::Config;
    use std::path::Path;

    fn ctx() -> Context {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
        let text = r#"
[listen]
addresses = ["127.0.0.1:2525"]
hostname = "mon.example.org"
max_recipients = 2
max_message_size = "1KiB"
[relay]
host = "relay.example.net"
sender = "ossec@example.net"
[[recipients]]
address = "alerts@example.org"
key = "KEYS/alerts.asc"
fingerprint = "ALERTS"
[[recipients]]
address = "ops@example.org"
key = "KEYS/journalist.asc"
fingerprint = "JOURNALIST"
[aliases]
root = "alerts@example.org"
"#;
        let fpr = test_keys::fingerprint;
        let text = text
            .replace("KEYS", keys)
            .replace("ALERTS", &fpr("alerts"))
            .replace("JOURNALIST", &fpr("journalist"));
        Context::new(Config::parse(&text, Path::new("t.toml")).unwrap()).unwrap()
    }

    fn line(s: &str) -> Vec<u8> {
        format!("{s}\r\n").into_bytes()
    }

    fn code(step: Step) -> u16 {
        match step {
            Step::Reply(r) | Step::Data(r) | Step::Close(r) => r.code,
        }
    }

    fn run(s: &mut Session, c: &Context, cmd: &str) -> u16 {
        code(s.command(c, &line(cmd)))
    }

    #[test]
    fn ossec_dialogue() {
        let c = ctx();
        let mut s = Session::new();
        assert_eq!(run(&mut s, &c, "Helo notify.ossec.net"), 250);
        assert_eq!(run(&mut s, &c, "Mail From: <ossecm@mon>"), 250);
        assert_eq!(run(&mut s, &c, "Rcpt To: <root@localhost>"), 250);
        assert_eq!(run(&mut s, &c, "Rcpt To: <ops@example.org>"), 250);
        assert_eq!(run(&mut s, &c, "DATA"), 354);
        let env = s.take_envelope();
        assert_eq!(env.sender, "ossecm@mon");
        assert_eq!(env.recipients.len(), 2);
        assert_eq!(run(&mut s, &c, "QUIT"), 221);
    }

    #[test]
    fn ehlo_advertises_the_extensions() {
        let c = ctx();
        let wire = String::from_utf8(ehlo(&c).to_wire()).unwrap();
        assert_eq!(
            wire,
            "250-mon.example.org\r\n250-SIZE 1024\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
        );
        assert_eq!(run(&mut Session::new(), &c, "EHLO"), 250);
        assert_eq!(run(&mut Session::new(), &c, "ehlo anything at all"), 250);
    }

    #[test]
    fn sequence_errors() {
        let c = ctx();
        let mut s = Session::new();
        assert_eq!(run(&mut s, &c, "RCPT TO:<root>"), 503);
        assert_eq!(run(&mut s, &c, "DATA"), 503);
        assert_eq!(run(&mut s, &c, "MAIL FROM:<>"), 250);
        assert_eq!(run(&mut s, &c, "MAIL FROM:<>"), 503);
        assert_eq!(run(&mut s, &c, "DATA"), 554);
        assert_eq!(run(&mut s, &c, "RSET"), 250);
        assert_eq!(run(&mut s, &c, "MAIL FROM:<>"), 250);
    }

    #[test]
    fn unknown_recipients_and_limits() {
        let c = ctx();
        let mut s = Session::new();
        run(&mut s, &c, "MAIL FROM:<a@b>");
        assert_eq!(run(&mut s, &c, "RCPT TO:<someone@gmail.com>"), 550);
        assert_eq!(run(&mut s, &c, "RCPT TO:<root>"), 250);
        assert_eq!(run(&mut s, &c, "RCPT TO:<ops@example.org>"), 250);
        assert_eq!(run(&mut s, &c, "RCPT TO:<root@mon.example.org>"), 452);
        assert_eq!(run(&mut s, &c, "MAIL FROM:<a@b>"), 503);
        let mut s = Session::new();
        assert_eq!(run(&mut s, &c, "MAIL FROM:<a@b> SIZE=999999"), 552);
    }

    #[test]
    fn other_commands_get_one_reply_each() {
        let c = ctx();
        let mut s = Session::new();
        for (cmd, want) in [
            ("NOOP", 250),
            ("VRFY root", 252),
            ("HELP", 214),
            ("STARTTLS", 502),
            ("AUTH PLAIN AGFiYwBkZWY=", 502),
            ("EXPN root", 502),
            ("BOGUS", 500),
            ("", 500),
            ("MAIL FROM:<a b c>", 501),
            ("MAIL TO:<x>", 501),
        ] {
            assert_eq!(run(&mut s, &c, cmd), want, "{cmd}");
            s.reset();
        }
    }
}
