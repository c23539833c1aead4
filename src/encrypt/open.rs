//! Decrypting with a secret key: `relayctl release` opens a held alert
//! with the spool's hold key, and `relayctl demo` shows what its throwaway
//! recipient reads. The daemon itself never decrypts.

use std::io::Read;

use sequoia_openpgp as openpgp;

use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};

use super::keys::POLICY;

/// The plaintext of an OpenPGP message (armored or binary) encrypted to
/// one of `secret`'s keys. Signatures are not looked for: alerts are
/// encrypted, not signed.
pub fn decrypt(secret: &Cert, message: &[u8]) -> Result<Vec<u8>, String> {
    let helper = Opener { secret };
    let mut reader = DecryptorBuilder::from_bytes(message)
        .and_then(|b| b.with_policy(&POLICY, None, helper))
        .map_err(|e| format!("cannot decrypt: {e}"))?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| format!("cannot decrypt: {e}"))?;
    Ok(plain)
}

/// Decrypts with the secret keys a session key was made for.
struct Opener<'a> {
    secret: &'a Cert,
}

impl VerificationHelper for Opener<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }

    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        Ok(())
    }
}

impl DecryptionHelper for Opener<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            for ka in self.secret.keys().unencrypted_secret() {
                let named = pkesk
                    .recipient()
                    .is_some_and(|r| r.aliases(ka.key().key_handle()));
                if !named {
                    continue;
                }
                let mut pair = ka.key().clone().into_keypair()?;
                if let Some((algo, key)) = pkesk.decrypt(&mut pair, sym_algo)
                    && decrypt(algo, &key)
                {
                    return Ok(None);
                }
            }
        }
        Err(openpgp::anyhow::anyhow!(
            "none of the keys it was encrypted to is here"
        ))
    }
}
