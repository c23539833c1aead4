//! SMTP replies (RFC 5321 section 4.2), both ways: what the SMTP server
//! answers local clients ([`Reply::to_wire`]), and what the relay says,
//! parsed from untrusted bytes, bounded, with its EHLO capabilities. No
//! I/O here (the fuzz targets `relay_reply` and `ehlo` drive the parser).
//!
//! Anyone on the path to the relay can send anything before TLS, and a
//! hostile or broken relay after it: every line and every reply is capped
//! ([`MAX_LINE`], [`MAX_LINES`], [`MAX_REPLY`]), the lines of one reply
//! must share their code, and control characters in the text are replaced,
//! since the text reaches logs and the admin's terminal.

use std::fmt;

/// The longest reply line taken, line end included. RFC 5321 allows 512;
/// real relays stay under it.
pub const MAX_LINE: usize = 4096;
/// The most lines in one reply.
pub const MAX_LINES: usize = 100;
/// The most bytes in one reply.
pub const MAX_REPLY: usize = 64 << 10;

/// One SMTP reply, possibly multi-line: a code and its lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// The reply as it goes on the wire, CRLF-terminated.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.push_str(&format!("{}{sep}{line}\r\n", self.code));
        }
        out.into_bytes()
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Microsoft 365's `554 5.2.252 SendAsDenied`: the mailbox that signed
    /// in may not send as the envelope sender. A setting to fix
    /// (relay.sender, or Send As rights), not a message to give up on: an
    /// AUTH class failure, deferred.
    pub fn is_send_as_denied(&self) -> bool {
        let lower = self.lines.join(" ").to_ascii_lowercase();
        lower.starts_with("5.2.252") || lower.contains("sendasdenied")
    }

    /// Whether it says the account's sending quota is used up, which the
    /// providers answer with a 5xx although it passes with time: Gmail's
    /// `550 5.4.5 Daily user sending limit exceeded` (RFC 3463 X.4.5 is
    /// "mail system congestion", transient by its nature), Microsoft
    /// 365's `554 5.2.0 STOREDRV.Submission.Exception:
    /// SubmissionQuotaExceededException` and `550 5.1.90` (its recipient
    /// rate limit). Such a reply defers the mail; it never fails it.
    pub fn is_quota(&self) -> bool {
        // A 4xx is temporary anyway, on the normal schedule.
        if self.code < 500 {
            return false;
        }
        let lower = self.lines.join(" ").to_ascii_lowercase();
        let enhanced = lower.split_whitespace().next().unwrap_or("");
        // X.2.2 is the mailbox full: a person must act, not wait.
        if enhanced.ends_with(".2.2") {
            return false;
        }
        enhanced == "5.4.5"
            // Microsoft's recipient rate limit.
            || enhanced == "5.1.90"
            || lower.contains("submissionquotaexceeded")
            || ((lower.contains("sending limit") || lower.contains("sending quota"))
                && lower.contains("exceeded"))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" "))
    }
}

/// Builds a [`Reply`] line by line.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
    bytes: usize,
}

impl ReplyParser {
    /// Takes one line (with or without its line end): the reply once this
    /// was its last line, or why the relay's answer is not a reply.
    pub fn line(&mut self, raw: &[u8]) -> Result<Option<Reply>, String> {
        self.bytes += raw.len();
        if raw.len() > MAX_LINE {
            return Err(format!("a reply line longer than {MAX_LINE} bytes"));
        }
        if self.bytes > MAX_REPLY {
            return Err(format!("a reply longer than {MAX_REPLY} bytes"));
        }
        if self.lines.len() >= MAX_LINES {
            return Err(format!("a reply longer than {MAX_LINES} lines"));
        }
        let line = raw
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(raw);
        let code = match line.get(..3) {
            Some(digits) if digits.iter().all(u8::is_ascii_digit) => digits
                .iter()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
            _ => {
                return Err(format!(
                    "not a reply: {:?}",
                    clean(&line[..line.len().min(80)])
                ));
            }
        };
        if !(200..=599).contains(&code) {
            return Err(format!("reply code {code} is not one of 2xx to 5xx"));
        }
        if self.code.is_some_and(|c| c != code) {
            return Err("the lines of one reply have different codes".into());
        }
        self.code = Some(code);
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => {
                return Err(format!(
                    "not a reply: {:?}",
                    clean(&line[..line.len().min(80)])
                ));
            }
        };
        self.lines.push(clean(line.get(4..).unwrap_or_default()));
        if !last {
            return Ok(None);
        }
        let reply = Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        };
        *self = ReplyParser::default();
        Ok(Some(reply))
    }
}

