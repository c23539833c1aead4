//! The outer Subject, per `message.subject`.
//!
//! The outer Subject travels in the clear. OSSEC subjects carry the
//! agent's IP address ("OSSEC Notification - (app) 10.20.2.2 - Alert level
//! 7"), which says something about the monitored network to every mail
//! server on the way; `scrub` removes IPv4 and IPv6 addresses and the white
//! space after them, `hide` replaces the whole subject, as RFC 9788
//! recommends (clients that support header protection show the true one,
//! which is inside the encryption).

use std::net::IpAddr;

use crate::config::SubjectPolicy;

/// What RFC 9788 suggests for a hidden subject.
pub const HIDDEN: &str = "[...]";

/// The outer subject is cut to this many characters (the true one, inside,
/// is whole): a 100 KB subject has no business in the clear.
const MAX_OUTER_CHARS: usize = 200;

/// The outer Subject for `original` (decoded), or `None` for no Subject.
pub fn outer(policy: SubjectPolicy, original: Option<&str>) -> Option<String> {
    let s = match policy {
        SubjectPolicy::Hide => return Some(HIDDEN.to_string()),
        SubjectPolicy::Keep => original?.to_string(),
        SubjectPolicy::Scrub => scrub(original?),
    };
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > MAX_OUTER_CHARS {
        let cut: String = s.chars().take(MAX_OUTER_CHARS).collect();
        Some(format!("{cut}..."))
    } else {
        Some(s)
    }
}

/// `s` without IPv4 and IPv6 addresses and the white space after each.
pub fn scrub(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(is_ip_char) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let len = from.find(|c: char| !is_ip_char(c)).unwrap_or(from.len());
        let (run, after) = from.split_at(len);
        match ip_prefix(run) {
            Some(ip_len) => {
                // Keep what followed the address in the run (":22" of "1.2.3.4:22").
                let tail = &run[ip_len..];
                if tail.is_empty() {
                    rest = after.trim_start();
                } else {
                    out.push_str(tail);
                    rest = after;
                }
            }
            None => {
                out.push_str(run);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_ip_char(c: char) -> bool {
    c.is_ascii_hexdigit() || c == '.' || c == ':'
}

/// The length of the IP address that `run` starts with, if any: the whole
/// run, or the run without a trailing ":port" or sentence dot.
fn ip_prefix(run: &str) -> Option<usize> {
    let is_ip = |s: &str| {
        s.parse::<IpAddr>().is_ok()
            && s.contains(['.', ':'])
            && s.contains(|c: char| c.is_ascii_hexdigit())
    };
    if is_ip(run) {
        return Some(run.len());
    }
    let trimmed = run.trim_end_matches(['.', ':']);
    if !trimmed.is_empty() && is_ip(trimmed) {
        return Some(trimmed.len());
    }
    // An IPv4 address with a port.
    let (host, port) = run.rsplit_once(':')?;
    (host.parse::<std::net::Ipv4Addr>().is_ok() && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some(host.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ossec_example() {
        assert_eq!(
            scrub("OSSEC Notification - (app) 10.20.2.2 - Alert level 7"),
            "OSSEC Notification - (app) - Alert level 7"
        );
    }

    #[test]
    fn ipv6_ports_and_punctuation() {
        assert_eq!(scrub("from fe80::1 ok"), "from ok");
        assert_eq!(scrub("from 2001:db8::42:1 ok"), "from ok");
        assert_eq!(scrub("host (192.168.1.1) down"), "host () down");
        assert_eq!(scrub("ssh 10.0.0.1:22 refused"), "ssh :22 refused");
        assert_eq!(scrub("seen at 1.2.3.4."), "seen at .");
        assert_eq!(scrub("mapped ::ffff:10.1.2.3 here"), "mapped here");
    }

    #[test]
    fn things_that_are_not_addresses_stay() {
        for s in [
            "Alert level 7",
            "rule 5503 fired",
            "deadbeef cafe",
            "v1.2",
            "12:30:45",
            "a.b.c",
            "x :: y",
        ] {
            assert_eq!(scrub(s), s, "{s}");
        }
    }

    #[test]
    fn policies() {
        let s = Some("Alert 10.0.0.1 x");
        assert_eq!(outer(SubjectPolicy::Keep, s).unwrap(), "Alert 10.0.0.1 x");
        assert_eq!(outer(SubjectPolicy::Scrub, s).unwrap(), "Alert x");
        assert_eq!(outer(SubjectPolicy::Hide, s).unwrap(), "[...]");
        assert_eq!(outer(SubjectPolicy::Hide, None).unwrap(), "[...]");
        assert_eq!(outer(SubjectPolicy::Scrub, None), None);
        let long = "x".repeat(100_000);
        assert_eq!(outer(SubjectPolicy::Keep, Some(&long)).unwrap().len(), 203);
    }
}
