//! The message transform: any bytes a local client sends become an
//! encrypted outgoing message, or a clear error; never a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use alert_relay::config::{KeyFailurePolicy, Mailbox, MessageFormat, SubjectPolicy};
use alert_relay::encrypt::{Padding, RecipientKey, Sealer};
use alert_relay::route::{Address, Recipient};
use libfuzzer_sys::fuzz_target;
use sequoia_openpgp::Cert;
use sequoia_openpgp::parse::Parse;

struct Fixture {
    key: RecipientKey,
    sealers: Vec<Sealer>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cert = Cert::from_bytes(include_bytes!("../../tests/keys/journalist.asc")).unwrap();
        let address = Address::parse("journalist@example.org").unwrap();
        let key = RecipientKey::new(
            0,
            Recipient(address.clone()),
            cert.fingerprint().to_hex().parse().unwrap(),
            "journalist.asc".into(),
            cert,
        );
        let sender = Mailbox::parse("OSSEC HIDS <ossec@example.net>").unwrap();
        let sealers = [
            (MessageFormat::PgpMime, SubjectPolicy::Scrub, Padding::Padme),
            (MessageFormat::Inline, SubjectPolicy::Keep, Padding::Multiple(4096)),
            (MessageFormat::PgpMime, SubjectPolicy::Hide, Padding::None),
            (MessageFormat::Inline, SubjectPolicy::Scrub, Padding::Padme),
        ]
        .into_iter()
        .map(|(format, subject, pad)| Sealer {
            format,
            subject,
            on_key_failure: KeyFailurePolicy::Hold,
            pad,
            sender: sender.clone(),
        })
        .collect();
        Fixture { key, sealers }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let sealer = &f.sealers[data.first().map_or(0, |b| *b as usize % f.sealers.len())];
    let sealed = sealer
        .outgoing(data, &f.key, SystemTime::now())
        .expect("a valid key encrypts");
    // Nothing of the input may appear in the clear outer header.
    let head_end = sealed
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header");
    assert!(head_end < sealed.len());
});
