//! Validated value types for the configuration file.
//!
//! Each type parses once, at the edge, from the string an admin writes
//! ("14d", "10MiB", "6D:87:EE:..."), and is valid everywhere inside. Their
//! `TryFrom<String>` errors are sentences that end up after the dotted key
//! path in the error an admin sees.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

/// A duration as humans write it: "30s", "5m", "1h", "14d".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!("{s:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\" or \"14d\"")
        })?;
        if d.is_zero() {
            return Err(format!("{s:?} is zero; the duration must be positive"));
        }
        Ok(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes as humans write it: "10MiB", "512KiB", "2MB", "1000".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "SizeInput")]
pub struct ByteSize(pub u64);

/// TOML lets an admin write a size as a bare integer or as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeInput {
    Bytes(u64),
    Text(String),
}

impl TryFrom<SizeInput> for ByteSize {
    type Error = String;

    fn try_from(input: SizeInput) -> Result<Self, Self::Error> {
        let size = match input {
            SizeInput::Bytes(n) => ByteSize(n),
            SizeInput::Text(s) => s.parse()?,
        };
        if size.0 == 0 {
            return Err("the size must be positive".into());
        }
        Ok(size)
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "kB" | "KB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1000 * 1000,
            "MiB" => 1 << 20,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1 << 30,
            _ => {
                return Err(format!(
                    "{s:?} is not a size; write e.g. \"10MiB\", \"512KiB\" or a number of bytes"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a size; write e.g. \"10MiB\""))?;
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

/// A pin on the relay's TLS certificate (`relay.fingerprints`).
///
/// SHA-1 and SHA-256 pins name one certificate; an SPKI pin names its key
/// and so survives a renewal that keeps the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum Pin {
    /// SHA-1 of the DER leaf certificate (what SecureDrop's guide pins).
    CertSha1([u8; 20]),
    /// SHA-256 of the DER leaf certificate.
    CertSha256([u8; 32]),
    /// SHA-256 of the leaf's SubjectPublicKeyInfo, written `sha256-spki:BASE64`.
    SpkiSha256([u8; 32]),
}

pub const SPKI_PREFIX: &str = "sha256-spki:";

impl TryFrom<String> for Pin {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for Pin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(b64) = t.strip_prefix(SPKI_PREFIX) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("{s:?}: the SPKI pin is not valid base64 ({e})"))?;
            let digest: [u8; 32] = bytes.try_into().map_err(|_| {
                format!("{s:?}: an SPKI pin is the base64 of a 32-byte SHA-256 digest")
            })?;
            return Ok(Pin::SpkiSha256(digest));
        }
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        let bytes = decode_hex(&hex).ok_or_else(|| {
            format!(
                "{s:?} is not a fingerprint: use SHA-1 (40 hex digits), SHA-256 (64 hex digits), \
                 with or without colons, or sha256-spki:BASE64; `relayctl fingerprint` prints them"
            )
        })?;
        match bytes.len() {
            20 => Ok(Pin::CertSha1(bytes.try_into().unwrap_or([0; 20]))),
            32 => Ok(Pin::CertSha256(bytes.try_into().unwrap_or([0; 32]))),
            n => Err(format!(
                "{s:?} has {} hex digits: a SHA-1 fingerprint has 40, a SHA-256 fingerprint 64",
                n * 2
            )),
        }
    }
}

impl fmt::Display for Pin {
    /// Config syntax: colon-separated upper-case hex, or `sha256-spki:BASE64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::CertSha1(d) => f.write_str(&colon_hex(d)),
            Pin::CertSha256(d) => f.write_str(&colon_hex(d)),
            Pin::SpkiSha256(d) => write!(
                f,
                "{SPKI_PREFIX}{}",
                base64::engine::general_purpose::STANDARD.encode(d)
            ),
        }
    }
}

/// An OpenPGP fingerprint as `[[recipients]].fingerprint` holds it:
/// upper-case hex without spaces, 40 digits (v4) or 64 (v6).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyFingerprint(String);

impl KeyFingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyFingerprint {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::str::FromStr for KeyFingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let hex = hex.strip_prefix("0X").unwrap_or(&hex).to_string();
        if !hex.chars().all(|c| c.is_ascii_hexdigit()) || !(hex.len() == 40 || hex.len() == 64) {
            return Err(format!(
                "{s:?} is not an OpenPGP fingerprint: 40 hex digits for a v4 key, 64 for v6; \
                 `relayctl key FILE` prints it"
            ));
        }
        Ok(KeyFingerprint(hex))
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `AB:CD:EF` upper-case hex, the form `openssl x509 -fingerprint` prints.
pub fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_humans_write_them() {
        let d = HumanDuration::try_from("14d".to_string()).unwrap();
        assert_eq!(d.0, Duration::from_secs(14 * 86400));
        assert!(HumanDuration::try_from("soon".to_string()).is_err());
        assert!(HumanDuration::try_from("0s".to_string()).is_err());
    }

    #[test]
    fn sizes_binary_and_decimal() {
        assert_eq!("10MiB".parse::<ByteSize>().unwrap().0, 10 << 20);
        assert_eq!("2 MB".parse::<ByteSize>().unwrap().0, 2_000_000);
        assert_eq!("1000".parse::<ByteSize>().unwrap().0, 1000);
        assert!("10 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(10 << 20).to_string(), "10MiB");
    }

    #[test]
    fn pins_in_every_accepted_spelling() {
        let colon = "6D:87:EE:CB:D0:37:2F:88:B8:29:06:FB:35:F4:65:00:7F:FD:84:29";
        let sha1: Pin = colon.parse().unwrap();
        assert!(matches!(sha1, Pin::CertSha1(_)));
        assert_eq!(sha1.to_string(), colon);
        let bare: Pin = colon.replace(':', "").to_lowercase().parse().unwrap();
        assert_eq!(bare, sha1);
        let sha256: Pin = "ab".repeat(32).parse().unwrap();
        assert!(matches!(sha256, Pin::CertSha256(_)));
        let spki: Pin = format!(
            "sha256-spki:{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        )
        .parse()
        .unwrap();
        assert_eq!(spki, Pin::SpkiSha256([7; 32]));
        assert_eq!(spki.to_string().parse::<Pin>().unwrap(), spki);
    }

    #[test]
    fn bad_pins_say_what_is_expected() {
        let e = "6D:87:EE".parse::<Pin>().unwrap_err();
        assert!(e.contains("6 hex digits"), "{e}");
        let e = "zz".repeat(20).parse::<Pin>().unwrap_err();
        assert!(e.contains("not a fingerprint"), "{e}");
        let e = "sha256-spki:AAAA".parse::<Pin>().unwrap_err();
        assert!(e.contains("32-byte"), "{e}");
    }

    #[test]
    fn key_fingerprints_are_normalised() {
        let fp: KeyFingerprint = "fd72 0ad9 eba3 4b1c 1234 5678 9abc def0 1234 5678"
            .parse()
            .unwrap();
        assert_eq!(fp.as_str(), "FD720AD9EBA34B1C123456789ABCDEF012345678");
        assert!("FD720AD9".parse::<KeyFingerprint>().is_err());
    }
}
