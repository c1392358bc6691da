//! ed25519 signatures over manifests (ring). The key pair is kept as its
//! 32-byte seed, which is what the caller seals and stores; the public key
//! goes to hosts as PEM (SubjectPublicKeyInfo) because that is what
//! `openssl pkeyutl -verify` reads there.

use std::fmt;

use base64::Engine as _;
use ring::rand::SecureRandom as _;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

use crate::error::{ReleaseError, Result, VerifyError};

/// SubjectPublicKeyInfo DER for ed25519 (RFC 8410) up to the key itself:
/// SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (32 bytes) }.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub struct SigningKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| ReleaseError::Key("the system's random source failed".into()))?;
        SigningKey::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| ReleaseError::Key(format!("ed25519 seed rejected: {e}")))?;
        Ok(SigningKey { seed: *seed, pair })
    }

    /// The secret: whoever holds it can sign artifacts that every host
    /// trusting [`SigningKey::public`] installs.
    pub fn seed(&self) -> [u8; 32] {
        self.seed
    }

    pub fn public(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(self.pair.sign(message).as_ref());
        Signature(sig)
    }
}

impl Clone for SigningKey {
    fn clone(&self) -> SigningKey {
        SigningKey::from_seed(&self.seed).expect("a seed that made a key makes it again")
    }
}

/// Never prints the seed.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<PublicKey> {
        let bytes = hex::decode(text.trim())
            .map_err(|e| ReleaseError::Key(format!("public key is not hex: {e}")))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            ReleaseError::Key(format!(
                "an ed25519 public key is 32 bytes, not {}",
                b.len()
            ))
        })?;
        Ok(PublicKey(key))
    }

    /// DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        der
    }

    /// `-----BEGIN PUBLIC KEY-----` PEM, as OpenSSL writes and reads it.
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(self.to_spki_der());
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    pub fn from_pem(pem: &str) -> Result<PublicKey> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| ReleaseError::Key(format!("PEM body is not base64: {e}")))?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(key);
                Ok(PublicKey(k))
            }
            _ => Err(ReleaseError::Key(
                "not an ed25519 SubjectPublicKeyInfo".into(),
            )),
        }
    }

    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), VerifyError> {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, &signature.0)
            .map_err(|_| VerifyError::BadSignature {
                public_key: self.to_hex(),
            })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The raw 64 bytes, which is also the `manifest.sig` file's content (what
/// `openssl pkeyutl -sigfile` reads).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn from_bytes(bytes: &[u8]) -> Result<Signature> {
        let sig: [u8; 64] = bytes.try_into().map_err(|_| {
            ReleaseError::Manifest(format!(
                "an ed25519 signature is 64 bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(Signature(sig))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1: the empty message.
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(
            key.public().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            key.sign(b"").to_hex(),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert_eq!(key.seed(), seed);
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_and_key() {
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(b"manifest");
        key.public().verify(b"manifest", &sig).unwrap();
        assert!(key.public().verify(b"manifesT", &sig).is_err());
        let other = SigningKey::generate().unwrap();
        let err = other.public().verify(b"manifest", &sig).unwrap_err();
        assert!(err.to_string().contains(&other.public().to_hex()), "{err}");
    }

    #[test]
    fn public_key_forms_round_trip() {
        let key = SigningKey::generate().unwrap();
        let public = key.public();
        assert_eq!(PublicKey::from_hex(&public.to_hex()).unwrap(), public);
        let pem = public.to_pem();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
            "{pem}"
        );
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), public);
        assert!(PublicKey::from_hex("abcd").is_err());
        assert_eq!(key.clone().public(), public);
        assert!(!format!("{key:?}").contains(&hex::encode(key.seed())));
    }

    #[test]
    fn openssl_reads_the_pem_and_verifies_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(b"{\"format\":1}");
        std::fs::write(dir.path().join("pub.pem"), key.public().to_pem()).unwrap();
        std::fs::write(dir.path().join("m.json"), b"{\"format\":1}").unwrap();
        std::fs::write(dir.path().join("m.sig"), sig.0).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin",
            ])
            .args(["-in", "m.json", "-sigfile", "m.sig"])
            .current_dir(dir.path())
            .output()
            .expect("openssl (scripts/install-deps) runs");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
