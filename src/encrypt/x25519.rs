//! The session-key packet (PKESK v3) for an ECDH key on Curve25519 (the
//! `cv25519` subkeys GnuPG makes), with x25519-dalek (the curve code of
//! sequoia's own pure-Rust backend) and the system CSPRNG.
//!
//! Why not sequoia's own: with the `crypto-nettle` backend (the .deb's),
//! every random value sequoia draws seeds a new Yarrow generator, 1,500
//! SHA-256 iterations, about 0.1 ms each, and an alert to a Curve25519
//! key drew three (the session key, the ephemeral key, the IV). Here the
//! session key and the ephemeral key come from the system CSPRNG, as for
//! RSA (`super::rsa`); what remains to sequoia is the key wrap, which draws
//! nothing.
//!
//! The packet is the one RFC 6637 section 8 describes (RFC 9580 section
//! 5.1.6 calls it the legacy ECDH key): an ephemeral X25519 key pair
//! (v, V), the shared secret S = X25519(v, R) with the recipient's key R,
//! Z = KDF(S, Param) (SHA-2 over 00000001 || S || Param, truncated to the
//! key-wrap cipher's key size), and the session key, prefixed by the
//! symmetric algorithm, followed by its checksum and PKCS#5-padded to 40
//! octets, wrapped with AES Key Wrap under Z. GnuPG decrypts it in the
//! tests (`tests/encrypt.rs`, the journalist key), and a unit test
//! (`super::tests`) decrypts it with sequoia and the secret key.

use ring::rand::{SecureRandom, SystemRandom};
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use openpgp::crypto::mem::Protected;
use openpgp::crypto::{SessionKey, ecdh, mpi};
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::{Key, PKESK};
use openpgp::types::{Curve, HashAlgorithm, PublicKeyAlgorithm, SymmetricAlgorithm};
use openpgp::{Fingerprint, KeyID};

use super::rsa::{WrapError, checksummed};

/// What the wrapped session key is padded to (RFC 6637 section 8), so
/// that its length does not tell the cipher.
const PADDED: usize = 40;

/// A v4 ECDH key on Curve25519, ready for the key agreement.
#[derive(Clone)]
pub struct X25519Key {
    fingerprint: Fingerprint,
    keyid: KeyID,
    /// R, the recipient's public key (RFC 7748's 32 octets).
    public: [u8; 32],
    /// The KDF's hash and the key-wrap cipher the key asks for.
    hash: HashAlgorithm,
    wrap: SymmetricAlgorithm,
    /// The KDF's fixed input: everything after S.
    param: Vec<u8>,
}

impl std::fmt::Debug for X25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519Key({})", self.fingerprint)
    }
}

