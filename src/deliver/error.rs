//! Why an attempt to deliver failed: the stage it reached, the error
//! with what to do about it, and the class a person must look at.

use std::fmt;
use std::net::SocketAddr;

use super::tls::{CertInfo, TlsSetupError};
use crate::oauth2::TokenError;
use crate::reply::Reply;

/// Where a conversation with the relay failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Resolve,
    Connect,
    Greeting,
    Ehlo,
    StartTls,
    Tls,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// The reply to the message's final ".": the relay may have it.
    DataEnd,
    Rset,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Resolve => "DNS lookup",
            Stage::Connect => "connect",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Tls => "TLS handshake",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::DataEnd => "end of DATA",
            Stage::Rset => "RSET",
        })
    }
}

/// Why delivery failed, with what to do about it. Everything but a 5xx
/// reply (and a message past `queue.max_lifetime`) is temporary: the
/// message stays queued. It stays a value up to the log line, so that the
/// runner, the health checks and the tests see its [`Class`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DeliverError {
    /// TLS could not be set up from the config (before any connection).
    Setup(TlsSetupError),
    Resolve(String),
    Connect {
        addr: SocketAddr,
        error: String,
    },
    Timeout(Stage),
    Io {
        stage: Stage,
        error: String,
    },
    NoStartTls,
    /// The relay's certificate failed the check: rustls' reason, and
    /// what the relay presented (to print the pins to paste).
    Certificate {
        error: tokio_rustls::rustls::CertificateError,
        presented: Option<Box<CertInfo>>,
        pinned: bool,
    },
    Tls(String),
    NoAuthMechanism(String),
    Password(String),
    AuthFailed(Reply),
    /// No OAuth 2.0 access token could be had (`relay.auth = "oauth2"`).
    OAuth2(TokenError),
    /// The relay refused the access token: its final reply, and the
    /// `status` of its error challenge if it sent one.
    OAuth2Refused {
        reply: Reply,
        status: Option<String>,
    },
    Rejected {
        stage: Stage,
        reply: Reply,
    },
    Protocol {
        stage: Stage,
        line: String,
    },
    /// Undelivered for longer than `queue.max_lifetime`: moved to
    /// `failed/`, with the last attempt's reason as it was recorded.
    Expired {
        after: std::time::Duration,
        last_error: String,
    },
}

pub use crate::health::Class;

impl DeliverError {
    /// A 5xx reply to this message, or its lifetime over: retrying cannot
    /// help.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliverError::Rejected { reply, stage } => {
                reply.is_permanent()
                    && !reply.is_quota()
                    && !reply.is_send_as_denied()
                    && matches!(
                        stage,
                        Stage::Mail | Stage::Rcpt | Stage::Data | Stage::DataEnd
                    )
            }
            DeliverError::Expired { .. } => true,
            _ => false,
        }
    }

    /// What kind of failure it is.
    pub fn class(&self) -> Class {
        match self {
            DeliverError::Setup(_) | DeliverError::Password(_) | DeliverError::Expired { .. } => {
                Class::Local
            }
            DeliverError::Resolve(_)
            | DeliverError::Connect { .. }
            | DeliverError::Timeout(_)
            | DeliverError::Io { .. }
            | DeliverError::Protocol { .. } => Class::Unreachable,
            DeliverError::NoStartTls | DeliverError::Certificate { .. } | DeliverError::Tls(_) => {
                Class::Tls
            }
            DeliverError::NoAuthMechanism(_)
            | DeliverError::AuthFailed(_)
            | DeliverError::OAuth2Refused { .. } => Class::Auth,
            DeliverError::OAuth2(e) if e.is_temporary() => Class::Unreachable,
            DeliverError::OAuth2(TokenError::Setup(_) | TokenError::Store(_)) => Class::Local,
            DeliverError::OAuth2(_) => Class::Auth,
            DeliverError::Rejected { reply, .. } if reply.is_quota() => Class::Quota,
            DeliverError::Rejected { reply, .. } if reply.is_send_as_denied() => Class::Auth,
            DeliverError::Rejected { reply, .. } if reply.is_permanent() => Class::Relay5xx,
            DeliverError::Rejected { .. } => Class::Relay4xx,
        }
    }

    /// Whether it failed before any message data went out (at RSET, MAIL
    /// FROM or RCPT TO): then the relay cannot hold the message.
    pub fn before_data(&self) -> bool {
        matches!(self.stage(), Stage::Rset | Stage::Mail | Stage::Rcpt)
    }

    /// Whether the relay may hold the message: the whole of it went out
    /// and no reply to its final dot came (lost, late or garbled). Then
    /// it must not be sent anywhere else. A refusal at that point is an
    /// answer: the relay does not have it.
    pub fn relay_may_have_it(&self) -> bool {
        match self {
            DeliverError::Timeout(stage)
            | DeliverError::Io { stage, .. }
            | DeliverError::Protocol { stage, .. } => *stage == Stage::DataEnd,
            _ => false,
        }
    }

    /// Whether the connection is still usable for the next message.
    pub fn connection_usable(&self) -> bool {
        matches!(self, DeliverError::Rejected { .. })
    }

    /// The stage at which it failed.
    pub fn stage(&self) -> Stage {
        match self {
            DeliverError::Setup(_) | DeliverError::Expired { .. } => Stage::Connect,
            DeliverError::Resolve(_) => Stage::Resolve,
            DeliverError::Connect { .. } => Stage::Connect,
            DeliverError::Timeout(s) => *s,
            DeliverError::Io { stage, .. } | DeliverError::Protocol { stage, .. } => *stage,
            DeliverError::NoStartTls => Stage::StartTls,
            DeliverError::Certificate { .. } | DeliverError::Tls(_) => Stage::Tls,
            DeliverError::NoAuthMechanism(_)
            | DeliverError::Password(_)
            | DeliverError::AuthFailed(_)
            | DeliverError::OAuth2(_)
            | DeliverError::OAuth2Refused { .. } => Stage::Auth,
            DeliverError::Rejected { stage, .. } => *stage,
        }
    }
}

