//! sendmail's command line, parsed getopt style (`-ti`, `-fADDR`,
//! `-f ADDR`, `-oi`) as every sendmail since 1983 reads it: these are not
//! clap's conventions. Pure code, fuzzed (`fuzz/fuzz_targets/sendmail_args.rs`).

use std::path::PathBuf;

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
pub const USAGE: &str =
    "usage: sendmail [-t] [-i] [-f sender] [-F name] [-C config] [recipient ...]";

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
  -C PATH     config file (also --config); unless root controls it and
              its directories, the setgid privilege is dropped first
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `sendmail`'s arguments after argv[0], parsed.
    pub(in crate::ingest::sendmail) fn args(list: &[&str]) -> Result<Args, String> {
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
}
