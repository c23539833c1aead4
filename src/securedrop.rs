//! `relayctl import-securedrop`: a relay.toml from the variables a
//! SecureDrop admin already wrote in `site-specific` (formerly
//! `prod-specific.yml`) for the Postfix + procmail + gpg stack.
//!
//! | SecureDrop variable | becomes |
//! |---|---|
//! | `smtp_relay`, `smtp_relay_port` | `relay.host`, `relay.port` (`tls = "implicit"` on 465) |
//! | `sasl_username`, `sasl_domain` | `relay.username`, `relay.domain` |
//! | `sasl_password` | the password file (0600), never relay.toml |
//! | `smtp_relay_fingerprint` | `relay.fingerprints` (SHA-1, as SecureDrop's openssl pipeline prints it) |
//! | `ossec_alert_email`, `ossec_alert_gpg_public_key`, `ossec_gpg_fpr` | the first `[[recipients]]`, aliases `root` and `ossec` |
//! | `journalist_alert_email`, `journalist_alert_gpg_public_key`, `journalist_gpg_fpr` | a second `[[recipients]]`, alias `journalist`, and the `[[routes]]` entry that turns OSSEC's daily submissions alert into the journalist's notification (when all three are set) |
//!
//! The file is YAML, but SecureDrop's is flat: `key: value` lines with
//! plain or quoted scalars. That is what is read here, without a YAML
//! library; a variable this importer needs that is not a single scalar is
//! an error naming its line, and anything else (lists such as
//! `dns_server`) is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Why the import failed; nothing is written when it does.
#[derive(Debug)]
pub enum ImportError {
    Read {
        path: PathBuf,
        error: String,
    },
    /// A line this reader cannot take, with its number.
    Syntax {
        line: usize,
        why: String,
    },
    /// A required variable is missing or empty.
    Missing(&'static str),
    /// A variable has a value that cannot be used.
    Invalid {
        name: &'static str,
        why: String,
    },
    /// The output exists and `--force` was not given.
    Exists(PathBuf),
    /// The config signs in with OAuth 2.0, which SecureDrop's variables
    /// cannot say: importing them would switch it back to a password.
    SignsInWithOAuth2(PathBuf),
    Write {
        path: PathBuf,
        error: String,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Read { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            ImportError::Syntax { line, why } => write!(f, "line {line}: {why}"),
            ImportError::Missing(name) => write!(
                f,
                "{name} is missing or empty: SecureDrop's OSSEC alerts need it"
            ),
            ImportError::Invalid { name, why } => write!(f, "{name}: {why}"),
            ImportError::Exists(path) => write!(
                f,
                "{} exists: nothing was written (--force replaces it)",
                path.display()
            ),
            ImportError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
            ImportError::SignsInWithOAuth2(path) => write!(
                f,
                "{} signs in with OAuth 2.0 (relay.auth = \"oauth2\"), which SecureDrop's \
                 variables cannot say: importing them would switch it back to a password, which \
                 the relay refuses. Nothing was written, even with --force. Change the relay or \
                 the recipients in {} by hand (README: OAuth 2.0), or move it aside to go back to \
                 password AUTH",
                path.display(),
                path.display()
            ),
        }
    }
}

/// Where the key file a variable names is. SecureDrop keeps the keys in
/// `install_files/ansible-base/` and the variables two levels below it,
/// in `group_vars/all/site-specific`; Ansible looks names up from
/// `ansible-base`. So with that layout the key is looked for there, and
/// beside the variables file otherwise (an admin who copied both into
/// one directory), or when it is only there.
fn key_path(site_specific: &Path, name: &str) -> PathBuf {
    let beside = site_specific.parent().unwrap_or(Path::new("."));
    let ansible_base = beside
        .parent()
        .filter(|_| beside.file_name().is_some_and(|n| n == "all"))
        .filter(|group_vars| group_vars.file_name().is_some_and(|n| n == "group_vars"))
        .and_then(Path::parent);
    match ansible_base.map(|base| base.join(name)) {
        Some(path) if path.exists() || !beside.join(name).exists() => path,
        _ => beside.join(name),
    }
}

/// The top-level variables of a flat YAML file.
#[derive(Debug, Default)]
pub struct Vars {
    /// Variables with a single value (possibly empty).
    pub scalars: BTreeMap<String, String>,
    /// Variables whose value is a nested block (a list or a map).
    pub blocks: BTreeSet<String>,
}

/// Reads the top-level variables of a flat YAML file.
pub fn parse_flat_yaml(text: &str) -> Result<Vars, ImportError> {
    let mut vars = Vars::default();
    // A key with an empty value may open a nested block (a list or a map).
    let mut open_block: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim_end();
        if trimmed.trim_start().is_empty()
            || trimmed.trim_start().starts_with('#')
            || trimmed == "---"
            || trimmed == "..."
        {
            continue;
        }
        if raw.starts_with([' ', '\t', '-']) {
            // Belongs to the block of the last key: it is no scalar.
            if let Some(key) = &open_block {
                vars.scalars.remove(key);
                vars.blocks.insert(key.clone());
            }
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else {
            return Err(ImportError::Syntax {
                line,
                why: format!("expected \"name: value\", found {trimmed:?}"),
            });
        };
        let key = key.trim().to_string();
        let value = scalar(value.trim()).map_err(|why| ImportError::Syntax { line, why })?;
        open_block = value.is_empty().then(|| key.clone());
        vars.scalars.insert(key, value);
    }
    Ok(vars)
}

/// A plain, single-quoted or double-quoted YAML scalar, without a
/// trailing comment.
fn scalar(value: &str) -> Result<String, String> {
    if let Some(rest) = value.strip_prefix('"') {
        let end = rest
            .find('"')
            .ok_or_else(|| "a double-quoted value is not closed".to_string())?;
        if rest[..end].contains('\\') {
            return Err("escapes in double-quoted values are not supported".into());
        }
        after_quote(&rest[end + 1..])?;
        return Ok(rest[..end].to_string());
    }
    if let Some(rest) = value.strip_prefix('\'') {
        // '' is a quote inside single quotes.
        let mut out = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, c)| *c) == Some('\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    after_quote(&rest[i + 1..])?;
                    return Ok(out);
                }
            } else {
                out.push(c);
            }
        }
        return Err("a single-quoted value is not closed".into());
    }
    if value.starts_with(['[', '{', '|', '>', '&', '*', '!']) {
        return Err(format!(
            "{value:?}: only plain or quoted values are supported"
        ));
    }
    let plain = match value.find(" #") {
        Some(i) => &value[..i],
        None => value,
    };
    Ok(plain.trim().to_string())
}

