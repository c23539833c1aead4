//! SecureDrop's daily submissions notification, as a route action
//! (`action = "securedrop-journalist"`): what `process_submissions_today.sh`
//! did under procmail.
//!
//! OSSEC's rule 400600 runs `head -1 submissions_today.txt` once a day
//! and mails its output: the line `ossec: output: 'head -1
//! /var/lib/securedrop/submissions_today.txt'`, then a count. From it:
//!
//! - a count: the journalist gets one of two fixed texts, activity or
//!   none, of exactly the same length (the relay and the mail provider
//!   see the size; it must not say which), at most once per
//!   [`SUPPRESS_FOR`] (24 hours less 30 minutes, so that a reboot that
//!   makes the next alert come a little early does not suppress it);
//! - anything else: the admin gets the whole alert under the Subject
//!   "SecureDrop Submissions Error".
//!
//! This module writes the messages; the daemon keeps the stamp
//! (`crate::ingest::journalist`).

use std::time::Duration;

/// The line that precedes the count in a rule-400600 alert.
pub const MARKER: &str = "ossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt";
/// How long after one notification the next is suppressed.
pub const SUPPRESS_FOR: Duration = Duration::from_secs(1410 * 60);
/// The notification's Subject.
pub const SUBJECT: &str = "Submissions in the past 24h";
/// The Subject of an alert whose count could not be read.
pub const ERROR_SUBJECT: &str = "SecureDrop Submissions Error";

/// The two texts, padded to one length as SecureDrop's script pads them.
const ACTIVITY: &str = "There has been submission activity in the past 24 hours.   \r\n\
                        You should login and check SecureDrop. \r\n";
const NO_ACTIVITY: &str = "There has been no submission activity in the past 24 hours.\r\n\
                           You do not need to login to SecureDrop.\r\n";

/// What the alert says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The line after the marker is a number.
    Submissions(u64),
    /// No marker, or no number after it.
    Malformed,
}

/// The count in the line after [`MARKER`].
pub fn count(message: &[u8]) -> Count {
    let body = String::from_utf8_lossy(crate::message::body(message));
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if line.contains(MARKER) {
            let next = lines.next().unwrap_or("").trim();
            return match next.parse::<u64>() {
                Ok(n) if !next.is_empty() && next.bytes().all(|b| b.is_ascii_digit()) => {
                    Count::Submissions(n)
                }
                _ => Count::Malformed,
            };
        }
    }
    Count::Malformed
}

/// The notification for `count` (> 0: activity), as a local client would
/// submit it: every header field and the body of one length whatever the
/// count.
pub fn notification(from: &str, to: &str, submissions: u64) -> Vec<u8> {
    let text = if submissions > 0 {
        ACTIVITY
    } else {
        NO_ACTIVITY
    };
    format!("From: SecureDrop <{from}>\r\nTo: <{to}>\r\nSubject: {SUBJECT}\r\n\r\n{text}")
        .into_bytes()
}

/// The alert whose count could not be read, for the admin.
pub fn error_report(from: &str, to: &[String], alert: &[u8]) -> Vec<u8> {
    let to: Vec<String> = to.iter().map(|a| format!("<{a}>")).collect();
    let mut out = format!(
        "From: alert-relay <{from}>\r\nTo: {}\r\nSubject: {ERROR_SUBJECT}\r\n\r\n\
         alert-relay failed to find the submissions count in the following OSSEC\r\n\
         alert (the line after \"{MARKER}'\"):\r\n\r\n",
        to.join(", ")
    )
    .into_bytes();
    out.extend_from_slice(&crate::message::to_crlf(alert));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(after_marker: &str) -> Vec<u8> {
        format!(
            "Subject: OSSEC Notification - mon - Alert level 1\r\n\r\n\
             OSSEC HIDS Notification.\r\nRule: 400600 fired (level 1) -> \"Daily submissions\"\r\n\
             {MARKER}'\r\n{after_marker}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_count_is_the_line_after_the_marker() {
        assert_eq!(count(&alert("3")), Count::Submissions(3));
        assert_eq!(count(&alert("0")), Count::Submissions(0));
        assert_eq!(count(&alert(" 12 ")), Count::Submissions(12));
        for bad in [
            "",
            "three",
            "-1",
            "3 submissions",
            "99999999999999999999999",
        ] {
            assert_eq!(count(&alert(bad)), Count::Malformed, "{bad:?}");
        }
        assert_eq!(
            count(b"Subject: x\r\n\r\nno marker\r\n3\r\n"),
            Count::Malformed
        );
    }

    #[test]
    fn both_notifications_have_one_length() {
        assert_eq!(ACTIVITY.len(), NO_ACTIVITY.len());
        let a = notification("ossec@example.net", "j@example.org", 7);
        let b = notification("ossec@example.net", "j@example.org", 0);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
    }
}
