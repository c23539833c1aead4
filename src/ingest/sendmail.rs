//! The `sendmail` command: submission for cron, scripts and anything else
//! that expects `/usr/sbin/sendmail`.
//!
//! It reads the message to end of file (a lone "." never ends it; `-i` and
//! `-oi` change nothing), takes recipients from the arguments or, with `-t`
//! or when there are none, from To/Cc/Bcc (Bcc is then removed), resolves
//! them like the SMTP server does, and writes the outgoing entries into
//! `incoming/` itself, so it works while the daemon is stopped. It exits 0
//! only once the spool holds the message; otherwise with a sysexits code.
//!
//! Installed setgid to the spool's group (like Postfix's postdrop), it must
//! not let a user steer it with their own config: a `-C`, `--config` or
//! `ALERT_RELAY_CONFIG` naming another file makes it drop that privilege
//! first.

use std::io::Read;
use std::path::{Path, PathBuf};

use mail_parser::{HeaderName, MessageParser};

use crate::message::{has_header, header_len, remove_bcc};
use crate::route::Recipient;
use crate::sysexits;

/// What `sendmail` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (the default): read a message and queue it.
    Deliver,
    /// `-bs`: an SMTP session on stdin and stdout.
    Smtp,
    /// `-bp`, or invoked as `mailq`: list the queue.
    ListQueue,
    /// `-q`: ask the daemon to run the queue now.
    Flush,
    /// `-bi`, or invoked as `newaliases`: nothing to do, aliases live in relay.toml.
    NewAliases,
    /// `--help`: print [`HELP`].
    Help,
}

/// The one-line usage, printed after a usage error.
const USAGE: &str = "usage: sendmail [-t] [-i] [-f sender] [-F name] [-C config] [recipient ...]";

/// What `sendmail --help` prints; `packaging/man/sendmail.8` says the same at length.
pub const HELP: &str = "\
sendmail: queue a message for alert-relay, encrypted to each recipient's key

usage: sendmail [-t] [-i] [-f sender] [-F name] [-C config] [recipient ...]
       sendmail -bs | -bp | -q | -bi       (mailq = -bp, newaliases = -bi)

Reads the message from standard input to end of file and exits 0 once it is
durably in the spool; the daemon need not be running. Recipients are the
arguments, or with -t (or none given) the To, Cc and Bcc fields; Bcc is removed.
Every recipient must resolve through relay.toml's [aliases] to a configured
[[recipients]] address.

  -t          take recipients from To, Cc and Bcc
  -i, -oi     accepted; a lone \".\" never ends the message anyway
  -f, -r ADDR envelope sender
  -F NAME     full name for a From field the message lacks
  -C PATH     config file (also --config; drops the setgid privilege)
  -v          print the queue ids
  -bm         read a message and queue it (the default)
  -bs         SMTP on standard input and output
  -bp         list the queue (as mailq does)
  -q          ask the daemon to run the queue now
  -bi         nothing to do: aliases live in relay.toml (as newaliases)
  Ignored for compatibility: other -o options, -B -N -R -V -X -h -L with
  their values, -U -n -m -G.

Exit status: 0 queued, 64 usage, 65 message too large, 67 unknown recipient
(nothing queued), 75 spool full or unavailable (try again), 77 no permission
on the spool, 78 bad config.

Examples:
  echo 'Subject: test' | sendmail root
  sendmail -t < message.eml
  mailq
";

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mode: Mode,
    /// `-t`: take recipients from the headers.
    pub extract: bool,
    /// `-f` / `-r`: the envelope sender.
    pub sender: Option<String>,
    /// `-F`: the full name for a From header the message lacks.
    pub full_name: Option<String>,
    pub verbose: bool,
    /// `-C` / `--config`.
    pub config: Option<PathBuf>,
    pub recipients: Vec<String>,
}

/// Options that take a value and are accepted only for compatibility.
const IGNORED_WITH_VALUE: &[char] = &['B', 'N', 'R', 'V', 'X', 'h', 'L'];
/// Flags accepted only for compatibility.
const IGNORED_FLAGS: &[char] = &['i', 'm', 'n', 'U', 'G'];

