//! Padding: what the size of an encrypted alert tells the relay.
//!
//! Encryption hides an alert's words but not its length, and lengths
//! say a lot: a "disk full" alert is short, a rootkit report with a file
//! list is long, and a relay that sees every message learns which is
//! which. So the plaintext is padded, inside the encryption, to a size
//! that many plaintexts share ([`Padding`], `message.pad`):
//!
//! - `padme` (the default): Padmé, from Nikitin et al., "Reducing
//!   Metadata Leakage from Encrypted Files and Communication with PURBs"
//!   (PETS 2019). A length keeps only its top `log2(log2 L) + 1` bits,
//!   so at most about 12% is added and a length reveals O(log log L)
//!   bits instead of O(log L).
//! - a size such as `"4KiB"`: the next multiple of it. Every alert under
//!   the size looks the same; costs more bytes.
//! - `none`.
//!
//! Why not OpenPGP's own padding: RFC 9580's Padding packet belongs to
//! v6 messages, which the GnuPG our users decrypt with does not read,
//! and sequoia's `Padder` hides the padding in a compression container,
//! which the journalist notification must not have. So the filler is
//! part of the plaintext, where every reader ignores it: a folded
//! `X-Padding` header field in the PGP/MIME protected part (mail
//! clients do not show X- fields), or trailing blank lines in the
//! inline body. Either is made to an exact byte count.

use std::io::{self, Write};

/// How far `message.pad` rounds a plaintext's length up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    #[default]
    Padme,
    /// The next multiple of this many bytes.
    Multiple(u64),
    None,
}

/// The smallest and largest `message.pad` multiple: below 64 bytes
/// padding hides nothing; above 1 MiB it only costs.
pub const MULTIPLE_RANGE: std::ops::RangeInclusive<u64> = 64..=(1 << 20);

impl std::str::FromStr for Padding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "padme" => Ok(Padding::Padme),
            "none" => Ok(Padding::None),
            other => {
                let size: crate::config::ByteSize = other.parse().map_err(|_| {
                    format!("{s:?} is not a padding; write \"padme\", \"none\" or a size such as \"4KiB\"")
                })?;
                if !MULTIPLE_RANGE.contains(&size.0) {
                    return Err(format!(
                        "a padding of {size} is out of range; write a size from 64 bytes to 1MiB"
                    ));
                }
                Ok(Padding::Multiple(size.0))
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Padding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Padding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Padding::Padme => f.write_str("padme"),
            Padding::None => f.write_str("none"),
            Padding::Multiple(n) => write!(f, "{}", crate::config::ByteSize(*n)),
        }
    }
}

impl Padding {
    /// How many bytes of filler bring a plaintext of `len` bytes to its
    /// padded size, given that a filler is never shorter than `min`
    /// (the smallest well-formed one): 0 with `none`, else at least `min`.
    pub fn filler(self, len: usize, min: usize) -> usize {
        let at_least = len.saturating_add(min);
        let target = match self {
            Padding::None => return 0,
            Padding::Padme => padme(at_least as u64),
            Padding::Multiple(n) => (at_least as u64).div_ceil(n).saturating_mul(n),
        };
        usize::try_from(target).map_or(min, |t| t - len)
    }
}

/// Padmé: `len` rounded up so that only its top `log2(log2 len) + 1`
/// bits may be set.
fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = u64::from(len.ilog2());
    let s = u64::from(e.ilog2()) + 1;
    let mask = (1u64 << (e - s)) - 1;
    len.saturating_add(mask) & !mask
}

/// The header field's name and an empty first line; the filler follows
/// on folded continuation lines, so that no line passes 78 characters.
const FIELD_HEAD: &[u8] = b"X-Padding:\r\n";

/// Lines stay within RFC 5322's recommended 78 characters.
const LINE: usize = 78;

/// One kind of filler line: `lead`, then at least `min_fill` of `fill`,
/// then `eol`.
struct Lines {
    lead: &'static [u8],
    fill: u8,
    min_fill: usize,
    eol: &'static [u8],
}

/// A header field's continuation line: folding white space, then text.
const CONTINUATION: Lines = Lines {
    lead: b" ",
    fill: b'x',
    min_fill: 1,
    eol: b"\r\n",
};

impl Lines {
    const fn shortest(&self) -> usize {
        self.lead.len() + self.min_fill + self.eol.len()
    }

    /// Writes exactly `n` bytes of such lines (`n` is 0 or at least
    /// [`Lines::shortest`]): long lines first, and the last two shared
    /// so that neither is too short.
    fn write(&self, out: &mut dyn Write, mut n: usize) -> io::Result<()> {
        let shortest = self.shortest();
        let longest = LINE + self.eol.len();
        let mut line = Vec::with_capacity(longest);
        while n > 0 {
            let take = if n <= longest {
                n
            } else if n - longest >= shortest {
                longest
            } else {
                n - shortest
            };
            line.clear();
            line.extend_from_slice(self.lead);
            line.resize(take - self.eol.len(), self.fill);
            line.extend_from_slice(self.eol);
            out.write_all(&line)?;
            n -= take;
        }
        Ok(())
    }
}