/// What may follow a closing quote: nothing, or a comment. Anything else
/// (`"secret"junk`) is an error rather than a value silently cut short:
/// a password cut at the quote would fail at AUTH far from here.
fn after_quote(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("something follows the closing quote; quote the whole value".into())
    }
}

/// Where the import writes.
#[derive(Debug, Clone)]
pub struct Targets {
    pub config: PathBuf,
    pub password_file: PathBuf,
    /// Where the recipients' keys are copied.
    pub keys_dir: PathBuf,
    /// Where the key files the variables name are looked for, when not
    /// where SecureDrop keeps them (see [`key_path`]).
    pub keys_from: Option<PathBuf>,
    pub force: bool,
}

/// What an import wrote.
#[derive(Debug)]
pub struct Imported {
    /// Each file, and whether it was written (false: it already held
    /// what the import would write, with the same mode and owner).
    pub files: Vec<(PathBuf, bool)>,
    pub recipients: Vec<String>,
}

/// `-` as the file: the variables come on standard input.
const STDIN: &str = "-";

/// More than any site-specific file; a larger input is refused rather
/// than read without end.
const MAX_INPUT: u64 = 1 << 20;

/// A value that TOML can hold in double quotes.
fn toml_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Recipient {
    address: String,
    key_source: PathBuf,
    key_name: &'static str,
    key_variable: &'static str,
    fingerprint: String,
    fingerprint_variable: &'static str,
    aliases: &'static [&'static str],
}

