//! The `sendmail` command: submission for cron, scripts and anything else
//! that expects `/usr/sbin/sendmail`.
//!
//! It reads the message to end of file (a lone "." never ends it; `-i` and
//! `-oi` change nothing), takes recipients from the arguments or, with `-t`
//! or when there are none, from To/Cc/Bcc (Bcc is then removed), resolves
//! them like the SMTP server does, and writes the submissions into
//! `incoming/` itself, so it works while the daemon is stopped. It exits 0
//! only once the spool holds the message; otherwise with a sysexits code.
//!
//! Installed setgid to the spool's group, it holds that group for as
//! little as it can, as Postfix's `sendmail` hands its file to the setgid
//! `postdrop` ([`privsep`]): with the group it reads only root's config,
//! the keys and the spool's hold key; a child that has given the group up
//! for good reads the message and encrypts it; the parent writes what the
//! child hands over into `incoming/`, and nothing else. A config named by
//! `-C`, `--config` or `ALERT_RELAY_CONFIG` is read with the group only
//! when root controls it ([`root_controls`]); any other makes `sendmail`
//! drop the group before anything else: a user's own config must not
//! steer the system spool. Which mode runs is `crate::cli::sendmail`'s
//! call; `mailq` is a control command.

mod args;
pub mod privsep;

use std::io::Read;
use std::sync::Arc;

use mail_parser::{HeaderName, MessageParser};

pub use crate::sysexits::Failure;
pub use args::{Args, HELP, Mode, USAGE, parse_args};
pub use privsep::{Dropbox, root_controls};

use crate::message::{has_header, header_len, remove_bcc};
use crate::route::Recipient;
use crate::sysexits;

/// The addresses in the message's To, Cc and Bcc fields, every occurrence.
pub fn header_recipients(message: &[u8]) -> Vec<String> {
    let head = &message[..header_len(message)];
    let Some(parsed) = MessageParser::default().parse_headers(head) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in [HeaderName::To, HeaderName::Cc, HeaderName::Bcc] {
        for value in parsed.header_values(name) {
            let Some(list) = value.as_address() else {
                continue;
            };
            for a in list.iter() {
                // `To: root` parses as a name without an address; a single
                // word there is a local name, as sendmail has always read it.
                let bare = a
                    .name
                    .as_deref()
                    .filter(|n| !n.contains(char::is_whitespace));
                if let Some(addr) = a.address.as_deref().or(bare) {
                    out.push(addr.to_string());
                }
            }
        }
    }
    out
}

/// Turns what was read from stdin into the message to queue, and finds its
/// recipients. `arg_recipients` may hold comma-separated lists.
pub fn prepare(
    args: &Args,
    raw: &[u8],
    default_sender: &str,
) -> Result<(Vec<u8>, Vec<String>), Failure> {
    let mut recipients: Vec<String> = args
        .recipients
        .iter()
        .flat_map(|a| a.split(','))
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if args.extract || recipients.is_empty() {
        recipients.extend(header_recipients(raw));
    }
    if recipients.is_empty() {
        return Err(Failure::new(
            sysexits::USAGE,
            "no recipients: give them as arguments, or in To/Cc/Bcc with -t",
        ));
    }
    let mut message = remove_bcc(raw);
    if !has_header(&message, "From") {
        let from = match &args.full_name {
            Some(name) => format!(
                "From: {} <{default_sender}>\n",
                name.replace(['\r', '\n'], " ")
            ),
            None => format!("From: {default_sender}\n"),
        };
        let mut with_from = from.into_bytes();
        if header_len(&message) == 0 {
            // No header at all: keep the body a body.
            with_from.push(b'\n');
        }
        with_from.extend_from_slice(&message);
        message = with_from;
    }
    Ok((message, recipients))
}

/// Reads the message from `input` to EOF, refusing more than `max` bytes.
pub fn read_message(mut input: impl Read, max: u64) -> Result<Vec<u8>, Failure> {
    let mut raw = Vec::new();
    input
        .by_ref()
        .take(max + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failure::new(sysexits::IOERR, format!("cannot read the message: {e}")))?;
    if raw.len() as u64 > max {
        return Err(Failure::new(
            sysexits::DATAERR,
            format!("message larger than listen.max_message_size ({max} bytes); not queued"),
        ));
    }
    Ok(raw)
}

