//! The outer Subject, per `message.subject`.
//!
//! The outer Subject travels in the clear. OSSEC subjects carry the
//! agent's IP address ("OSSEC Notification - (app) 10.20.2.2 - Alert level
//! 7"), which says something about the monitored network to every mail
//! server on the way; `scrub` removes IPv4 and IPv6 addresses and the white
//! space after them, `hide` replaces the whole subject, as RFC 9788
//! recommends (clients that support header protection show the true one,
//! which is inside the encryption).

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
        // Only what can show is scrubbed: the cut below keeps 200
        // characters, and this keeps a 100 KB subject from costing much.
        SubjectPolicy::Scrub => scrub(
            &original?
                .chars()
                .take(4 * MAX_OUTER_CHARS)
                .collect::<String>(),
        ),
    };
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > MAX_OUTER_CHARS {
        let cut: String = s.chars().take(MAX_OUTER_CHARS).collect();
        Some(format!("{cut}..."))
    } else {
        Some(s)
    }
}

/// `s` without IPv4 and IPv6 addresses, wherever they stand: next to
/// punctuation (`from:10.20.2.2`), with leading zeros (`010.020.002.002`),
/// glued to letters (`10.1.2.3abc`). An address that stood alone between
/// spaces takes the space after it along; the result has no trailing
/// white space.
pub fn scrub(s: &str) -> String {
    let spans = addresses(s);
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    let ip_char = |c: char| c.is_ascii_hexdigit() || c == ':' || c == '.';
    for (start, end) in spans {
        out.push_str(&s[at..start]);
        let before = s[..start].chars().next_back();
        let after = s[end..].chars().next();
        let mut next = end;
        if before.is_none_or(char::is_whitespace) {
            next += s[end..].len() - s[end..].trim_start().len();
        } else if before.is_some_and(ip_char) && after.is_some_and(ip_char) {
            // What was on each side must not join into something that
            // reads as an address ("from:" and ":22" into "from::22").
            out.push(' ');
        }
        at = next;
    }
    out.push_str(&s[at..]);
    out.truncate(out.trim_end().len());
    out
}

/// The byte spans of the IPv4 and IPv6 addresses in `s`, in order, not
/// overlapping.
fn addresses(s: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    // IPv6 first: a run of hex digits, colons and dots with two colons or
    // more (an embedded IPv4 tail included).
    for (start, end) in runs(s, |c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
        let run = &s[start..end];
        if run.matches(':').count() < 2 || !run.contains(|c: char| c.is_ascii_hexdigit()) {
            continue;
        }
        // From each place in the run, the longest address that starts
        // there ("from:fe80::1" holds one after its colon; "fe80::1:"
        // ends a sentence). An address has at most 45 characters, which
        // bounds the tries.
        let mut i = 0;
        while i + 2 <= run.len() {
            let rest = &run[i..];
            let longest = (2..=rest.len().min(45)).rev().find(|&n| {
                rest[..n].contains(|c: char| c.is_ascii_hexdigit())
                    && rest[..n].parse::<std::net::Ipv6Addr>().is_ok()
            });
            match longest {
                Some(n) => {
                    spans.push((start + i, start + i + n));
                    i += n;
                }
                None => i += 1,
            }
        }
    }
    // Then IPv4: four dotted parts of one to three digits, each at most
    // 255, in any run of digits and dots, whatever surrounds it.
    for (start, end) in runs(s, |c| c.is_ascii_digit() || c == '.') {
        if spans.iter().any(|&(a, b)| start < b && a < end) {
            continue;
        }
        let run = &s[start..end];
        let parts: Vec<(usize, &str)> = run
            .split('.')
            .scan(0, |offset, part| {
                let at = *offset;
                *offset += part.len() + 1;
                Some((at, part))
            })
            .collect();
        let octet =
            |p: &str| (1..=3).contains(&p.len()) && p.parse::<u16>().is_ok_and(|n| n <= 255);
        let mut i = 0;
        while i + 4 <= parts.len() {
            if parts[i..i + 4].iter().all(|(_, p)| octet(p)) {
                let (first, _) = parts[i];
                let (last, last_part) = parts[i + 3];
                spans.push((start + first, start + last + last_part.len()));
                i += 4;
            } else {
                i += 1;
            }
        }
    }
    spans.sort_unstable();
    spans
}