/// Reads `site_specific` and writes the config, the password file and
/// the keys. Nothing is written unless everything needed was found.
pub fn import(site_specific: &Path, targets: &Targets) -> Result<Imported, ImportError> {
    let text = read_input(site_specific)?;
    let vars = parse_flat_yaml(&text)?;
    let get = |name: &'static str| -> Result<Option<&str>, ImportError> {
        if vars.blocks.contains(name) {
            return Err(ImportError::Invalid {
                name,
                why: "is a list or a map; a single value is needed".into(),
            });
        }
        Ok(vars
            .scalars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty()))
    };
    let need = |name: &'static str| get(name)?.ok_or(ImportError::Missing(name));
    let key_path = |name: &str| match &targets.keys_from {
        Some(dir) => dir.join(name),
        None if site_specific == Path::new(STDIN) => PathBuf::from(name),
        None => key_path(site_specific, name),
    };

    let host = need("smtp_relay")?;
    let port: u16 = need("smtp_relay_port")?
        .parse()
        .map_err(|_| ImportError::Invalid {
            name: "smtp_relay_port",
            why: "is not a port number".into(),
        })?;
    let username = need("sasl_username")?;
    let domain = get("sasl_domain")?;
    let password = need("sasl_password")?;
    let pin = match get("smtp_relay_fingerprint")? {
        Some(f) => Some(
            f.parse::<crate::config::Pin>()
                .map_err(|why| ImportError::Invalid {
                    name: "smtp_relay_fingerprint",
                    why,
                })?
                .to_string(),
        ),
        None => None,
    };

    let mut recipients = vec![Recipient {
        address: need("ossec_alert_email")?.to_string(),
        key_source: key_path(need("ossec_alert_gpg_public_key")?),
        key_name: "ossec.pub",
        key_variable: "ossec_alert_gpg_public_key",
        fingerprint: need("ossec_gpg_fpr")?.replace(' ', ""),
        fingerprint_variable: "ossec_gpg_fpr",
        aliases: &["root", "ossec"],
    }];
    match (
        get("journalist_alert_email")?,
        get("journalist_alert_gpg_public_key")?,
        get("journalist_gpg_fpr")?,
    ) {
        (Some(address), Some(key), Some(fpr)) => recipients.push(Recipient {
            address: address.to_string(),
            key_source: key_path(key),
            key_name: "journalist.pub",
            key_variable: "journalist_alert_gpg_public_key",
            fingerprint: fpr.replace(' ', ""),
            fingerprint_variable: "journalist_gpg_fpr",
            aliases: &["journalist"],
        }),
        (None, None, None) => {}
        _ => {
            return Err(ImportError::Invalid {
                name: "journalist_alert_email",
                why: "journalist_alert_email, journalist_alert_gpg_public_key and \
                      journalist_gpg_fpr must be set together (or all left empty)"
                    .into(),
            });
        }
    }
    // Each key is parsed, and must be the key its fingerprint names,
    // before anything is written: what is copied is the public key as
    // parsed, never the bytes of whatever file the variable named.
    let mut keys = Vec::new();
    for r in &recipients {
        let cert = crate::encrypt::keys::read_cert(&r.key_source).map_err(|e| match e {
            crate::encrypt::keys::KeyError::Unreadable { path, reason } => ImportError::Read {
                path,
                error: reason,
            },
            other => ImportError::Invalid {
                name: r.key_variable,
                why: other.to_string(),
            },
        })?;
        let actual = crate::encrypt::keys::fingerprint(&cert);
        if !actual.eq_ignore_ascii_case(&r.fingerprint) {
            return Err(ImportError::Invalid {
                name: r.key_variable,
                why: format!(
                    "{} holds the key {actual}, but {} is {}",
                    r.key_source.display(),
                    r.fingerprint_variable,
                    r.fingerprint
                ),
            });
        }
        let armored =
            crate::encrypt::keys::armored_public(&cert).map_err(|e| ImportError::Invalid {
                name: r.key_variable,
                why: e,
            })?;
        keys.push((targets.keys_dir.join(r.key_name), armored));
    }

    let relay = RelayVars {
        host,
        port,
        username,
        domain,
        pin: pin.as_deref(),
    };
    let config = render(&relay, targets, &recipients, site_specific);
    // Run as root where the package made the daemon's user: the password
    // is that user's alone, the config readable by its group, as the
    // package installs them (packaging/README.md). Else the files stay
    // the importing user's.
    let daemon = crate::os::is_root()
        .then(|| crate::os::User::by_name(DAEMON_USER))
        .flatten();
    let mut planned: Vec<Planned> = keys
        .into_iter()
        .map(|(path, bytes)| Planned {
            path,
            bytes,
            mode: 0o644,
            owner: None,
        })
        .collect();
    planned.push(Planned {
        path: targets.password_file.clone(),
        bytes: format!("{password}\n").into_bytes(),
        mode: 0o600,
        owner: daemon.as_ref().map(|u| (u.uid, u.gid)),
    });
    planned.push(Planned {
        path: targets.config.clone(),
        bytes: config.into_bytes(),
        mode: 0o640,
        owner: daemon.as_ref().map(|u| (0, u.gid)),
    });
    if signs_in_with_oauth2(&targets.config) {
        return Err(ImportError::SignsInWithOAuth2(targets.config.clone()));
    }
    for file in &planned {
        // A file that holds what would be written is left alone; an
        // empty password file (as the package installs it) holds nothing
        // to lose, nor does the example config the package ships.
        let path = &file.path;
        let empty =
            *path == targets.password_file && std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
        let shipped = *path == targets.config
            && std::fs::read(path).is_ok_and(|b| b == SHIPPED_CONFIG.as_bytes());
        if path.exists() && !targets.force && !empty && !shipped && !file.is_in_place() {
            return Err(ImportError::Exists(path.clone()));
        }
    }
    let mut files = Vec::new();
    for file in &planned {
        let write_it = !file.is_in_place();
        if write_it {
            write(&file.path, &file.bytes, file.mode, file.owner)?;
        }
        files.push((file.path.clone(), write_it));
    }
    Ok(Imported {
        files,
        recipients: recipients.into_iter().map(|r| r.address).collect(),
    })
}