/// Parses sendmail's command line, getopt style (`-ti`, `-fADDR`, `-f ADDR`).
/// `program` is the name it was invoked as (argv\[0\]'s file name).
pub fn parse_args(program: &str, args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        mode: match program {
            "mailq" => Mode::ListQueue,
            "newaliases" => Mode::NewAliases,
            _ => Mode::Deliver,
        },
        extract: false,
        sender: None,
        full_name: None,
        verbose: false,
        config: None,
        recipients: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            out.recipients.extend(args[i..].iter().cloned());
            break;
        }
        if arg == "--help" {
            out.mode = Mode::Help;
            continue;
        }
        if let Some(path) = arg.strip_prefix("--config") {
            out.config = Some(PathBuf::from(match path.strip_prefix('=') {
                Some(p) => p.to_string(),
                None if path.is_empty() => take_value(args, &mut i, "--config")?,
                None => return Err(format!("unknown option {arg}")),
            }));
            continue;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            out.recipients.push(arg.clone());
            continue;
        };
        for (pos, c) in flags.char_indices() {
            let rest = &flags[pos + c.len_utf8()..];
            // Options with a value take the rest of this argument or the next one.
            let mut value = |name: char| -> Result<String, String> {
                if rest.is_empty() {
                    take_value(args, &mut i, &format!("-{name}"))
                } else {
                    Ok(rest.to_string())
                }
            };
            match c {
                't' => out.extract = true,
                'v' => out.verbose = true,
                'f' | 'r' => {
                    out.sender = Some(value(c)?);
                    break;
                }
                'F' => {
                    out.full_name = Some(value(c)?);
                    break;
                }
                'C' => {
                    out.config = Some(PathBuf::from(value(c)?));
                    break;
                }
                'b' => {
                    out.mode = match rest {
                        "m" => Mode::Deliver,
                        "s" => Mode::Smtp,
                        "p" => Mode::ListQueue,
                        "i" => Mode::NewAliases,
                        _ => return Err(format!("unsupported mode -b{rest}")),
                    };
                    break;
                }
                // -oi, -oem, -odb...: Postfix ignores what it does not know, and so do we.
                'o' => {
                    if rest.is_empty() {
                        take_value(args, &mut i, "-o")?;
                    }
                    break;
                }
                // -q or -q30m: run the queue now.
                'q' => {
                    out.mode = Mode::Flush;
                    break;
                }
                c if IGNORED_WITH_VALUE.contains(&c) => {
                    value(c)?;
                    break;
                }
                c if IGNORED_FLAGS.contains(&c) => {}
                c => return Err(format!("unknown option -{c}")),
            }
        }
    }
    Ok(out)
}

fn take_value(args: &[String], i: &mut usize, name: &str) -> Result<String, String> {
    let v = args
        .get(*i)
        .cloned()
        .ok_or_else(|| format!("option {name} needs a value"))?;
    *i += 1;
    Ok(v)
}

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

/// Why a submission failed, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
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

/// Whether this process runs with privileges its user does not have
/// (setgid or setuid), and so must not trust its caller's choices.
pub fn is_privileged() -> bool {
    // SAFETY: these getters have no preconditions.
    unsafe { libc::getuid() != libc::geteuid() || libc::getgid() != libc::getegid() }
}

/// Gives up setgid/setuid privileges for good.
pub fn drop_privileges() -> Result<(), Failure> {
    // SAFETY: plain system calls on our own credentials.
    let ok = unsafe { libc::setgid(libc::getgid()) == 0 && libc::setuid(libc::getuid()) == 0 };
    if ok {
        Ok(())
    } else {
        Err(Failure::new(sysexits::OSERR, "cannot drop privileges"))
    }
}

/// The login name of the real user, for the default envelope sender.
pub fn login_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we
    // copy the name out at once, and this process has one thread here.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return format!("uid{}", libc::getuid());
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// True when `config` names the default config file.
pub fn is_default_config(config: &Path) -> bool {
    config == Path::new(crate::config::DEFAULT_PATH)
}

