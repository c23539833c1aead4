//! The OAuth 2.0 server the OAuth tests talk to: tests/relay/tokend.py
//! (Python's http.server over TLS with the test certificate), with the
//! device flow, the code flow with PKCE and the refresh grant.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::Setup;

pub struct TokenServer {
    child: Child,
    pub port: u16,
    pub outdir: tempfile::TempDir,
}

/// The client id tokend.py expects by default.
pub const CLIENT_ID: &str = "alert-relay-test";

impl TokenServer {
    /// `args` are tokend.py's options, e.g. `["--rotate"]`.
    pub fn start(args: &[&str]) -> TokenServer {
        TokenServer::start_marked(args, "")
    }

    /// With every token it issues starting with `mark`.
    pub fn start_marked(args: &[&str], mark: &str) -> TokenServer {
        super::prereq::python3();
        let outdir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (child, port) = super::relay::spawn_ready(
            Command::new("python3")
                .arg(root.join("tests/relay/tokend.py"))
                .arg("--outdir")
                .arg(outdir.path())
                .arg("--cert")
                .arg(root.join("certs/relay.pem"))
                .arg("--key")
                .arg(root.join("certs/relay.key"))
                .args(args)
                .env("TOKEND_TOKEN_PREFIX", mark),
            "tests/relay/tokend.py",
        );
        TokenServer {
            child,
            port,
            outdir,
        }
    }

    /// Turns `setup`'s relay (password AUTH) into `relay.auth =
    /// "oauth2"` signing in here (`extra`: more `[relay.oauth2]` keys;
    /// the device flow unless they name an authorization endpoint), and
    /// makes the spool as the package does: the sign-in goes there.
    pub fn configure(&self, setup: &Setup, extra: &str) {
        std::fs::create_dir(setup.spool()).unwrap();
        std::fs::set_permissions(setup.spool(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let config: Vec<String> = std::fs::read_to_string(setup.config_path())
            .unwrap()
            .lines()
            .map(|l| match l.starts_with("password_file") {
                true => "auth = \"oauth2\"".to_string(),
                false => l.to_string(),
            })
            .collect();
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
        let device = if extra.contains("authorization_endpoint") {
            String::new()
        } else {
            format!(
                "device_authorization_endpoint = \"{}\"\n",
                self.url("/devicecode")
            )
        };
        setup.write_config(&format!(
            "{}\n\n[relay.oauth2]\nprovider = \"custom\"\nclient_id = \"{CLIENT_ID}\"\n\
             token_endpoint = \"{}\"\n{device}scope = \"https://mail.example.org/ offline_access\"\n\
             ca_file = \"{}\"\n{extra}",
            config.join("\n"),
            self.url("/token"),
            ca.display()
        ));
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The file smtpd.py's `--oauth-token-file` reads.
    pub fn access_token_file(&self) -> PathBuf {
        self.outdir.path().join("access_token")
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.outdir.path().join(name)).unwrap_or_default()
    }

    /// Turns a steering file (`invalid_grant`, `down`, `revoke`) on or off.
    pub fn set(&self, name: &str, on: bool) {
        let path = self.outdir.path().join(name);
        if on {
            std::fs::write(path, "").unwrap();
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    /// How many requests of `event` it saw, and with `ok` when given.
    pub fn count(&self, event: &str, ok: Option<bool>) -> usize {
        self.file("events.jsonl")
            .lines()
            .filter(|l| l.contains(&format!("\"event\": \"{event}\"")))
            .filter(|l| ok.is_none_or(|ok| l.contains(&format!("\"ok\": {ok}"))))
            .count()
    }

    /// Every token it issued.
    pub fn issued(&self) -> Vec<String> {
        self.file("issued_tokens")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
