//! Routes: rules on a message's header fields and body that change whom
//! it goes to, applied after aliases and before encryption, first match
//! wins. What procmail's recipes did on a SecureDrop Monitor Server.
//!
//! ```toml
//! [[routes]]
//! name = "wazuh-critical"
//! match_header = { Subject = "level (1[2-9]|[2-9][0-9])" }
//! also = ["oncall"]
//! ```
//!
//! A rule matches when every `match_header` field it names has a value
//! that matches (any of the message's fields by that name, unfolded; the
//! name is case-insensitive) and `match_body` matches the body as
//! received. Expressions are the `regex` crate's: matching takes time
//! linear in the message whatever the expression, and each compiled
//! expression is held to [`SIZE_LIMIT`], so a hostile message cannot make
//! routing slow. Its action: `to` (these recipients instead of the
//! envelope's), `also` (as well), or `drop = true` (nothing is sent; the
//! daemon logs it).

use regex::RegexBuilder;
use regex::bytes::RegexBuilder as BytesRegexBuilder;

use super::{Recipient, Router};
use crate::config::RouteConfig;

/// The most memory one compiled expression may take.
pub const SIZE_LIMIT: usize = 1 << 20;
/// The longest expression taken.
const MAX_PATTERN: usize = 4096;

/// What a matching route does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// These recipients instead of the envelope's.
    To(Vec<Recipient>),
    /// These recipients as well as the envelope's.
    Also(Vec<Recipient>),
    /// Nothing is sent.
    Drop,
    /// SecureDrop's daily submissions notification to these (the
    /// journalist; none when no journalist is configured):
    /// `crate::route::journalist`.
    Journalist(Vec<Recipient>),
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::To(_) => "to",
            Action::Also(_) => "also",
            Action::Drop => "drop",
            Action::Journalist(_) => "securedrop-journalist",
        }
    }
}

/// One compiled route.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    /// Lower-cased field name, and the expression its value must match.
    headers: Vec<(String, regex::Regex)>,
    body: Option<regex::bytes::Regex>,
    action: Action,
}

/// Every route of a config, compiled once per load.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// Where a message goes after the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Whom it goes to; empty when dropped. For the journalist action,
    /// the envelope's recipients (the admin: where a malformed alert goes).
    pub recipients: Vec<Recipient>,
    /// The route that matched: its name and action.
    pub by: Option<(String, &'static str)>,
    /// The journalist action matched: the journalist(s) to notify.
    pub journalist: Option<Vec<Recipient>>,
}

/// One problem with a `[[routes]]` entry: the dotted key and what is
/// wrong.
pub type RouteProblem = (String, String);

/// Resolves a route's target list (`to` or `also`), noting each problem.
type Targets<'a> = dyn Fn(&str, &[String], &mut Vec<RouteProblem>) -> Vec<Recipient> + 'a;