impl X25519Key {
    /// The key, when it is a v4 ECDH key on Curve25519 with a KDF and a
    /// key-wrap cipher this code knows; `None` leaves it to sequoia.
    pub fn new(key: &Key<PublicParts, UnspecifiedRole>) -> Option<X25519Key> {
        let mpi::PublicKey::ECDH {
            curve: curve @ Curve::Cv25519,
            q,
            hash,
            sym,
        } = key.mpis()
        else {
            return None;
        };
        if key.version() != 4 || key.pk_algo() != PublicKeyAlgorithm::ECDH {
            return None;
        }
        if !matches!(
            hash,
            HashAlgorithm::SHA256 | HashAlgorithm::SHA384 | HashAlgorithm::SHA512
        ) {
            return None;
        }
        if !matches!(
            sym,
            SymmetricAlgorithm::AES128 | SymmetricAlgorithm::AES192 | SymmetricAlgorithm::AES256
        ) {
            return None;
        }
        let public: [u8; 32] = q.decode_point(curve).ok()?.0.try_into().ok()?;
        let fingerprint = key.fingerprint();
        // Param = curve OID length || curve OID || public key algorithm ||
        // 03 || 01 || KDF hash || key-wrap cipher || "Anonymous Sender    "
        // || recipient fingerprint.
        let oid = curve.oid();
        let mut param = Vec::with_capacity(1 + oid.len() + 1 + 4 + 20 + 20);
        param.push(u8::try_from(oid.len()).ok()?);
        param.extend_from_slice(oid);
        param.push(PublicKeyAlgorithm::ECDH.into());
        param.extend_from_slice(&[3, 1, (*hash).into(), (*sym).into()]);
        param.extend_from_slice(b"Anonymous Sender    ");
        param.extend_from_slice(fingerprint.as_bytes());
        Some(X25519Key {
            keyid: key.keyid(),
            fingerprint,
            public,
            hash: *hash,
            wrap: *sym,
            param,
        })
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The PKESK v3 packet that gives `session_key` (for `algo`) to this
    /// key. Its size is the same for every message: V is 33 octets
    /// (0x40 and the point), the wrapped key 48.
    pub fn pkesk(
        &self,
        algo: SymmetricAlgorithm,
        session_key: &SessionKey,
    ) -> Result<PKESK, WrapError> {
        let packet = |e: String| WrapError::Packet(e);
        // The ephemeral key pair (v, V) and the shared secret S = vR.
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| WrapError::Random)?;
        let v = x25519_dalek::StaticSecret::from(*seed);
        let vb = x25519_dalek::PublicKey::from(&v);
        let s = v.diffie_hellman(&x25519_dalek::PublicKey::from(self.public));
        if !s.was_contributory() {
            return Err(packet(
                "the key agreement failed (a key of low order)".into(),
            ));
        }
        // Z = KDF(S, Param): the hash of 00000001 || S || Param, cut to the
        // key-wrap cipher's key size.
        let key_size = self.wrap.key_size().map_err(|e| packet(e.to_string()))?;
        let mut kdf = self
            .hash
            .context()
            .map_err(|e| packet(e.to_string()))?
            .for_digest();
        kdf.update(&[0, 0, 0, 1]);
        kdf.update(s.as_bytes());
        kdf.update(&self.param);
        let mut z = Protected::from(vec![0u8; key_size]);
        kdf.digest(&mut z).map_err(|e| packet(e.to_string()))?;

        // m = algo || session key || checksum || PKCS#5 padding to 40.
        let psk = checksummed(algo, session_key);
        let pad = PADDED
            .checked_sub(psk.len())
            .and_then(|n| u8::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| packet("the session key is too long".into()))?;
        let mut m = Protected::from(vec![pad; PADDED]);
        m[..psk.len()].copy_from_slice(&psk);
        let wrapped = ecdh::aes_key_wrap(self.wrap, &z, &m).map_err(|e| packet(e.to_string()))?;
        let esk = mpi::Ciphertext::ECDH {
            e: mpi::MPI::new_compressed_point(vb.as_bytes()),
            key: wrapped.into_boxed_slice(),
        };
        PKESK3::new(Some(self.keyid.clone()), PublicKeyAlgorithm::ECDH, esk)
            .map(PKESK::from)
            .map_err(|e| packet(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encrypt::rsa::session_key;
    use crate::encrypt::tests::secret_cert;

    #[test]
    fn every_session_key_packet_has_one_size_and_its_own_ephemeral_key() {
        use openpgp::serialize::MarshalInto;
        let cert = secret_cert("journalist");
        let sub = cert.keys().subkeys().next().unwrap();
        let x = X25519Key::new(sub.key().parts_as_public().role_as_unspecified()).unwrap();
        let sk = session_key(SymmetricAlgorithm::AES256).unwrap();
        let packets: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                x.pkesk(SymmetricAlgorithm::AES256, &sk)
                    .unwrap()
                    .to_vec()
                    .unwrap()
            })
            .collect();
        let sizes: std::collections::BTreeSet<usize> = packets.iter().map(Vec::len).collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
        let distinct: std::collections::BTreeSet<&Vec<u8>> = packets.iter().collect();
        assert_eq!(distinct.len(), packets.len(), "an ephemeral key was reused");
    }

    #[test]
    fn a_key_of_low_order_is_refused_not_encrypted_to() {
        // The all-zero point: every shared secret with it is zero, so the
        // "encryption" would be readable by anyone.
        let weak: Key<PublicParts, UnspecifiedRole> =
            openpgp::packet::key::Key4::import_public_cv25519(&[0u8; 32], None, None, None)
                .unwrap()
                .into();
        let x = X25519Key::new(&weak).expect("a Curve25519 ECDH key");
        let sk = session_key(SymmetricAlgorithm::AES256).unwrap();
        match x.pkesk(SymmetricAlgorithm::AES256, &sk) {
            Err(WrapError::Packet(why)) => assert!(why.contains("low order"), "{why}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn other_keys_are_left_to_sequoia() {
        for name in ["alerts", "rsa2048"] {
            let cert = secret_cert(name);
            for ka in cert.keys() {
                let k = ka.key().parts_as_public().role_as_unspecified().clone();
                assert!(X25519Key::new(&k).is_none(), "{name}");
            }
        }
        // The journalist's primary key is Ed25519, for signing.
        let cert = secret_cert("journalist");
        let primary = cert
            .primary_key()
            .key()
            .parts_as_public()
            .role_as_unspecified()
            .clone();
        assert!(X25519Key::new(&primary).is_none());
    }
}
