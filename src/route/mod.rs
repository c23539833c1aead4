//! Routing: which configured recipient(s) an envelope address reaches.
//!
//! The relay is not an open relay, not even for local users: an address is
//! accepted only when it is a configured `[[recipients]]` address, or a
//! local name (`root`, `root@localhost`, `root@<hostname>`) that
//! `[aliases]` maps to configured recipients. Everything else is refused
//! with 550 5.1.1 (SMTP) or EX_NOUSER (sendmail), so the host cannot be used
//! to mail arbitrary addresses, and no mail is ever sent unencrypted to a
//! recipient without a key.

pub mod journalist;
mod rules;

use std::collections::BTreeMap;
use std::fmt;

pub use rules::{Action, Routed, Rules};

/// An addr-spec (`local@domain`) as configured or received. Comparison is
/// case-insensitive, as every real mail system treats it.
#[derive(Debug, Clone)]
pub struct Address {
    text: String,
    folded: String,
}

impl Address {
    /// Parses `local@domain`, with or without angle brackets.
    pub fn parse(s: &str) -> Result<Address, String> {
        let t = strip_angles(s);
        let (local, domain) = t
            .rsplit_once('@')
            .ok_or_else(|| format!("{s:?} is not an address of the form name@domain"))?;
        if !valid_local(local) || !valid_domain(domain) {
            return Err(format!(
                "{s:?} is not a valid address of the form name@domain"
            ));
        }
        Ok(Address {
            text: t.to_string(),
            folded: t.to_ascii_lowercase(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn domain(&self) -> &str {
        self.text.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        self.folded == other.folded
    }
}
impl Eq for Address {}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An address without the white space and the angle brackets around it.
fn strip_angles(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(t)
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:@\"".contains(&b))
}

fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A configured recipient: an address that has its own OpenPGP key.
/// Only values of this type reach the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient(pub Address);

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Not a configured recipient, nor a local name with an alias.
    Unknown(String),
    /// An alias that loops or nests too deeply (refused by `Config::load`,
    /// so only reachable through a bug).
    AliasLoop(String),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Unknown(a) => write!(
                f,
                "{a} is not a configured recipient or alias; add it to [aliases] or [[recipients]]"
            ),
            RouteError::AliasLoop(a) => write!(f, "the alias for {a} loops"),
        }
    }
}

/// How deep aliases may point to aliases.
const MAX_ALIAS_DEPTH: usize = 8;

/// Resolves envelope addresses to configured recipients.
#[derive(Debug, Clone)]
pub struct Router {
    recipients: Vec<Recipient>,
    /// Lower-cased local name → its targets as written.
    aliases: BTreeMap<String, Vec<String>>,
    /// Domains that mean "this host": localhost and the host name.
    local_domains: Vec<String>,
}

impl Router {
    pub fn new(
        recipients: Vec<Recipient>,
        aliases: BTreeMap<String, Vec<String>>,
        hostname: &str,
    ) -> Router {
        let mut local_domains = vec!["localhost".to_string(), "localhost.localdomain".to_string()];
        let host = hostname.to_ascii_lowercase();
        if let Some((short, _)) = host.split_once('.') {
            local_domains.push(short.to_string());
        }
        local_domains.push(host);
        let aliases = aliases
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Router {
            recipients,
            aliases,
            local_domains,
        }
    }

    /// The configured recipients `addr` reaches, without duplicates, in
    /// configuration order.
    pub fn resolve(&self, addr: &str) -> Result<Vec<Recipient>, RouteError> {
        let mut out = Vec::new();
        self.resolve_into(addr, 0, &mut out)?;
        Ok(out)
    }

    fn resolve_into(
        &self,
        addr: &str,
        depth: usize,
        out: &mut Vec<Recipient>,
    ) -> Result<(), RouteError> {
        if depth > MAX_ALIAS_DEPTH {
            return Err(RouteError::AliasLoop(addr.to_string()));
        }
        let t = strip_angles(addr);
        let (local, domain) = match t.rsplit_once('@') {
            Some((l, d)) => (l, Some(d.to_ascii_lowercase())),
            None => (t, None),
        };
        let is_local = domain
            .as_deref()
            .is_none_or(|d| self.local_domains.iter().any(|l| l == d));
        if is_local && let Some(targets) = self.aliases.get(&local.to_ascii_lowercase()) {
            for target in targets {
                self.resolve_into(target, depth + 1, out)?;
            }
            return Ok(());
        }
        let known = Address::parse(t)
            .ok()
            .and_then(|a| self.recipients.iter().find(|r| r.0 == a));
        match known {
            Some(r) => {
                if !out.contains(r) {
                    out.push(r.clone());
                }
                Ok(())
            }
            None => Err(RouteError::Unknown(t.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let recipients = vec![
            Recipient(Address::parse("alerts@example.org").unwrap()),
            Recipient(Address::parse("journalist@example.org").unwrap()),
        ];
        let mut aliases = BTreeMap::new();
        aliases.insert("root".to_string(), vec!["alerts@example.org".to_string()]);
        aliases.insert(
            "ossec".to_string(),
            vec!["root".to_string(), "journalist@example.org".to_string()],
        );
        aliases.insert("loop".to_string(), vec!["loop".to_string()]);
        Router::new(recipients, aliases, "mon.example.org")
    }

    #[test]
    fn local_names_resolve_through_aliases() {
        let r = router();
        for a in [
            "root",
            "root@localhost",
            "<ROOT@mon.example.org>",
            "root@mon",
        ] {
            let got = r.resolve(a).unwrap();
            assert_eq!(got.len(), 1, "{a}");
            assert_eq!(got[0].to_string(), "alerts@example.org");
        }
        let both = r.resolve("ossec@localhost").unwrap();
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn configured_recipients_are_accepted_case_insensitively() {
        let got = router().resolve("<Alerts@Example.ORG>").unwrap();
        assert_eq!(got[0].to_string(), "alerts@example.org");
    }

    #[test]
    fn anything_else_is_refused() {
        let r = router();
        for a in ["someone@gmail.com", "root@elsewhere.org", "nobody", "", "@"] {
            assert!(matches!(r.resolve(a), Err(RouteError::Unknown(_))), "{a}");
        }
        assert!(matches!(r.resolve("loop"), Err(RouteError::AliasLoop(_))));
    }

    #[test]
    fn address_syntax() {
        assert!(Address::parse("a@b.c").is_ok());
        assert!(Address::parse("a b@c").is_err());
        assert!(Address::parse("nodomain").is_err());
        assert!(Address::parse("a@b..c").is_err());
        assert_eq!(Address::parse("<x@Y.org>").unwrap().domain(), "Y.org");
    }
}