/// The whole `sendmail` command; returns the exit code.
pub fn run(argv: &[String]) -> u8 {
    let program = argv
        .first()
        .and_then(|p| Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("sendmail")
        .to_string();
    match run_inner(&program, argv.get(1..).unwrap_or_default()) {
        Ok(()) => sysexits::OK,
        Err(f) => {
            eprintln!("{program}: {}", f.message);
            f.code
        }
    }
}

fn run_inner(program: &str, argv: &[String]) -> Result<(), Failure> {
    let args = parse_args(program, argv).map_err(|e| {
        Failure::new(
            sysexits::USAGE,
            format!("{e}\n{USAGE}\n(sendmail --help says more)"),
        )
    })?;
    match args.mode {
        // Aliases live in relay.toml's [aliases]; there is no database to build.
        Mode::NewAliases => return Ok(()),
        Mode::Help => {
            print!("{HELP}");
            return Ok(());
        }
        _ => {}
    }
    let path = crate::config::resolve_path(args.config.clone());
    if is_privileged() && !is_default_config(&path) {
        drop_privileges()?;
    }
    let config = crate::config::Config::load(&path)
        .map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    match args.mode {
        Mode::NewAliases | Mode::Help => Ok(()),
        Mode::ListQueue => {
            let rows = crate::spool::Spool::at(&config.queue.dir)
                .list()
                .map_err(spool_failure)?;
            print!("{}", crate::control::queue_table(&rows));
            Ok(())
        }
        Mode::Flush => {
            crate::spool::Spool::at(&config.queue.dir).wake();
            Ok(())
        }
        Mode::Smtp => {
            let spool =
                crate::spool::Spool::open_submitter(&config.queue.dir).map_err(spool_failure)?;
            smtp_on_stdio(config, spool)
        }
        Mode::Deliver => {
            let raw = read_message(std::io::stdin().lock(), config.listen.max_message_size.0)?;
            let entries = submit(config, &args, &raw)?;
            if args.verbose {
                for e in &entries {
                    eprintln!("queued as {} for {}", e.id, e.recipient);
                }
            }
            Ok(())
        }
    }
}

/// Queues one message read by `sendmail` (the `-bm` mode): finds and
/// resolves its recipients, builds the outgoing entries and writes them to
/// `incoming/`. Returns the entries once they are durable.
pub fn submit(
    config: crate::config::Config,
    args: &Args,
    raw: &[u8],
) -> Result<Vec<crate::spool::Entry>, Failure> {
    let ctx =
        super::Context::new(config).map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    let default_sender = format!("{}@{}", login_name(), ctx.hostname);
    let sender = args.sender.clone().unwrap_or(default_sender.clone());
    let (message, addresses) = prepare(args, raw, &default_sender)?;
    let recipients = resolve_all(&ctx.router, &addresses)?;
    let spool =
        crate::spool::Spool::open_submitter(&ctx.config.queue.dir).map_err(spool_failure)?;
    let entries = ctx.entries(&sender, &recipients, &message);
    spool.submit(&entries).map_err(spool_failure)?;
    Ok(entries)
}

/// Spool errors as sendmail reports them: a permission problem is
/// EX_NOPERM (an install problem), anything else EX_TEMPFAIL (try again).
fn spool_failure(e: crate::spool::SpoolError) -> Failure {
    let code = match &e {
        crate::spool::SpoolError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            sysexits::NOPERM
        }
        _ => sysexits::TEMPFAIL,
    };
    Failure::new(code, e.to_string())
}

/// `sendmail -bs`: the SMTP server's session on stdin and stdout, storing
/// into `incoming/` like the rest of `sendmail`.
fn smtp_on_stdio(config: crate::config::Config, spool: crate::spool::Spool) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(sysexits::OSERR, format!("cannot start: {e}")))?;
    let ctx =
        super::Context::new(config).map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    let ctx = std::sync::Arc::new(ctx);
    // Never signalled: the session ends with QUIT, EOF or the idle timeout.
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    runtime
        .block_on(super::smtp::serve(
            tokio::io::join(tokio::io::stdin(), tokio::io::stdout()),
            ctx,
            super::smtp::Sink::Incoming(spool),
            shutdown,
        ))
        .map_err(|e| Failure::new(sysexits::IOERR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        parse_args("sendmail", &v)
    }

    #[test]
    fn the_flags_scripts_use() {
        let a = args(&[
            "-t",
            "-i",
            "-oi",
            "-f",
            "cron@host",
            "-FCron Daemon",
            "root",
        ])
        .unwrap();
        assert!(a.extract);
        assert_eq!(a.sender.as_deref(), Some("cron@host"));
        assert_eq!(a.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(a.recipients, vec!["root"]);
        let a = args(&["-ti", "-rme@x", "-oem", "-odb", "-C", "/tmp/r.toml", "a@b"]).unwrap();
        assert!(a.extract);
        assert_eq!(a.sender.as_deref(), Some("me@x"));
        assert_eq!(a.config, Some(PathBuf::from("/tmp/r.toml")));
        assert_eq!(args(&["-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(args(&["-bs"]).unwrap().mode, Mode::Smtp);
        assert_eq!(args(&["-q"]).unwrap().mode, Mode::Flush);
        assert_eq!(args(&["-bm", "-v", "x"]).unwrap().mode, Mode::Deliver);
        assert_eq!(parse_args("mailq", &[]).unwrap().mode, Mode::ListQueue);
        assert_eq!(
            parse_args("newaliases", &[]).unwrap().mode,
            Mode::NewAliases
        );
        let a = args(&["--config=/x.toml", "--", "-odd@x"]).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("/x.toml")));
        assert_eq!(a.recipients, vec!["-odd@x"]);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(args(&["-Z"]).unwrap_err().contains("unknown option -Z"));
        assert!(args(&["-f"]).unwrap_err().contains("needs a value"));
        assert!(args(&["-bz"]).unwrap_err().contains("unsupported mode"));
    }

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