/// Whether the config at `path` has `relay.auth = "oauth2"` (a file
/// that is missing, unreadable or not TOML has not).
fn signs_in_with_oauth2(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|t| {
            t.get("relay")
                .and_then(|r| r.get("auth"))
                .and_then(|a| a.as_str())
                == Some("oauth2")
        })
}

/// The variables: the file's text, or standard input's with `-`, up to
/// [`MAX_INPUT`] bytes.
fn read_input(site_specific: &Path) -> Result<String, ImportError> {
    use std::io::Read;
    let err = |error: String| ImportError::Read {
        path: site_specific.to_path_buf(),
        error,
    };
    let mut bytes = Vec::new();
    let read = if site_specific == Path::new(STDIN) {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(site_specific)
            .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(err(format!(
            "more than {} bytes: not a site-specific file",
            MAX_INPUT
        )));
    }
    String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))
}

/// A file the import writes.
struct Planned {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    owner: Option<(u32, u32)>,
}

impl Planned {
    /// Whether the file already holds these bytes, with this mode and
    /// owner: then writing it again would change nothing.
    fn is_in_place(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(&self.path) else {
            return false;
        };
        meta.is_file()
            && meta.mode() & 0o7777 == self.mode
            && self
                .owner
                .is_none_or(|(uid, gid)| meta.uid() == uid && meta.gid() == gid)
            && meta.len() == self.bytes.len() as u64
            && std::fs::read(&self.path).is_ok_and(|b| b == self.bytes)
    }
}

/// The `[relay]` values taken from SecureDrop's variables.
struct RelayVars<'a> {
    host: &'a str,
    port: u16,
    username: &'a str,
    domain: Option<&'a str>,
    /// `smtp_relay_fingerprint` in config syntax.
    pin: Option<&'a str>,
}

fn render(
    relay: &RelayVars<'_>,
    targets: &Targets,
    recipients: &[Recipient],
    source: &Path,
) -> String {
    let RelayVars {
        host,
        port,
        username,
        domain,
        pin,
    } = *relay;
    let mut out = format!(
        "# alert-relay config written by `relayctl import-securedrop {}`.\n\
         # Every key is explained in /usr/share/doc/alert-relay/relay.toml.example;\n\
         # `relayctl check` validates this file and `relayctl test` the whole path.\n\n\
         [relay]\nhost = {}\nport = {port}\ntls = {}\nusername = {}\n",
        source.display(),
        toml_string(host),
        toml_string(if port == 465 { "implicit" } else { "starttls" }),
        toml_string(username),
    );
    if let Some(d) = domain {
        out.push_str(&format!("domain = {}\n", toml_string(d)));
    }
    out.push_str(&format!(
        "password_file = {}\n",
        toml_string(&targets.password_file.display().to_string())
    ));
    match pin {
        Some(p) => out.push_str(&format!(
            "# smtp_relay_fingerprint (SHA-1). When the relay renews its certificate,\n\
             # `relayctl fingerprint` prints the new pins to add here.\n\
             fingerprints = [{}]\n",
            toml_string(p)
        )),
        None => out.push_str(
            "# No smtp_relay_fingerprint: the certificate is checked against the system's CAs.\n",
        ),
    }
    let mut aliases = String::from("\n[aliases]\n");
    for r in recipients {
        out.push_str(&format!(
            "\n[[recipients]]\naddress = {}\nkey = {}\nfingerprint = {}\n",
            toml_string(&r.address),
            toml_string(&targets.keys_dir.join(r.key_name).display().to_string()),
            toml_string(&r.fingerprint),
        ));
        for alias in r.aliases {
            aliases.push_str(&format!("{alias} = {}\n", toml_string(&r.address)));
        }
    }
    out.push_str(&aliases);
    // procmail's recipe: the daily submissions alert to the journalist's
    // notification, everything else to the admin.
    if recipients.iter().any(|r| r.aliases.contains(&"journalist")) {
        out.push_str(&format!(
            "\n\
             # What SecureDrop's .procmailrc did: OSSEC's daily submissions alert\n\
             # (rule 400600) becomes the journalist's notification, once a day;\n\
             # every other alert goes to the admin.\n\
             [[routes]]\n\
             name = \"securedrop-submissions\"\n\
             match_body = {}\n\
             action = \"securedrop-journalist\"\n\
             to = [\"journalist\"]\n",
            toml_string(&regex::escape(crate::route::journalist::MARKER))
        ));
    }
    out
}