/// The shortest [`header_field`].
pub const FIELD_MIN: usize = FIELD_HEAD.len() + CONTINUATION.shortest();

/// Writes an `X-Padding` header field of exactly `n` bytes (at least
/// [`FIELD_MIN`]), folded into lines of at most 78 characters.
pub fn header_field(out: &mut dyn Write, n: usize) -> io::Result<()> {
    out.write_all(FIELD_HEAD)?;
    CONTINUATION.write(
        out,
        n.saturating_sub(FIELD_HEAD.len())
            .max(CONTINUATION.shortest()),
    )
}

/// Writes exactly `n` bytes (at least `eol`'s length) of blank lines,
/// spaces then `eol`: the filler at the end of an inline body, which a
/// reader sees as empty lines.
pub fn blank_lines(out: &mut dyn Write, n: usize, eol: &'static [u8]) -> io::Result<()> {
    let lines = Lines {
        lead: b"",
        fill: b' ',
        min_fill: 0,
        eol,
    };
    lines.write(out, n.max(eol.len()))
}

/// Counts what is written to it: the length of a plaintext before it is
/// written again, padded, into the encryption.
#[derive(Default)]
pub struct Counter(pub usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padme_keeps_the_top_bits_and_adds_at_most_12_percent() {
        assert_eq!(padme(0), 0);
        assert_eq!(padme(1), 1);
        assert_eq!(padme(9), 10);
        assert_eq!(padme(1000), 1024);
        assert_eq!(padme(3000), 3072);
        for len in 2..200_000u64 {
            let p = padme(len);
            assert!(p >= len, "{len}");
            assert!((p - len) * 100 <= len * 12 + 100, "{len} -> {p}");
            assert_eq!(padme(p), p, "a padded length is its own padding");
        }
    }

    #[test]
    fn filler_reaches_the_padded_size_and_is_never_shorter_than_the_minimum() {
        for len in 0..20_000 {
            assert_eq!(Padding::None.filler(len, FIELD_MIN), 0);
            let f = Padding::Multiple(4096).filler(len, FIELD_MIN);
            assert!(f >= FIELD_MIN);
            assert_eq!((len + f) % 4096, 0, "{len}");
            let f = Padding::Padme.filler(len, FIELD_MIN);
            assert!(f >= FIELD_MIN);
            assert_eq!(padme((len + f) as u64), (len + f) as u64);
        }
        // A 300-byte and a 3,000-byte plaintext in the same 4 KiB.
        assert_eq!(
            300 + Padding::Multiple(4096).filler(300, FIELD_MIN),
            3000 + Padding::Multiple(4096).filler(3000, FIELD_MIN)
        );
    }

    #[test]
    fn the_header_field_has_the_exact_length_and_is_well_formed() {
        for n in FIELD_MIN..3000 {
            let mut out = Vec::new();
            header_field(&mut out, n).unwrap();
            assert_eq!(out.len(), n, "{n}");
            let text = std::str::from_utf8(&out).unwrap();
            assert!(text.starts_with("X-Padding:\r\n "), "{text:?}");
            assert!(text.ends_with("\r\n"));
            let lines: Vec<&str> = text.split_terminator("\r\n").collect();
            assert_eq!(lines.concat().len() + 2 * lines.len(), n);
            for (i, line) in lines.iter().enumerate() {
                assert!(line.len() <= 78, "{n}: {line:?}");
                assert!(!line.contains(['\r', '\n']));
                if i > 0 {
                    // A continuation line: folding white space, then text.
                    assert!(line.starts_with(' '), "{n}: {line:?}");
                    assert!(line.len() >= 2 && !line[1..].contains(' '), "{n}: {line:?}");
                }
            }
        }
    }

    #[test]
    fn blank_lines_have_the_exact_length_and_only_white_space() {
        for eol in [&b"\n"[..], b"\r\n"] {
            for n in eol.len()..3000 {
                let mut out = Vec::new();
                blank_lines(&mut out, n, eol).unwrap();
                assert_eq!(out.len(), n);
                assert!(out.iter().all(|b| b" \r\n".contains(b)));
                assert!(out.ends_with(eol));
                let text = String::from_utf8(out).unwrap();
                for line in text.split_terminator(std::str::from_utf8(eol).unwrap()) {
                    assert!(line.len() <= 78 && !line.contains(['\r', '\n']), "{line:?}");
                }
            }
        }
    }

    #[test]
    fn config_values() {
        assert_eq!("padme".parse::<Padding>(), Ok(Padding::Padme));
        assert_eq!("none".parse::<Padding>(), Ok(Padding::None));
        assert_eq!("4KiB".parse::<Padding>(), Ok(Padding::Multiple(4096)));
        assert_eq!("512".parse::<Padding>(), Ok(Padding::Multiple(512)));
        for bad in ["", "padded", "4 parsecs", "8", "2MiB", "-1"] {
            let e = bad.parse::<Padding>().unwrap_err();
            assert!(
                e.contains("padme") || e.contains("64 bytes to 1MiB"),
                "{bad}: {e}"
            );
        }
        assert_eq!(Padding::Multiple(4096).to_string(), "4KiB");
    }
}