/// The byte spans of the maximal runs of characters that `member` takes.
fn runs(s: &str, member: impl Fn(char) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (member(c), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                out.push((st, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((st, s.len()));
    }
    out
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
    fn addresses_next_to_punctuation_with_leading_zeros_or_glued_to_letters() {
        assert_eq!(scrub("from:10.20.2.2 failed"), "from: failed");
        assert_eq!(scrub("login 010.020.002.002 refused"), "login refused");
        assert_eq!(scrub("peer 10.1.2.3abc gone"), "peer abc gone");
        assert_eq!(scrub("src=192.0.2.7,dst=198.51.100.1;"), "src=,dst=;");
        assert_eq!(
            scrub("[2001:db8::1]:22 and fe80::1%eth0"),
            "[]:22 and %eth0"
        );
        assert_eq!(scrub("from:::ffff:10.1.2.3:22 up"), "from: :22 up");
        assert_eq!(
            scrub("Alert from 10.20.2.2"),
            "Alert from",
            "no trailing space"
        );
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
            "v1.2.3 released",
            "300.1.2 of 999.999.999.999",
        ] {
            assert_eq!(scrub(s), s, "{s}");
        }
    }

    /// A small deterministic generator (xorshift), so that the property
    /// test below is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
            list[(self.next() % list.len() as u64) as usize]
        }
    }

    #[test]
    fn no_generated_subject_keeps_an_address() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let before = [
            "", " ", "from:", "(", "[", "src=", "ip ", "host-", "x", "abc", "<", "'", "\"", "/",
        ];
        let after = [
            "", " ", ")", "]", ":22", ".", ",", "abc", "xyz", " failed", "/24", ">", "%eth0",
        ];
        for _ in 0..20_000 {
            let address = match rng.next() % 4 {
                // IPv4, sometimes with leading zeros.
                0 | 1 => (0..4)
                    .map(|_| {
                        let n = rng.next() % 256;
                        if rng.next().is_multiple_of(3) {
                            format!("{n:03}")
                        } else {
                            n.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("."),
                // IPv6, written by std (compressed), sometimes upper case.
                2 => {
                    let groups: Vec<u16> = (0..8)
                        .map(|_| {
                            if rng.next().is_multiple_of(3) {
                                0
                            } else {
                                rng.next() as u16
                            }
                        })
                        .collect();
                    let a: [u16; 8] = groups.try_into().unwrap();
                    let text = std::net::Ipv6Addr::from(a).to_string();
                    if rng.next().is_multiple_of(2) {
                        text.to_uppercase()
                    } else {
                        text
                    }
                }
                // IPv4-mapped IPv6.
                _ => format!(
                    "::ffff:{}.{}.{}.{}",
                    rng.next() % 256,
                    rng.next() % 256,
                    rng.next() % 256,
                    rng.next() % 256
                ),
            };
            let subject = format!(
                "OSSEC Notification{}{address}{} - Alert level 7",
                rng.pick(&before),
                rng.pick(&after)
            );
            let scrubbed = scrub(&subject);
            assert!(
                addresses(&scrubbed).is_empty(),
                "{subject:?} became {scrubbed:?}"
            );
            assert!(
                !scrubbed.contains(&address),
                "{subject:?} became {scrubbed:?}"
            );
            assert_eq!(
                scrub(&scrubbed),
                scrubbed,
                "scrubbing twice changes nothing"
            );
            assert!(
                scrubbed.starts_with("OSSEC Notification") && scrubbed.ends_with("Alert level 7")
            );
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
