//! HTTPS to the token endpoint: one POST of a form, one answer, on the
//! TLS stack the relay client already uses (rustls, ring), with
//! `httparse` reading the answer's head.
//!
//! It is not a general HTTP client and does not try to be: no redirects,
//! no cookies, no proxies, no keep-alive (`Connection: close`), no
//! compression. What it must be is careful: the server is checked
//! against the CAs, everything it sends is bounded ([`MAX_RESPONSE`]) and
//! the whole exchange has one deadline, and the request (which holds a
//! refresh token or a client secret) is zeroized after it is sent.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use zeroize::Zeroizing;

/// More than any token response (Microsoft's are about 5 KB).
pub const MAX_RESPONSE: usize = 256 << 10;

/// An `https://host[:port]/path` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// The path and query, from the first `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s
            .strip_prefix("https://")
            .ok_or_else(|| format!("{s:?} is not an https:// address"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path
        };
        if authority.contains('@') || path.contains('#') {
            return Err(format!("{s:?}: no user or fragment, please"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{s:?}: {p:?} is not a port"))?,
            ),
            _ => (authority, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty()
            || port == 0
            || path.chars().any(|c| c.is_control() || c == ' ')
            || ServerName::try_from(host.to_string()).is_err()
        {
            return Err(format!("{s:?} is not an https:// address"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path,
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            443 => write!(f, "https://{}{}", self.host, self.path),
            p => write!(f, "https://{}:{p}{}", self.host, self.path),
        }
    }
}

/// Why no answer came. All are temporary: the endpoint may be back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    Connect(String),
    Tls(String),
    Timeout,
    /// What came back is not an HTTP response within the limits.
    Protocol(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Tls(e) => write!(f, "TLS: {e}"),
            HttpError::Timeout => write!(f, "no answer in time"),
            HttpError::Protocol(e) => write!(f, "not an HTTP answer: {e}"),
        }
    }
}

/// An answer: its status and body (which may hold tokens: no Debug).
pub struct Response {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

/// `application/x-www-form-urlencoded`, every byte outside RFC 3986's
/// unreserved set percent-encoded.
pub fn form(fields: &[(&str, &str)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

/// Percent-encodes `s` onto `out` (a query value, a form field).
pub fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// POSTs `body` (a form) to `url`, within `timeout` for the whole
/// exchange.
pub async fn post_form(
    url: &Url,
    body: &str,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    tokio::time::timeout(timeout, exchange(url, body, tls))
        .await
        .map_err(|_| HttpError::Timeout)?
}

async fn exchange(url: &Url, body: &str, tls: &Arc<ClientConfig>) -> Result<Response, HttpError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| HttpError::Connect(format!("{}:{}: {e}", url.host, url.port)))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(url.host.clone())
        .map_err(|_| HttpError::Connect(format!("{:?} is not a host name", url.host)))?;
    let mut stream = TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    let request = Zeroizing::new(format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Accept: application/json\r\nUser-Agent: alert-relay/{}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        url.path,
        match url.port {
            443 => url.host.clone(),
            port => format!("{}:{port}", url.host),
        },
        env!("CARGO_PKG_VERSION"),
        body.len()
    ));
    let io = |e: std::io::Error| HttpError::Connect(e.to_string());
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    drop(request);

    let mut raw = Zeroizing::new(Vec::with_capacity(8192));
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                if raw.len() + n > MAX_RESPONSE {
                    return Err(HttpError::Protocol(format!(
                        "an answer of more than {MAX_RESPONSE} bytes"
                    )));
                }
                raw.extend_from_slice(&chunk[..n]);
                if complete(&raw) {
                    break;
                }
            }
            // A server that closes without TLS close_notify: what came
            // is judged by its framing.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(HttpError::Connect(e.to_string())),
        }
    }
    let _ = stream.shutdown().await;
    parse(&raw)
}

/// Whether `raw` holds a whole response (by its Content-Length or the
/// last chunk), so that a server keeping the connection open is not
/// waited for.
fn complete(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(head)) => match framing(response.headers) {
            Framing::Length(n) => raw.len() >= head.saturating_add(n),
            Framing::Chunked => raw[head..].ends_with(b"0\r\n\r\n"),
            Framing::Close => false,
        },
        _ => false,
    }
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn framing(headers: &[httparse::Header<'_>]) -> Framing {
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        Framing::Chunked
    } else if let Some(n) = value("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Close
    }
}

/// The status and body of a whole response (public for the fuzz target).
pub fn parse_response(raw: &[u8]) -> Result<Response, HttpError> {
    parse(raw)
}

/// The status and body of a whole response.
fn parse(raw: &[u8]) -> Result<Response, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(HttpError::Protocol(
                "the connection closed inside the answer's head".into(),
            ));
        }
        Err(e) => return Err(HttpError::Protocol(e.to_string())),
    };
    let status = response
        .code
        .ok_or_else(|| HttpError::Protocol("no status".into()))?;
    let rest = &raw[head..];
    let body = match framing(response.headers) {
        Framing::Length(n) if rest.len() >= n => rest[..n].to_vec(),
        Framing::Length(n) => {
            return Err(HttpError::Protocol(format!(
                "{} of {n} bytes before the connection closed",
                rest.len()
            )));
        }
        Framing::Chunked => dechunk(rest)?,
        Framing::Close => rest.to_vec(),
    };
    Ok(Response {
        status,
        body: Zeroizing::new(body),
    })
}

/// The body of a chunked transfer (RFC 9112 7.1), extensions and
/// trailers ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    let bad = |why: &str| HttpError::Protocol(format!("bad chunked body: {why}"));
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a size line without its end"))?;
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("a size that is not text"))?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| bad("a size that is not hex"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        // The size is the peer's: checked before any arithmetic with it.
        let end = size
            .checked_add(2)
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| bad("a chunk shorter than its size"))?;
        if &rest[size..end] != b"\r\n" {
            return Err(bad("a chunk without its line end"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://login.microsoftonline.com/abc/oauth2/v2.0/token").unwrap();
        assert_eq!(u.host, "login.microsoftonline.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.path, "/abc/oauth2/v2.0/token");
        let u = Url::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8443, "/")
        );
        assert_eq!(u.to_string(), "https://127.0.0.1:8443/");
        for bad in [
            "http://example.org/token",
            "https://",
            "https://user@example.org/",
            "https://example.org:0/",
            "https://example.org:http/",
            "https://exa mple.org/",
            "https://example.org/a b",
            "ftp://example.org",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            &*form(&[
                (
                    "scope",
                    "https://outlook.office.com/SMTP.Send offline_access"
                ),
                ("a&b", "=")
            ]),
            "scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send%20offline_access&a%26b=%3D"
        );
    }

    #[test]
    fn answers_by_length_by_chunks_and_by_close() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing").unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"{}"[..]));
        let r = parse(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2;x=y\r\n\"}\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!((r.status, &r.body[..]), (400, &b"{\"a\"}"[..]));
        let r = parse(b"HTTP/1.0 503 Unavailable\r\n\r\ndown").unwrap();
        assert_eq!((r.status, &r.body[..]), (503, &b"down"[..]));
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"));
        assert!(!complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n{}"
        ));
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-",
            // Found by the fuzz target: a size that overflows.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