impl Rules {
    /// Compiles the routes of a config, resolving their targets with
    /// `router`; every problem is listed, with its key
    /// (`routes[0].match_header.Subject`).
    pub fn new(routes: &[RouteConfig], router: &Router) -> Result<Rules, Vec<RouteProblem>> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            let mut headers = Vec::new();
            for (field, pattern) in &r.match_header {
                let field_key = key(&format!("match_header.{field}"));
                if field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                    problems.push((field_key, format!("{field:?} is not a header field name")));
                    continue;
                }
                match compile(pattern) {
                    Ok(re) => headers.push((field.to_ascii_lowercase(), re)),
                    Err(e) => problems.push((field_key, e)),
                }
            }
            let body = match &r.match_body {
                None => None,
                Some(pattern) => match compile_bytes(pattern) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        problems.push((key("match_body"), e));
                        None
                    }
                },
            };
            if r.match_header.is_empty() && r.match_body.is_none() {
                problems.push((
                    format!("routes[{i}]"),
                    "matches nothing: give match_header, match_body or both".into(),
                ));
            }
            let targets = |name: &str, list: &[String], problems: &mut Vec<RouteProblem>| {
                let mut out: Vec<Recipient> = Vec::new();
                for (j, t) in list.iter().enumerate() {
                    match router.resolve(t) {
                        Ok(rs) => {
                            for r in rs {
                                if !out.contains(&r) {
                                    out.push(r);
                                }
                            }
                        }
                        Err(e) => problems.push((key(&format!("{name}[{j}]")), e.to_string())),
                    }
                }
                out
            };
            let action = match r.action.as_deref() {
                None => plain_action(i, r, &mut problems, &targets),
                // `to` names the journalist; none: not configured (logged).
                Some("securedrop-journalist") if r.also.is_empty() && !r.drop => {
                    Some(Action::Journalist(targets("to", &r.to, &mut problems)))
                }
                Some("securedrop-journalist") => {
                    problems.push((
                        format!("routes[{i}]"),
                        "action = \"securedrop-journalist\" takes to = [the journalist], \
                         not also or drop"
                            .into(),
                    ));
                    None
                }
                Some(other) => {
                    problems.push((
                        key("action"),
                        format!(
                            "{other:?} is not an action; the one there is: \"securedrop-journalist\""
                        ),
                    ));
                    None
                }
            };
            if let Some(action) = action {
                rules.push(Rule {
                    name: r.name.clone().unwrap_or_else(|| format!("routes[{i}]")),
                    headers,
                    body,
                    action,
                });
            }
        }
        if problems.is_empty() {
            Ok(Rules { rules })
        } else {
            Err(problems)
        }
    }

    /// Whom `message`, sent to `recipients` (after aliases), goes to.
    pub fn route(&self, recipients: &[Recipient], message: &[u8]) -> Routed {
        let Some(rule) = self.rules.iter().find(|r| r.matches(message)) else {
            return Routed {
                recipients: recipients.to_vec(),
                by: None,
                journalist: None,
            };
        };
        let recipients = match &rule.action {
            Action::To(to) => to.clone(),
            Action::Also(also) => {
                let mut all = recipients.to_vec();
                all.extend(also.iter().filter(|r| !recipients.contains(r)).cloned());
                all
            }
            Action::Drop => Vec::new(),
            Action::Journalist(_) => recipients.to_vec(),
        };
        let journalist = match &rule.action {
            Action::Journalist(to) => Some(to.clone()),
            _ => None,
        };
        Routed {
            recipients,
            by: Some((rule.name.clone(), rule.action.as_str())),
            journalist,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The action of a route without `action`: exactly one of `to`, `also`
/// and `drop`.
fn plain_action(
    i: usize,
    r: &RouteConfig,
    problems: &mut Vec<RouteProblem>,
    targets: &Targets<'_>,
) -> Option<Action> {
    let chosen = [!r.to.is_empty(), !r.also.is_empty(), r.drop]
        .iter()
        .filter(|b| **b)
        .count();
    match chosen {
        1 if !r.to.is_empty() => Some(Action::To(targets("to", &r.to, problems))),
        1 if !r.also.is_empty() => Some(Action::Also(targets("also", &r.also, problems))),
        1 => Some(Action::Drop),
        0 => {
            problems.push((
                format!("routes[{i}]"),
                "has no action: give to = [...], also = [...], drop = true or \
                 action = \"securedrop-journalist\""
                    .into(),
            ));
            None
        }
        _ => {
            problems.push((
                format!("routes[{i}]"),
                "has more than one action: give one of to, also and drop".into(),
            ));
            None
        }
    }
}

impl Rule {
    fn matches(&self, message: &[u8]) -> bool {
        if !self.headers.is_empty() {
            let fields = crate::message::fields(message);
            let all = self.headers.iter().all(|(name, re)| {
                fields
                    .iter()
                    .filter(|f| f.is(name))
                    .any(|f| re.is_match(&f.value()))
            });
            if !all {
                return false;
            }
        }
        self.body
            .as_ref()
            .is_none_or(|re| re.is_match(crate::message::body(message)))
    }
}

fn too_long(pattern: &str) -> Option<String> {
    (pattern.len() > MAX_PATTERN).then(|| {
        format!(
            "the expression is {} bytes long; at most {MAX_PATTERN} are taken",
            pattern.len()
        )
    })
}

/// A header expression, held to the size limits.
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if let Some(e) = too_long(pattern) {
        return Err(e);
    }
    RegexBuilder::new(pattern)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| format!("not a valid expression: {}", one_line(&e.to_string())))
}

