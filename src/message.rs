//! Raw message helpers: the header section as bytes, before any parsing.
//!
//! Alerts arrive malformed (bare LF, 8-bit bytes without MIME headers,
//! duplicate fields), so these work on bytes and never fail: a message
//! whose first line is not a header field simply has no header.

/// The header section of a message: up to and including the empty line,
/// or nothing when the message does not start with a header.
pub fn header_len(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |n| pos + n + 1);
        let line = &message[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return end;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        let field = line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| colon > 0 && line[..colon].iter().all(|b| b.is_ascii_graphic()));
        if !(field || continuation && pos > 0) {
            // Not a header line: the message has no (more) header.
            return pos;
        }
        pos = end;
    }
    pos
}

/// The message without its Bcc header fields (and their continuation lines).
pub fn remove_bcc(message: &[u8]) -> Vec<u8> {
    let header_end = header_len(message);
    let mut out = Vec::with_capacity(message.len());
    let mut skipping = false;
    for line in message[..header_end].split_inclusive(|&b| b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&message[header_end..]);
    out
}

pub fn has_header(message: &[u8], name: &str) -> bool {
    let header = &message[..header_len(message)];
    header.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
    })
}

/// One header field: its name and its raw lines (continuations included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
}

impl Field<'_> {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value, unfolded, with surrounding white space trimmed.
    pub fn value(&self) -> String {
        let colon = self.raw.iter().position(|&b| b == b':').unwrap_or(0);
        let text = String::from_utf8_lossy(&self.raw[(colon + 1).min(self.raw.len())..]);
        text.split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The header fields of `message`, in order.
pub fn fields(message: &[u8]) -> Vec<Field<'_>> {
    let header = &message[..header_len(message)];
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let end = start + line.len();
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if continuation {
            if let Some(last) = out.last_mut() {
                let from = last.raw.as_ptr() as usize - header.as_ptr() as usize;
                last.raw = &header[from..end];
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            out.push(Field {
                name: line[..colon].trim_ascii(),
                raw: &header[start..end],
            });
        }
        start = end;
    }
    out
}

/// The body: what follows the header section and its empty line.
pub fn body(message: &[u8]) -> &[u8] {
    &message[header_len(message)..]
}

/// `bytes` with every line ending as CRLF (bare LF and bare CR fixed).
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    // Writing into a Vec cannot fail.
    let _ = write_crlf(&mut out, bytes);
    out
}

/// Writes `bytes` with every line ending as CRLF, in runs, without a copy
/// of the whole: a 10 MiB message costs no second 10 MiB.
pub fn write_crlf(w: &mut (impl std::io::Write + ?Sized), bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    while let Some(pos) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        w.write_all(&rest[..pos])?;
        w.write_all(b"\r\n")?;
        let skip = if rest[pos] == b'\r' && rest.get(pos + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[pos + skip..];
    }
    w.write_all(rest)
}

/// A writer that turns each `\n` written through it into `\r\n`: for
/// text that has bare LF line ends only (ASCII armor), on its way into the
/// outgoing message.
pub struct LfToCrlf<W>(pub W);

impl<W: std::io::Write> std::io::Write for LfToCrlf<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            self.0.write_all(&rest[..pos])?;
            self.0.write_all(b"\r\n")?;
            rest = &rest[pos + 1..];
        }
        self.0.write_all(rest)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_continuations_and_duplicates() {
        let m = b"To: a@x\r\nTo: b@x\r\nSubject: long\r\n  folded\r\n\r\nTo: body\r\n";
        let f = fields(m);
        assert_eq!(f.len(), 3);
        assert!(f[0].is("to") && f[1].is("TO"));
        assert_eq!(f[2].value(), "long folded");
        assert_eq!(f[2].raw, b"Subject: long\r\n  folded\r\n");
        assert_eq!(body(m), b"To: body\r\n");
    }

    #[test]
    fn no_header_means_all_body() {
        let m = b"just text\nmore\n";
        assert!(fields(m).is_empty());
        assert_eq!(body(m), m);
        assert_eq!(header_len(b""), 0);
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd");
        assert_eq!(to_crlf(b"\r\r\n\n"), b"\r\n\r\n\r\n");
        let mut out = Vec::new();
        std::io::Write::write_all(&mut LfToCrlf(&mut out), b"-----BEGIN\n\nabc\n").unwrap();
        assert_eq!(out, b"-----BEGIN\r\n\r\nabc\r\n");
    }
}
