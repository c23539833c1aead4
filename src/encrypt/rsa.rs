//! The session-key packet (PKESK v3) for an RSA key, on crypto-bigint's
//! constant-time Montgomery arithmetic.
//!
//! Why not sequoia's own: with the `crypto-rust` backend, sequoia encrypts
//! to RSA through the `rsa` crate, whose num-bigint-dig exponentiation
//! takes about 1.1 ms for a 4096-bit key, most of an alert's CPU cost.
//! crypto-bigint (RustCrypto's, already in the tree) does it an order of
//! magnitude faster and in constant time: the padded session key is
//! secret, the exponent and modulus are public. The `crypto-nettle` build
//! uses it too, so both builds share one code path and the session key
//! comes from the system CSPRNG, not from a Yarrow instance seeded anew
//! for every draw.
//!
//! The packet is the one RFC 4880 section 5.1 describes and sequoia
//! writes: the session key, prefixed by the symmetric algorithm and
//! followed by a two-octet checksum, EME-PKCS1-v1_5 encoded (section 13.1)
//! to the modulus length and raised to `e` mod `n`. GnuPG decrypts it in
//! the tests (`tests/encrypt.rs`), and a unit test (`super::tests`) decrypts it with
//! sequoia and the secret key.

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, U4096};
use ring::rand::{SecureRandom, SystemRandom};
use sequoia_openpgp as openpgp;
use zeroize::Zeroize;

use openpgp::crypto::SessionKey;
use openpgp::crypto::mpi;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::{Key, PKESK};
use openpgp::types::{PublicKeyAlgorithm, SymmetricAlgorithm};
use openpgp::{Fingerprint, KeyID};

/// Limbs of the largest modulus handled here (4096 bits); a larger key
/// goes through sequoia.
const LIMBS: usize = U4096::LIMBS;
const MAX_BYTES: usize = U4096::BYTES;
/// RSA moduli below 2048 bits are refused by the policy anyway; below this
/// the padding would not fit a 32-byte session key.
const MIN_BYTES: usize = 128;

/// An RSA encryption key, ready for the public operation.
#[derive(Clone)]
pub struct RsaKey {
    fingerprint: Fingerprint,
    keyid: KeyID,
    pk_algo: PublicKeyAlgorithm,
    params: DynResidueParams<LIMBS>,
    /// The public exponent, big-endian without leading zeros.
    e: Vec<u8>,
    /// The modulus length in bytes: the length of the encoded message.
    k: usize,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaKey({}, {} bits)", self.fingerprint, self.k * 8)
    }
}

/// Why a session key could not be encrypted here (for RSA, or X25519:
/// `super::x25519`).
#[derive(Debug)]
pub enum WrapError {
    /// The system's random number generator failed.
    Random,
    /// The PKESK packet could not be built.
    Packet(String),
}

impl std::fmt::Display for WrapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WrapError::Random => write!(f, "the system random number generator failed"),
            WrapError::Packet(e) => write!(f, "cannot build the session-key packet: {e}"),
        }
    }
}