/// Text from the relay, made safe to log and print: invalid UTF-8 and
/// control characters become U+FFFD.
fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// What the relay announced after EHLO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Upper-case keywords, with their parameters.
    extensions: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    /// The extensions of an EHLO reply (its first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let extensions = reply
            .lines
            .iter()
            .skip(1)
            .filter_map(|line| {
                // "AUTH PLAIN LOGIN", and the old "AUTH=PLAIN LOGIN".
                let mut words = line.split([' ', '=']).filter(|w| !w.is_empty());
                let keyword = words.next()?.to_ascii_uppercase();
                let params = words.map(str::to_ascii_uppercase).collect();
                Some((keyword, params))
            })
            .collect();
        Capabilities { extensions }
    }

    /// Whether the relay announced `keyword` (e.g. "PIPELINING").
    pub fn offers(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }

    /// The SASL mechanisms offered, upper case, each once.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, params) in self.extensions.iter().filter(|(k, _)| k == "AUTH") {
            for m in params {
                if !out.contains(m) {
                    out.push(m.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_quota_replies_are_known_and_other_refusals_are_not() {
        for (code, text) in [
            (
                550,
                "5.4.5 Daily user sending limit exceeded. For more information on Gmail",
            ),
            (
                550,
                "5.4.5 Daily user sending quota exceeded. c2-20020a17090a",
            ),
            (
                554,
                "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed \
                 to process message due to a permanent exception",
            ),
            (
                550,
                "5.1.90 Your message can't be sent because you've reached your daily limit \
                 for message recipients",
            ),
        ] {
            assert!(Reply::new(code, text).is_quota(), "{text}");
        }
        for (code, text) in [
            (
                550,
                "5.1.1 The email account that you tried to reach does not exist",
            ),
            (552, "5.2.2 The recipient's mailbox is full"),
            (554, "5.7.1 Message rejected: quota of spam reached"),
            (535, "5.7.8 Username and Password not accepted"),
            (
                550,
                "5.7.30 Basic authentication is not supported for Client Submission",
            ),
            // Temporary already; congestion, not a quota.
            (452, "4.4.5 Insufficient disk space; try again later"),
            (451, "4.4.5 Sending limit exceeded, try again later"),
            // The sender's own mailbox is full: someone must act.
            (
                554,
                "5.2.2 STOREDRV.Submission.Exception:QuotaExceededException",
            ),
        ] {
            assert!(!Reply::new(code, text).is_quota(), "{text}");
        }
    }

    fn parse(lines: &[&[u8]]) -> Result<Option<Reply>, String> {
        let mut p = ReplyParser::default();
        let mut last = Ok(None);
        for l in lines {
            last = Ok(p.line(l)?);
        }
        last
    }

    #[test]
    fn single_and_multi_line_replies() {
        let r = parse(&[b"250 2.0.0 Ok: queued as X\r\n"]).unwrap().unwrap();
        assert_eq!(
            (r.code, r.lines.as_slice()),
            (250, &["2.0.0 Ok: queued as X".to_string()][..])
        );
        let r = parse(&[
            b"250-mx.example\r\n",
            b"250-PIPELINING\r\n",
            b"250 AUTH PLAIN LOGIN\n",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.lines.len(), 3);
        assert_eq!(
            parse(&[b"220"]).unwrap().unwrap().lines,
            vec![String::new()]
        );
        assert!(parse(&[b"250-first\r\n"]).unwrap().is_none());
    }

    #[test]
    fn what_is_not_a_reply_is_refused() {
        for (lines, why) in [
            (&[&b"hello\r\n"[..]][..], "not a reply"),
            (&[b"25"], "not a reply"),
            (&[b"250x\r\n"], "not a reply"),
            (&[b"199 early\r\n"], "is not one of 2xx"),
            (&[b"250-a\r\n", b"550 b\r\n"], "different codes"),
        ] {
            let e = parse(lines).unwrap_err();
            assert!(e.contains(why), "{lines:?}: {e}");
        }
        let long = [b"250 ".as_slice(), &[b'x'; MAX_LINE]].concat();
        assert!(parse(&[&long]).unwrap_err().contains("line longer"));
        let many: Vec<&[u8]> = vec![b"250-x\r\n"; MAX_LINES + 1];
        assert!(parse(&many).unwrap_err().contains("lines"));
        let wide = [b"250-".as_slice(), &[b'y'; 3000], b"\r\n"].concat();
        let wide_lines: Vec<&[u8]> = vec![wide.as_slice(); 30];
        assert!(parse(&wide_lines).unwrap_err().contains("bytes"));
    }

    #[test]
    fn control_characters_never_reach_a_log_or_a_terminal() {
        let r = parse(&[b"535 bad \x1b[31mred\x07 \xff\r\n"])
            .unwrap()
            .unwrap();
        assert!(!r.lines[0].chars().any(char::is_control), "{:?}", r.lines);
    }

    #[test]
    fn capabilities_of_an_ehlo_reply() {
        let reply = Reply {
            code: 250,
            lines: [
                "mx.example greets you",
                "PIPELINING",
                "auth=login",
                "AUTH PLAIN LOGIN XOAUTH2",
                "STARTTLS",
                "",
            ]
            .map(String::from)
            .to_vec(),
        };
        let caps = Capabilities::from_ehlo(&reply);
        assert!(caps.offers("pipelining") && caps.offers("STARTTLS"));
        assert!(
            !caps.offers("mx.example"),
            "the greeting line is no extension"
        );
        assert_eq!(caps.auth_mechanisms(), ["LOGIN", "PLAIN", "XOAUTH2"]);
        assert!(
            Capabilities::from_ehlo(&Reply {
                code: 250,
                lines: vec![]
            })
            .auth_mechanisms()
            .is_empty()
        );
    }
}
