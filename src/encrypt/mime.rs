//! The outgoing message's structure: outer headers from an allow-list,
//! the RFC 3156 PGP/MIME envelope, the RFC 9788 protected payload, the
//! inline form and the key-failure notice.
//!
//! Everything built here uses CRLF line endings, as it goes on the wire.

use std::io::{self, Write};

use mail_builder::headers::Header;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::text::Text;

use super::pad;
use crate::config::Mailbox;
use crate::message;

/// The outer header fields, in order. Nothing else of the original is in
/// the clear: not Received, X-Originating-IP, X-Mailer, User-Agent,
/// Reply-To or X-IDS-OSSEC.
pub struct Outer {
    fields: Vec<(&'static str, Vec<u8>)>,
}

impl Outer {
    pub fn new(
        from: &Mailbox,
        to: &str,
        subject: Option<&str>,
        date: &str,
        message_id: &str,
    ) -> Outer {
        let mut fields = Vec::new();
        let from = MbAddress::new_address(from.name.as_deref(), from.address.as_str());
        fields.push(("From", render(&from, "From")));
        let to = MbAddress::new_address(None::<&str>, to);
        fields.push(("To", render(&to, "To")));
        if let Some(s) = subject {
            fields.push(("Subject", render(&Text::new(s), "Subject")));
        }
        fields.push(("Date", format!(" {date}\r\n").into_bytes()));
        fields.push(("Message-ID", format!(" <{message_id}>\r\n").into_bytes()));
        Outer { fields }
    }

    /// The fields as a header section, without the MIME fields.
    fn write(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.fields {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }

    /// RFC 9788 section 2.2: what the outer header says, recorded inside.
    fn write_hp_outer(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.fields {
            out.extend_from_slice(b"HP-Outer: ");
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value);
        }
    }
}

/// A header value as mail-builder encodes and folds it, with its CRLF.
fn render(header: &impl Header, name: &str) -> Vec<u8> {
    let mut out = vec![b' '];
    header.write_header(&mut out, name.len() + 2);
    out
}

/// Writes the cleartext that `pgp-mime` encrypts: a complete MIME entity
/// with the original header fields and body, its Content-Type marked as
/// carrying protected headers (RFC 9788 `hp="cipher"`, and the older
/// `protected-headers="v1"` that Thunderbird and K-9 read). Written
/// straight into the encryption, without a copy of the message. With
/// `padding` (0, or at least [`pad::FIELD_MIN`]) bytes of filler in an
/// `X-Padding` field at the end of the header.
pub fn write_protected_payload(
    out: &mut dyn Write,
    original: &[u8],
    outer: &Outer,
    arrival_date: &str,
    padding: usize,
) -> io::Result<()> {
    let fields = message::fields(original);
    let body = message::body(original);

    let content_type = fields
        .iter()
        .find(|f| f.is("Content-Type"))
        .map(|f| f.value());
    let content_type = match content_type {
        Some(ct) => ct.trim_end_matches(';').to_string(),
        // No MIME header: 8-bit text of unknown charset, as OSSEC sends
        // it. UTF-8 if it is, else Latin-1, which shows every byte.
        None if std::str::from_utf8(body).is_ok() => "text/plain; charset=\"utf-8\"".into(),
        None => "text/plain; charset=\"iso-8859-1\"".into(),
    };
    write!(
        out,
        "Content-Type: {content_type}; protected-headers=\"v1\"; hp=\"cipher\"\r\n"
    )?;
    match fields.iter().find(|f| f.is("Content-Transfer-Encoding")) {
        Some(cte) => message::write_crlf(out, cte.raw)?,
        None if !body.is_ascii() => out.write_all(b"Content-Transfer-Encoding: 8bit\r\n")?,
        None => {}
    }
    out.write_all(b"MIME-Version: 1.0\r\n")?;
    for f in &fields {
        if f.is("Content-Type") || f.is("Content-Transfer-Encoding") || f.is("MIME-Version") {
            continue;
        }
        message::write_crlf(out, f.raw)?;
    }
    if !fields.iter().any(|f| f.is("Date")) {
        write!(out, "Date: {arrival_date}\r\n")?;
    }
    let mut hp = Vec::with_capacity(512);
    outer.write_hp_outer(&mut hp);
    out.write_all(&hp)?;
    if padding > 0 {
        pad::header_field(out, padding)?;
    }
    out.write_all(b"\r\n")?;
    message::write_crlf(out, body)
}

/// RFC 3156 multipart/encrypted around an armored OpenPGP message (CRLF
/// line ends). The header and the MIME skeleton go in front of the armor
/// in its own buffer, which [`super::encrypt_armored`] leaves room for:
/// the ciphertext is not copied.
pub fn pgp_mime(outer: &Outer, mut armored: Vec<u8>, boundary: &str) -> Vec<u8> {
    let mut head = Vec::with_capacity(1024);
    outer.write(&mut head);
    head.extend_from_slice(
        format!(
            "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
             boundary=\"{boundary}\"\r\n\
             \r\n\
             This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
             --{boundary}\r\n\
             Content-Type: application/pgp-encrypted\r\n\
             Content-Description: PGP/MIME version identification\r\n\
             \r\n\
             Version: 1\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
             Content-Description: OpenPGP encrypted message\r\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\
             \r\n"
        )
        .as_bytes(),
    );
    armored.splice(0..0, head);
    armored.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    armored
}

/// A text/plain message whose body is the armored encryption of the
/// original body (CRLF line ends), as SecureDrop's procmail script
/// produces.
pub fn inline(outer: &Outer, mut armored: Vec<u8>) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    outer.write(&mut head);
    head.extend_from_slice(
        b"Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
    );
    armored.splice(0..0, head);
    armored
}

/// A plaintext message with no alert content: only `text`.
pub fn notice(outer: &Outer, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 512);
    outer.write(&mut out);
    out.extend_from_slice(
        b"Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    out.extend_from_slice(&message::to_crlf(text.as_bytes()));
    out
}