/// The daemon's user and group, as the package names them.
pub const DAEMON_USER: &str = "alert-relay";

/// The example config the package installs as relay.toml: replacing it
/// loses nothing, so it needs no `--force`.
const SHIPPED_CONFIG: &str = include_str!("../config/relay.toml");

/// Writes `bytes` to `path` with `mode` and, when given, owner and group,
/// through a temporary file: mode and owner are set on the open file,
/// never by path, before it is renamed into place.
fn write(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), ImportError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let err = |e: std::io::Error| ImportError::Write {
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let tmp = path.with_extension("import-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = crate::os::create_nofollow(&tmp, mode).map_err(err)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(err)?;
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_yaml_scalars_comments_and_skipped_lists() {
        let vars = parse_flat_yaml(
            "---\n# a comment\nsmtp_relay: smtp.gmail.com  # trailing\nsmtp_relay_port: 587\n\
             sasl_password: 'it''s #secret'\nsasl_domain: \"gmail.com\"\ndns_server:\n  - 8.8.8.8\n  - 8.8.4.4\n\
             empty: \"\"\n",
        )
        .unwrap();
        let v = &vars.scalars;
        assert_eq!(v["smtp_relay"], "smtp.gmail.com");
        assert_eq!(v["smtp_relay_port"], "587");
        assert_eq!(v["sasl_password"], "it's #secret");
        assert_eq!(v["sasl_domain"], "gmail.com");
        assert_eq!(v["empty"], "");
        assert!(!v.contains_key("dns_server"));
        assert!(vars.blocks.contains("dns_server"));
    }

    #[test]
    fn what_it_cannot_read_names_the_line() {
        for (text, want) in [
            (
                "smtp_relay: \"open\n",
                "line 1: a double-quoted value is not closed",
            ),
            ("a: 1\nno colon here\n", "line 2: expected \"name: value\""),
            (
                "a: [1, 2]\n",
                "line 1: \"[1, 2]\": only plain or quoted values",
            ),
        ] {
            let e = parse_flat_yaml(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn text_after_a_closing_quote_is_an_error_not_cut_off() {
        for text in [
            "sasl_password: \"secret\"junk\n",
            "sasl_password: 'secret'junk\n",
            "sasl_password: 'it''s' x\n",
        ] {
            let e = parse_flat_yaml(text).unwrap_err().to_string();
            assert!(
                e.contains("line 1: something follows the closing quote"),
                "{text:?}: {e}"
            );
        }
        for (text, want) in [
            ("sasl_password: \"secret\"  # a comment\n", "secret"),
            ("sasl_password: 'it''s'\n", "it's"),
        ] {
            assert_eq!(
                parse_flat_yaml(text).unwrap().scalars["sasl_password"],
                want
            );
        }
    }

    #[test]
    fn keys_are_found_in_ansible_base_as_securedrop_keeps_them_or_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("install_files/ansible-base");
        let all = base.join("group_vars/all");
        std::fs::create_dir_all(&all).unwrap();
        let vars = all.join("site-specific");
        // Neither exists yet: the error will name SecureDrop's place.
        assert_eq!(key_path(&vars, "ossec.pub"), base.join("ossec.pub"));
        std::fs::write(all.join("ossec.pub"), "k").unwrap();
        assert_eq!(key_path(&vars, "ossec.pub"), all.join("ossec.pub"));
        std::fs::write(base.join("ossec.pub"), "k").unwrap();
        assert_eq!(key_path(&vars, "ossec.pub"), base.join("ossec.pub"));
        // Any other layout: beside the file.
        let flat = dir.path().join("copy/site-specific");
        assert_eq!(
            key_path(&flat, "ossec.pub"),
            dir.path().join("copy/ossec.pub")
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