/// Resolves every recipient; one unknown address refuses the whole
/// message, so that nobody is silently left out.
pub fn resolve_all(
    router: &crate::route::Router,
    addresses: &[String],
) -> Result<Vec<Recipient>, Failure> {
    let mut out: Vec<Recipient> = Vec::new();
    for a in addresses {
        let targets = router
            .resolve(a)
            .map_err(|e| Failure::new(sysexits::NOUSER, e.to_string()))?;
        for t in targets {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// The `-bm` and `-bs` modes: with the spool's group (when setgid), the
/// keys, the hold key and the spool; then, in a child without the group,
/// the message from standard input (or an SMTP session on it), encrypted
/// and handed to `incoming/`.
pub fn accept(config: crate::config::Config, args: &Args) -> Result<(), Failure> {
    let ctx = crate::context::Context::new(config)
        .map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    let spool =
        crate::spool::Spool::open_submitter(&ctx.config.queue.dir).map_err(spool_failure)?;
    let dropbox = if crate::os::is_privileged() {
        privsep::split(spool, &ctx)?
    } else {
        Dropbox::Direct(spool)
    };
    if args.mode == Mode::Smtp {
        return smtp_on_stdio(ctx, dropbox);
    }
    let raw = read_message(
        std::io::stdin().lock(),
        ctx.config.listen.max_message_size.0,
    )?;
    let entries = submit(&ctx, &dropbox, args, &raw)?;
    if args.verbose {
        for e in &entries {
            eprintln!("queued as {} for {}", e.id, e.recipient);
        }
        if entries.is_empty() {
            eprintln!("discarded by a route: nothing queued (relayctl route FILE shows which)");
        }
    }
    Ok(())
}

/// Queues one message read by `sendmail` (the `-bm` mode): finds and
/// resolves its recipients, seals it for each and hands the submissions
/// to `incoming/`. Returns them once they are durable.
pub fn submit(
    ctx: &crate::context::Context,
    dropbox: &Dropbox,
    args: &Args,
    raw: &[u8],
) -> Result<Vec<crate::spool::Entry>, Failure> {
    let default_sender = format!("{}@{}", crate::os::login_name(), ctx.hostname);
    let sender = args.sender.clone().unwrap_or(default_sender.clone());
    let (message, addresses) = prepare(args, raw, &default_sender)?;
    let recipients = resolve_all(&ctx.router, &addresses)?;
    let entries = super::submissions(ctx, &sender, &recipients, &message);
    dropbox.submit(&entries).map_err(spool_failure)?;
    Ok(entries)
}

/// A spool error as sendmail reports it: EX_TEMPFAIL when trying again
/// can help, EX_NOPERM for an installation problem.
pub fn spool_failure(e: crate::spool::SpoolError) -> Failure {
    Failure::new(e.exit_code(), e.to_string())
}

/// `sendmail -bs`: the SMTP server's session on stdin and stdout, storing
/// into `incoming/` like the rest of `sendmail`.
fn smtp_on_stdio(ctx: crate::context::Context, dropbox: Dropbox) -> Result<(), Failure> {
    let runtime = crate::runtime::new()
        .map_err(|e| Failure::new(sysexits::OSERR, format!("cannot start: {e}")))?;
    let ctx = Arc::new(ctx);
    // Never signalled: the session ends with QUIT, EOF or the idle timeout.
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    runtime
        .block_on(super::smtp::serve(
            tokio::io::join(tokio::io::stdin(), tokio::io::stdout()),
            ctx,
            super::smtp::Sink::Incoming(dropbox),
            super::smtp::Budget::unlimited(),
            shutdown,
        ))
        .map_err(|e| Failure::new(sysexits::IOERR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::args::tests::args;
    use super::*;

    #[test]
    fn recipients_from_every_to_cc_and_bcc() {
        let msg = b"To: a@x.org\nTo: \"B\" <b@x.org>, c@x.org\nCc: d@x.org, root\nBcc: e@x.org,\n f@x.org\nSubject: s\n\nbody To: z@x.org\n";
        assert_eq!(
            header_recipients(msg),
            vec![
                "a@x.org", "b@x.org", "c@x.org", "d@x.org", "root", "e@x.org", "f@x.org"
            ]
        );
        assert_eq!(
            header_recipients(b"To: Some Name\n\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bcc_is_removed_with_its_continuation() {
        let msg = b"To: a@x\r\nBCC: e@x,\r\n f@x\r\nSubject: s\r\n\r\nBcc: stays in the body\r\n";
        assert_eq!(
            remove_bcc(msg),
            b"To: a@x\r\nSubject: s\r\n\r\nBcc: stays in the body\r\n"
        );
    }

    #[test]
    fn a_missing_from_is_added_and_a_headerless_message_stays_a_body() {
        let a = args(&["root"]).unwrap();
        let (m, r) = prepare(&a, b"just text\n", "cron@mon").unwrap();
        assert_eq!(m, b"From: cron@mon\n\njust text\n");
        assert_eq!(r, vec!["root"]);
        let a = args(&["-F", "Cron", "root"]).unwrap();
        let (m, _) = prepare(&a, b"Subject: s\n\nb\n", "cron@mon").unwrap();
        assert_eq!(m, b"From: Cron <cron@mon>\nSubject: s\n\nb\n");
        let (m, _) = prepare(&a, b"From: x@y\n\nb\n", "cron@mon").unwrap();
        assert_eq!(m, b"From: x@y\n\nb\n");
    }

    #[test]
    fn no_recipients_anywhere_is_a_usage_error() {
        let e = prepare(&args(&[]).unwrap(), b"Subject: s\n\nb\n", "x@y").unwrap_err();
        assert_eq!(e.code, sysexits::USAGE);
    }

    #[test]
    fn oversize_input_is_refused() {
        let e = read_message(&b"0123456789"[..], 5).unwrap_err();
        assert_eq!(e.code, sysexits::DATAERR);
        assert_eq!(read_message(&b"01234"[..], 5).unwrap(), b"01234");
    }
}