impl RsaKey {
    /// The key, when it is RSA with a modulus of 1024 to 4096 bits; `None`
    /// leaves it to sequoia.
    pub fn new(key: &Key<PublicParts, UnspecifiedRole>) -> Option<RsaKey> {
        let pk_algo = key.pk_algo();
        // 1 is RSA (Encrypt or Sign), 2 the deprecated RSA Encrypt-Only.
        if !matches!(u8::from(pk_algo), 1 | 2) {
            return None;
        }
        let mpi::PublicKey::RSA { e, n } = key.mpis() else {
            return None;
        };
        let (n, e) = (n.value(), e.value());
        if !(MIN_BYTES..=MAX_BYTES).contains(&n.len())
            || !(1..=MAX_BYTES).contains(&e.len())
            || n[0] == 0
            || e[0] == 0
        {
            return None;
        }
        // An even modulus is no RSA key, and an exponent below 3 or even
        // makes the encryption worthless: such keys are refused before
        // they get here (`keys::weak_rsa`), and never taken here.
        if n[n.len() - 1] & 1 == 0 || e[e.len() - 1] & 1 == 0 || (e.len() == 1 && e[0] < 3) {
            return None;
        }
        Some(RsaKey {
            fingerprint: key.fingerprint(),
            keyid: key.keyid(),
            pk_algo,
            params: DynResidueParams::new(&uint(n)),
            e: e.to_vec(),
            k: n.len(),
        })
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The PKESK v3 packet that gives `session_key` (for `algo`) to this key.
    ///
    /// Its size is the same for every message: an MPI is written without
    /// leading zero bytes, so a ciphertext whose top byte is zero (about
    /// one in 200) would make the message a byte shorter, and messages
    /// that must be of one size (the heartbeat, SecureDrop's journalist
    /// notification) differ. Such a ciphertext is made again with fresh
    /// padding.
    pub fn pkesk(
        &self,
        algo: SymmetricAlgorithm,
        session_key: &SessionKey,
    ) -> Result<PKESK, WrapError> {
        // Each try fails with probability about 1/200: 64 tries fail
        // together with probability below 2^-480.
        let mut last = None;
        for _ in 0..64 {
            let (pkesk, full) = self.pkesk_once(algo, session_key)?;
            if full {
                return Ok(pkesk);
            }
            last = Some(pkesk);
        }
        last.ok_or_else(|| WrapError::Packet("no ciphertext".into()))
    }

    /// One encryption of the session key; with whether the ciphertext's
    /// top byte is non-zero (the MPI as long as the modulus).
    fn pkesk_once(
        &self,
        algo: SymmetricAlgorithm,
        session_key: &SessionKey,
    ) -> Result<(PKESK, bool), WrapError> {
        // M = algo || session key || checksum (RFC 4880 section 5.1).
        let m_bytes = checksummed(algo, session_key);
        let m_len = m_bytes.len();
        if m_len + 11 > self.k {
            return Err(WrapError::Packet(
                "the session key does not fit the modulus".into(),
            ));
        }
        // EM = 0x00 || 0x02 || PS (non-zero random) || 0x00 || M, right-aligned
        // in the 512-byte buffer so that it reads as a big-endian integer.
        let mut em = vec![0u8; MAX_BYTES];
        let start = MAX_BYTES - self.k;
        em[start + 1] = 2;
        let ps = start + 2..MAX_BYTES - m_len - 1;
        nonzero_random(&mut em[ps])?;
        em[MAX_BYTES - m_len..].copy_from_slice(&m_bytes);

        let mut message = U4096::from_be_slice(&em);
        em.zeroize();
        let mut residue = DynResidue::new(&message, self.params);
        message.zeroize();
        let c = pow_public(&residue, &self.e).retrieve();
        residue.zeroize();
        let bytes = c.to_be_bytes();
        let full = bytes[MAX_BYTES - self.k] != 0;
        let esk = mpi::Ciphertext::RSA {
            c: mpi::MPI::new(&bytes[MAX_BYTES - self.k..]),
        };
        PKESK3::new(Some(self.keyid.clone()), self.pk_algo, esk)
            .map(|p| (PKESK::from(p), full))
            .map_err(|e| WrapError::Packet(e.to_string()))
    }
}

/// `base^e` by left-to-right square-and-multiply. `e` is public (65537 for
/// nearly every key), so its bits may steer the loop: for 65537 that is 16
/// squarings and one multiplication, where crypto-bigint's windowed
/// exponentiation would spend as many again building its table. Each
/// squaring and multiplication is constant time in `base`.
fn pow_public(base: &DynResidue<LIMBS>, e: &[u8]) -> DynResidue<LIMBS> {
    let mut bits = e
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| byte >> i & 1 == 1))
        .skip_while(|bit| !bit);
    // The leading one: start from base itself (e >= 1, checked in new).
    bits.next();
    let mut acc = *base;
    for bit in bits {
        acc = acc.square();
        if bit {
            acc = acc.mul(base);
        }
    }
    acc
}

/// A fresh session key for `algo` from the system CSPRNG.
pub fn session_key(algo: SymmetricAlgorithm) -> Result<SessionKey, WrapError> {
    let size = algo
        .key_size()
        .map_err(|e| WrapError::Packet(e.to_string()))?;
    let mut key = SessionKey::from(vec![0u8; size]);
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| WrapError::Random)?;
    Ok(key)
}

/// The session key as a PKESK v3 carries it (RFC 4880 section 5.1): the
/// symmetric algorithm, the key, and the key's sum modulo 65536.
pub fn checksummed(algo: SymmetricAlgorithm, session_key: &SessionKey) -> SessionKey {
    let checksum = session_key
        .iter()
        .map(|b| u16::from(*b))
        .fold(0u16, u16::wrapping_add);
    let mut m = Vec::with_capacity(1 + session_key.len() + 2);
    m.push(algo.into());
    m.extend_from_slice(session_key);
    m.extend_from_slice(&checksum.to_be_bytes());
    SessionKey::from(m)
}

