//! SMTP clients: a raw one that reads each reply with one `recv`, as
//! OSSEC's maild does (for protocol tests); the one the fault suite and
//! the benchmark submit with; and Python's smtplib, which this project
//! did not write.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A raw SMTP client that reads each reply with a single `recv`, as
/// OSSEC's maild does.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client { stream }
    }

    /// One `recv`: whatever the server sent in one go.
    pub fn recv(&mut self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a command and returns the reply code of the one reply read.
    pub fn cmd(&mut self, line: &str) -> u16 {
        self.send(format!("{line}\r\n").as_bytes());
        code(&self.recv())
    }

    /// Sends one message to `rcpt` (OSSEC's way: one reply read per
    /// command) and returns the reply to the data.
    pub fn send_message(&mut self, rcpt: &str, data: &[u8]) -> String {
        let banner = self.recv();
        assert_eq!(code(&banner), 220, "{banner}");
        for (line, want) in [
            ("HELO t".to_string(), 250),
            ("MAIL FROM:<ossecm@mon>".to_string(), 250),
            (format!("RCPT TO:<{rcpt}>"), 250),
            ("DATA".to_string(), 354),
        ] {
            assert_eq!(self.cmd(&line), want, "{line}");
        }
        self.send(data);
        self.send(b".\r\n");
        self.recv()
    }

    /// Reads until the server closes; returns all it sent.
    pub fn read_to_close(&mut self) -> String {
        let mut out = Vec::new();
        let _ = self.stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The code of a reply; panics unless it is one complete reply.
pub fn code(reply: &str) -> u16 {
    assert!(reply.ends_with("\r\n"), "incomplete reply {reply:?}");
    let last = reply.trim_end().lines().last().unwrap();
    assert_eq!(last.as_bytes().get(3), Some(&b' '), "bad reply {reply:?}");
    last[..3].parse().unwrap()
}

/// Submits one message over SMTP with Python's smtplib, a client this
/// project did not write. Returns smtplib's outcome line.
pub fn smtplib_send(port: u16, from: &str, to: &[&str], message: &[u8]) -> String {
    let script = r#"
import smtplib, sys
port, sender, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
msg = sys.stdin.buffer.read()
try:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        refused = s.sendmail(sender, rcpts, msg)
        print("ok", sorted(refused))
except smtplib.SMTPRecipientsRefused as e:
    print("refused", sorted(e.recipients))
except smtplib.SMTPResponseException as e:
    print("error", e.smtp_code, e.smtp_error.decode())
"#;
    python(script, &[&port.to_string(), from, &to.join(",")], message)
}

/// Submits one message on a connection of its own, with OSSEC's spelling
/// of the commands and one reply read per command, as OSSEC's maild does;
/// the message and its end line in one write. `Ok` with the reply to the
/// data when it is 250; else what went wrong ("connect: ...", "i/o: ..."
/// or the reply). Never panics: the fault suite and the benchmark use it
/// while daemons die under it.
pub fn submit(port: u16, rcpt: &str, message: &[u8]) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    let io = |e: std::io::Error| format!("i/o: {e}");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .map_err(io)?;
    let mut r = BufReader::new(s.try_clone().map_err(io)?);
    expect(&mut r, 220)?;
    let commands = [
        ("Helo mon.example.org".to_string(), 250),
        ("Mail From: <ossecm@mon.example.org>".to_string(), 250),
        (format!("Rcpt To: <{rcpt}>"), 250),
        ("DATA".to_string(), 354),
    ];
    for (line, want) in commands {
        s.write_all(format!("{line}\r\n").as_bytes()).map_err(io)?;
        expect(&mut r, want)?;
    }
    // One write: two small ones in a row would wait for a delayed ACK
    // (Nagle), 40 ms per alert.
    let end: &[u8] = if message.ends_with(b"\r\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    };
    s.write_all(&[message, end].concat()).map_err(io)?;
    let reply = expect(&mut r, 250)?;
    let _ = s.write_all(b"QUIT\r\n");
    Ok(reply)
}

/// Reads one reply: its last line when its code is `want`, else that
/// line as the error.
fn expect(r: &mut impl BufRead, want: u16) -> Result<String, String> {
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("i/o: {e}")),
        }
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        return if code == want {
            Ok(line.trim_end().to_string())
        } else {
            Err(line.trim_end().to_string())
        };
    }
}

/// Runs a Python `script` with `args`, `stdin` on its standard input;
/// returns what it printed, trimmed.
pub fn python(script: &str, args: &[&str], stdin: &[u8]) -> String {
    super::prereq::python3();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
