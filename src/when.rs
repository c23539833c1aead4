//! Points in time as people read them: RFC 3339, UTC, to the second.
//!
//! For any `SystemTime`, including ones a hostile file chose (an entry's
//! `created` header, a file's mtime, a damaged health record): humantime
//! panics before 1970 and after 9999, and adding seconds to the epoch
//! panics on overflow, so both are held to the range it can print.

use std::time::{Duration, SystemTime};

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const LAST: u64 = 253_402_300_799;

/// `t` in RFC 3339, or what it is when it cannot be written.
pub fn rfc3339(t: SystemTime) -> String {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Err(_) => "before 1970".to_string(),
        Ok(d) if d.as_secs() > LAST => "after 9999".to_string(),
        Ok(_) => humantime::format_rfc3339_seconds(t).to_string(),
    }
}

/// The time `secs` seconds after the Unix epoch, held to what
/// [`rfc3339`] can write.
pub fn from_unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.min(LAST + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_time_can_be_written_without_a_panic() {
        assert_eq!(rfc3339(from_unix(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(from_unix(LAST)), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(from_unix(u64::MAX)), "after 9999");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "before 1970");
    }
}