/// A body expression: over bytes, since a body need not be UTF-8.
fn compile_bytes(pattern: &str) -> Result<regex::bytes::Regex, String> {
    if let Some(e) = too_long(pattern) {
        return Err(e);
    }
    BytesRegexBuilder::new(pattern)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| format!("not a valid expression: {}", one_line(&e.to_string())))
}

/// The regex crate's multi-line error, on one line.
fn one_line(e: &str) -> String {
    e.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Address;
    use std::collections::BTreeMap;

    fn router() -> Router {
        let recipients = [
            "alerts@example.org",
            "oncall@example.org",
            "journalist@example.org",
        ]
        .iter()
        .map(|a| Recipient(Address::parse(a).unwrap()))
        .collect();
        let mut aliases = BTreeMap::new();
        aliases.insert("oncall".to_string(), vec!["oncall@example.org".to_string()]);
        Router::new(recipients, aliases, "mon.example.org")
    }

    fn route(toml: &str) -> RouteConfig {
        toml::from_str(toml).unwrap()
    }

    fn rcpt(a: &str) -> Recipient {
        Recipient(Address::parse(a).unwrap())
    }

    #[test]
    fn first_match_wins_with_each_action() {
        let rules = Rules::new(
            &[
                route("match_header = { Subject = 'cron: backup' }\ndrop = true\nname = 'noise'"),
                route("match_header = { X-Wazuh-Level = '^1[2-9]$' }\nalso = ['oncall']"),
                route("match_body = '(?m)^ossec: output: .head -1 .*submissions_today'\nto = ['journalist@example.org']"),
            ],
            &router(),
        )
        .unwrap();
        let admin = [rcpt("alerts@example.org")];

        let r = rules.route(&admin, b"Subject: cron: backup done\r\n\r\nok\r\n");
        assert_eq!(r.recipients, vec![]);
        assert_eq!(r.by, Some(("noise".to_string(), "drop")));

        let r = rules.route(&admin, b"X-Wazuh-Level: 13\r\nSubject: x\r\n\r\nbody\r\n");
        assert_eq!(
            r.recipients,
            vec![rcpt("alerts@example.org"), rcpt("oncall@example.org")]
        );
        assert_eq!(r.by, Some(("routes[1]".to_string(), "also")));
        let r = rules.route(&admin, b"X-Wazuh-Level: 7\r\n\r\nbody\r\n");
        assert_eq!(r.by, None);
        assert_eq!(r.recipients, admin.to_vec());

        let body = b"Subject: OSSEC Alert\r\n\r\nossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt'\r\n3\r\n";
        let r = rules.route(&admin, body);
        assert_eq!(r.recipients, vec![rcpt("journalist@example.org")]);
    }

    #[test]
    fn field_names_are_case_insensitive_and_values_unfolded() {
        let rules = Rules::new(
            &[route(
                "match_header = { subject = '^long folded$' }\ndrop = true",
            )],
            &router(),
        )
        .unwrap();
        let r = rules.route(&[], b"SUBJECT: long\r\n folded\r\n\r\n");
        assert_eq!(r.by.map(|b| b.1), Some("drop"));
    }

    #[test]
    fn every_bad_route_is_named_with_its_key() {
        let problems = Rules::new(
            &[
                route("match_header = { Subject = '(unclosed' }\ndrop = true"),
                route("match_body = 'x'\nto = ['someone@gmail.com']"),
                route("drop = true"),
                route("match_body = 'x'"),
                route("match_body = 'x'\ndrop = true\nalso = ['oncall']"),
                route(&format!("match_body = '{}'\ndrop = true", "a".repeat(5000))),
                route("match_body = '(a{1000}){1000}'\ndrop = true"),
            ],
            &router(),
        )
        .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "routes[0].match_header.Subject",
                "routes[1].to[0]",
                "routes[2]",
                "routes[3]",
                "routes[4]",
                "routes[5].match_body",
                "routes[6].match_body",
            ],
            "{problems:#?}"
        );
        assert!(
            problems[0].1.contains("not a valid expression"),
            "{problems:?}"
        );
        assert!(!problems[0].1.contains('\n'), "{problems:?}");
        assert!(problems[1].1.contains("someone@gmail.com"), "{problems:?}");
        assert!(
            problems[6].1.contains("size limit") || problems[6].1.contains("exceeds"),
            "{problems:?}"
        );
    }
}