impl fmt::Display for DeliverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliverError::Setup(e) => write!(f, "{e}"),
            DeliverError::Expired { after, last_error } => write!(
                f,
                "undelivered after {}; last error: {last_error}",
                humantime::format_duration(*after)
            ),
            DeliverError::Resolve(e) => {
                write!(
                    f,
                    "cannot resolve the relay's name ({e}): check relay.host and DNS"
                )
            }
            DeliverError::Connect { addr, error } => write!(
                f,
                "cannot connect to {addr} ({error}): check relay.host, relay.port and the \
                 firewall's outbound rule"
            ),
            DeliverError::Timeout(stage @ (Stage::Resolve | Stage::Connect)) => write!(
                f,
                "timed out at {stage}: check relay.host, relay.port and the firewall's outbound rule"
            ),
            // Something took the connection but never spoke SMTP: often
            // a TLS-only port (465) reached with tls = "starttls".
            DeliverError::Timeout(Stage::Greeting) => write!(
                f,
                "timed out at greeting: the relay accepted the connection but sent no SMTP \
                 greeting within relay.timeout; check relay.port and relay.tls (465 needs \
                 tls = \"implicit\")"
            ),
            DeliverError::Timeout(stage) => write!(
                f,
                "timed out at {stage}: the relay stopped answering within relay.timeout; check \
                 the relay, or raise relay.timeout if it is just slow"
            ),
            // The whole message went out; only the reply is missing.
            DeliverError::Io {
                stage: Stage::DataEnd,
                error,
            } => write!(
                f,
                "connection lost at end of DATA, before the relay's reply ({error}): the relay \
                 may have the message, and sending it again may deliver it twice"
            ),
            DeliverError::Io { stage, error } => write!(f, "connection lost at {stage}: {error}"),
            DeliverError::NoStartTls => write!(
                f,
                "the relay does not offer STARTTLS, so nothing was sent: check relay.port \
                 (465 needs tls = \"implicit\")"
            ),
            DeliverError::Certificate {
                error,
                presented: Some(cert),
                pinned: true,
            } => write!(
                f,
                "certificate not verified: the relay presented {cert}, which is not in \
                 relay.fingerprints; if the relay's certificate changed legitimately, set {}",
                cert.config_line()
            )
            .and_then(|()| write!(f, " (invalid peer certificate: {error})")),
            DeliverError::Certificate {
                error,
                presented: Some(cert),
                pinned: false,
            } => write!(
                f,
                "certificate not verified (invalid peer certificate: {error}): the relay presented {cert}, subject {}, \
                 issuer {}; set relay.ca_file to its CA, or pin it with {}",
                cert.subject,
                cert.issuer,
                cert.config_line()
            ),
            DeliverError::Certificate { error, .. } => {
                write!(
                    f,
                    "certificate not verified: invalid peer certificate: {error}"
                )
            }
            DeliverError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            DeliverError::NoAuthMechanism(offered) => write!(
                f,
                "the relay offers no AUTH PLAIN or LOGIN (it offers: {offered})"
            ),
            DeliverError::Password(e) => write!(f, "cannot read the SASL password: {e}"),
            DeliverError::AuthFailed(reply) => write!(
                f,
                "authentication failed: check relay.username, relay.domain and relay.password_file \
                 (relay said: {reply})"
            ),
            DeliverError::OAuth2(e) => write!(f, "{e}"),
            DeliverError::OAuth2Refused { reply, status } => {
                let status = status
                    .as_ref()
                    .map(|s| format!(", status {s}"))
                    .unwrap_or_default();
                let text = reply.to_string();
                if text.contains("5.7.139") || text.contains("SmtpClientAuthentication") {
                    write!(
                        f,
                        "the relay refused the OAuth 2.0 sign-in (relay said: {reply}{status}): \
                         SMTP AUTH is turned off for the mailbox or the tenant; in Exchange \
                         Online: Set-CASMailbox -Identity MAILBOX -SmtpClientAuthenticationDisabled \
                         $false"
                    )
                } else {
                    write!(
                        f,
                        "the relay refused the OAuth 2.0 access token, fresh from the token \
                         endpoint too (relay said: {reply}{status}): relay.username must be the \
                         mailbox that signed in with relayctl oauth2 login, the app must have \
                         the mail scope (relay.oauth2.scope), and SMTP AUTH must be on for the \
                         mailbox"
                    )
                }
            }
            DeliverError::Rejected { stage, reply } if reply.is_quota() => write!(
                f,
                "{stage} refused: {reply} (the account's sending quota is used up: the alert \
                 waits until it resets; set relay.max_per_day under the provider's limit)"
            ),
            DeliverError::Rejected { stage, reply } if reply.is_send_as_denied() => write!(
                f,
                "{stage} refused: {reply} (the mailbox that signed in may not send as the \
                 envelope sender: set relay.sender to that mailbox, or give it Send As rights)"
            ),
            DeliverError::Rejected { stage, reply } => write!(f, "{stage} refused: {reply}"),
            DeliverError::Protocol { stage, line } => {
                write!(f, "unexpected answer at {stage}: {line:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16) -> Reply {
        Reply {
            code,
            lines: vec!["x".into()],
        }
    }

    #[test]
    fn each_failure_has_the_class_a_person_must_look_at() {
        use std::time::Duration;
        let cases = [
            (
                DeliverError::Resolve("no such host".into()),
                Class::Unreachable,
            ),
            (DeliverError::Timeout(Stage::Greeting), Class::Unreachable),
            (
                DeliverError::Protocol {
                    stage: Stage::Ehlo,
                    line: "garbage".into(),
                },
                Class::Unreachable,
            ),
            (DeliverError::NoStartTls, Class::Tls),
            (
                DeliverError::Certificate {
                    error: tokio_rustls::rustls::CertificateError::ApplicationVerificationFailure,
                    presented: None,
                    pinned: true,
                },
                Class::Tls,
            ),
            (DeliverError::AuthFailed(reply(535)), Class::Auth),
            (
                DeliverError::NoAuthMechanism("CRAM-MD5".into()),
                Class::Auth,
            ),
            (
                DeliverError::Rejected {
                    stage: Stage::Rcpt,
                    reply: reply(451),
                },
                Class::Relay4xx,
            ),
            (
                DeliverError::Rejected {
                    stage: Stage::DataEnd,
                    reply: reply(554),
                },
                Class::Relay5xx,
            ),
            (DeliverError::Password("mode 0644".into()), Class::Local),
            (
                DeliverError::Setup(TlsSetupError::CaFile("missing".into())),
                Class::Local,
            ),
            (
                DeliverError::Expired {
                    after: Duration::from_secs(86400),
                    last_error: "timed out".into(),
                },
                Class::Local,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
        assert_eq!(Class::Relay4xx.to_string(), "relay-4xx");
    }

    #[test]
    fn only_a_final_refusal_or_the_end_of_its_lifetime_is_permanent() {
        let rejected = |stage, code| DeliverError::Rejected {
            stage,
            reply: reply(code),
        };
        assert!(rejected(Stage::Rcpt, 550).is_permanent());
        let quota = DeliverError::Rejected {
            stage: Stage::Mail,
            reply: Reply::new(550, "5.4.5 Daily user sending limit exceeded"),
        };
        assert!(!quota.is_permanent(), "a quota passes with time");
        assert_eq!(quota.class(), Class::Quota);
        let send_as = DeliverError::Rejected {
            stage: Stage::DataEnd,
            reply: Reply::new(
                554,
                "5.2.252 SendAsDenied; alerts@example.org not allowed to send as ossec@example.org",
            ),
        };
        assert!(
            !send_as.is_permanent(),
            "a setting to fix, not an alert to fail"
        );
        assert_eq!(send_as.class(), Class::Auth);
        assert!(send_as.to_string().contains("set relay.sender"));
        assert!(!rejected(Stage::Rcpt, 450).is_permanent());
        // A 5xx to AUTH is a login to fix, not a message to give up on.
        assert!(!rejected(Stage::Auth, 535).is_permanent());
        assert!(!DeliverError::AuthFailed(reply(535)).is_permanent());
        let expired = DeliverError::Expired {
            after: std::time::Duration::from_secs(14 * 86400),
            last_error: "timed out at EHLO".into(),
        };
        assert!(expired.is_permanent());
        assert_eq!(
            expired.to_string(),
            "undelivered after 14days; last error: timed out at EHLO"
        );
    }
}
