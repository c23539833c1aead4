//! The DATA reader: turns the SMTP DATA stream into message bytes.
//!
//! RFC 5321 section 4.5.2: the data ends at a line that holds a single
//! "."; a line that starts with "." has that dot removed (unstuffing).
//! Lines may end in CRLF or, from sloppy clients, a bare LF; both are kept
//! as received. The end line may also be ".\n". Accepting that is safe
//! here because alert-relay never forwards the raw stream: every message is
//! rebuilt and encrypted, so there is no downstream parser to smuggle a
//! second message past.
//!
//! The reader never buffers more than `max_size` bytes: past the limit it
//! keeps reading to the end line, so the session stays in sync and can
//! answer 552, but discards the bytes.

/// Where in a line the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the first byte of a line.
    LineStart,
    /// Inside a line.
    Middle,
    /// After a "." that started a line.
    Dot,
    /// After "." and "\r" at the start of a line.
    DotCr,
}

/// Incremental DATA decoder; feed it bytes until it reports the end.
#[derive(Debug)]
pub struct DataReader {
    at: At,
    body: Vec<u8>,
    max_size: usize,
    /// Bytes of message seen, counting those dropped past the limit.
    seen: usize,
    /// False once [`DataReader::discard`] was called.
    keep: bool,
}

/// What [`DataReader::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All of the input was consumed; the message goes on.
    More,
    /// The end line was found after this many input bytes.
    Done(usize),
}

impl DataReader {
    pub fn new(max_size: usize) -> DataReader {
        DataReader {
            at: At::LineStart,
            body: Vec::new(),
            max_size,
            seen: 0,
            keep: true,
        }
    }

    fn push(&mut self, b: u8) {
        self.seen += 1;
        if self.keep && self.body.len() < self.max_size {
            self.body.push(b);
        }
    }

    /// Consumes input up to and including the end line.
    pub fn feed(&mut self, input: &[u8]) -> Progress {
        for (i, &b) in input.iter().enumerate() {
            self.at = match (self.at, b) {
                (At::LineStart, b'.') => At::Dot,
                (At::Dot, b'\n') | (At::DotCr, b'\n') => return Progress::Done(i + 1),
                (At::Dot, b'\r') => At::DotCr,
                (At::DotCr, other) => {
                    // ".\rX": not the end; the dot was stuffing.
                    self.push(b'\r');
                    self.push(other);
                    if other == b'\n' {
                        At::LineStart
                    } else {
                        At::Middle
                    }
                }
                (_, b'\n') => {
                    self.push(b'\n');
                    At::LineStart
                }
                (_, other) => {
                    self.push(other);
                    At::Middle
                }
            };
        }
        Progress::More
    }

    /// Message bytes kept so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether no message byte was kept.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Keeps nothing more, and gives back what was kept: the rest is read
    /// to the end line and dropped (the memory budget ran out).
    pub fn discard(&mut self) {
        self.body = Vec::new();
        self.keep = false;
    }

    /// True when the message went over the size limit.
    pub fn too_big(&self) -> bool {
        self.seen > self.max_size
    }

    /// The message, once [`Progress::Done`] was returned.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discarding_reader_keeps_nothing_but_still_finds_the_end_and_the_size() {
        let mut r = DataReader::new(10);
        assert_eq!(r.feed(b"abc"), Progress::More);
        assert_eq!(r.len(), 3);
        r.discard();
        assert_eq!(r.feed(b"defghijklmnop\r\n.\r\nNEXT"), Progress::Done(18));
        assert!(r.is_empty());
        assert!(r.too_big(), "18 bytes seen, 10 allowed");
    }

    fn decode(input: &[u8]) -> (Vec<u8>, usize) {
        let mut r = DataReader::new(1 << 20);
        match r.feed(input) {
            Progress::Done(n) => (r.into_body(), n),
            Progress::More => panic!("no end found in {input:?}"),
        }
    }

    #[test]
    fn ends_at_a_lone_dot_and_leaves_the_rest() {
        let (body, n) = decode(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(body, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(n, b"Subject: x\r\n\r\nhello\r\n.\r\n".len());
    }

    #[test]
    fn unstuffs_leading_dots() {
        let (body, _) = decode(b"..hidden\r\n.x\r\n...\r\n.\r\n");
        assert_eq!(body, b".hidden\r\nx\r\n..\r\n");
    }

    #[test]
    fn empty_message_and_bare_lf() {
        assert_eq!(decode(b".\r\n").0, b"");
        let (body, _) = decode(b"a\nb\n.\n");
        assert_eq!(body, b"a\nb\n");
    }

    #[test]
    fn dot_cr_without_lf_is_content() {
        let (body, _) = decode(b".\rx\r\n.\r\n");
        assert_eq!(body, b"\rx\r\n");
    }

    #[test]
    fn the_end_can_arrive_split_across_reads() {
        let mut r = DataReader::new(100);
        assert_eq!(r.feed(b"line\r"), Progress::More);
        assert_eq!(r.feed(b"\n."), Progress::More);
        assert_eq!(r.feed(b"\r"), Progress::More);
        assert_eq!(r.feed(b"\nNEXT"), Progress::Done(1));
        assert_eq!(r.into_body(), b"line\r\n");
    }

    #[test]
    fn oversize_keeps_reading_but_not_storing() {
        let mut r = DataReader::new(4);
        assert_eq!(r.feed(b"0123456789\r\n.\r\n"), Progress::Done(15));
        assert!(r.too_big());
        assert_eq!(r.into_body().len(), 4);
    }

    #[test]
    fn eight_bit_and_nul_bytes_pass_through() {
        let (body, _) = decode(b"caf\xe9 \x00 \xff\r\n.\r\n");
        assert_eq!(body, b"caf\xe9 \x00 \xff\r\n");
    }
}