/// Fills `out` with random non-zero bytes (PKCS#1 v1.5's padding string).
fn nonzero_random(out: &mut [u8]) -> Result<(), WrapError> {
    let rng = SystemRandom::new();
    rng.fill(out).map_err(|_| WrapError::Random)?;
    let mut byte = [0u8; 1];
    for b in out.iter_mut() {
        // Redraw the zeros (1 in 256); which bytes are redrawn says
        // nothing about the session key.
        while *b == 0 {
            rng.fill(&mut byte).map_err(|_| WrapError::Random)?;
            *b = byte[0];
        }
    }
    Ok(())
}

/// A big-endian integer of up to 512 bytes, zero-extended.
fn uint(be: &[u8]) -> U4096 {
    let mut buf = [0u8; MAX_BYTES];
    buf[MAX_BYTES - be.len()..].copy_from_slice(be);
    U4096::from_be_slice(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encrypt::tests::secret_cert;

    #[test]
    fn every_session_key_packet_has_one_size() {
        use openpgp::serialize::MarshalInto;
        // 2048 bits: the fastest key; a zero top byte comes about once in
        // 200 tries, so without the retry 1,000 packets would almost
        // surely not be all of one size.
        let cert = secret_cert("rsa2048");
        let sub = cert.keys().subkeys().next().unwrap();
        let rsa = RsaKey::new(sub.key().parts_as_public().role_as_unspecified()).unwrap();
        let sk = session_key(SymmetricAlgorithm::AES256).unwrap();
        let sizes: std::collections::BTreeSet<usize> = (0..1000)
            .map(|_| {
                let pkesk = rsa.pkesk(SymmetricAlgorithm::AES256, &sk).unwrap();
                pkesk.to_vec().unwrap().len()
            })
            .collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
    }

    #[test]
    fn pow_public_agrees_with_crypto_bigint() {
        let cert = secret_cert("rsa2048");
        let sub = cert.keys().subkeys().next().unwrap();
        let rsa = RsaKey::new(sub.key().parts_as_public().role_as_unspecified()).unwrap();
        let base = DynResidue::new(&uint(&[0x5a; 200]), rsa.params);
        for e in [
            &[1u8][..],
            &[2],
            &[3],
            &[0x01, 0x00, 0x01],
            &[0xff, 0x13, 0x37, 0x42],
        ] {
            let want = base.pow(&uint(e)).retrieve();
            assert_eq!(pow_public(&base, e).retrieve(), want, "e = {e:?}");
        }
    }

    #[test]
    fn session_keys_differ() {
        let a = session_key(SymmetricAlgorithm::AES256).unwrap();
        let b = session_key(SymmetricAlgorithm::AES256).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(&a[..], &b[..]);
    }

    #[test]
    fn other_keys_are_left_to_sequoia() {
        let cert = secret_cert("journalist");
        for ka in cert.keys() {
            let k = ka.key().parts_as_public().role_as_unspecified().clone();
            assert!(RsaKey::new(&k).is_none());
        }
    }

    #[test]
    fn unsafe_exponents_are_refused() {
        let cert = secret_cert("rsa2048");
        let sub = cert.keys().subkeys().next().unwrap();
        let public = sub.key().parts_as_public().role_as_unspecified().clone();
        let mpi::PublicKey::RSA { n, .. } = public.mpis() else {
            panic!("an RSA key");
        };
        let created = public.creation_time();
        for (e, why) in [
            (&[1u8][..], "below 3"),
            (&[2], "below 3"),
            (&[0x01, 0x00, 0x00], "even"),
        ] {
            let weak: Key<PublicParts, UnspecifiedRole> =
                openpgp::packet::key::Key4::import_public_rsa(e, n.value(), Some(created))
                    .unwrap()
                    .into();
            assert!(RsaKey::new(&weak).is_none(), "{e:?}");
            let said = crate::encrypt::keys::weak_rsa(&weak).expect("refused");
            assert!(said.contains(why), "{said}");
        }
        assert!(
            crate::encrypt::keys::weak_rsa(&public).is_none(),
            "65537 is fine"
        );
    }

    #[test]
    fn padding_has_no_zero_byte() {
        let mut buf = [0u8; 4096];
        nonzero_random(&mut buf).unwrap();
        assert!(buf.iter().all(|b| *b != 0));
    }
}
