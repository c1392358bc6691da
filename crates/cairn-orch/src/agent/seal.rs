//! Signed envelopes: how a message keeps its author's identity across a
//! bus that is only transport ([`super::bus`]).
//!
//! Over TLS the connection proves who speaks; over NATS any client of the
//! server may publish anything on any subject, so every message carries
//! its own proof: the author's Ed25519 public key and its signature over
//! the subject and the body. The key is the one TLS would have shown (the
//! same `DIR/NAME.key`), so its fingerprint is the one `cairn keys` lists
//! and the agents pin. Binding the subject in the signature keeps a
//! message from being replayed on another subject (a job for one agent
//! published to another's); replays on the same subject are the reader's
//! to refuse (nonces and expiries, see [`super::bus`]).
//!
//! Salt does the same for its publications (`sign_pub_messages`: the
//! master signs each with its key and minions check it against the master
//! key they pinned).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo: the fingerprint of
/// a raw key is the SHA-256 of this and the key, as TLS's is of the
/// certificate's SPKI.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What the signature covers, before the subject and the body: a message
/// signed for another purpose never verifies here.
const CONTEXT: &[u8] = b"cairn-bus-v1\0";

/// The largest envelope read: a job's state file, or a command's output,
/// fit (as [`super::protocol::MAX_FRAME`] over TLS; the NATS server's own
/// `max_payload` must allow it).
pub const MAX_ENVELOPE: usize = super::protocol::MAX_FRAME;

/// A key that signs envelopes.
pub struct Signer {
    pair: Ed25519KeyPair,
    /// Hex SHA-256 of its SubjectPublicKeyInfo.
    pub fingerprint: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl Signer {
    /// From a PKCS#8 Ed25519 key (what [`super::tls::Identity`] keeps).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Signer, String> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| format!("not an Ed25519 key: {e}"))?;
        let fingerprint = key_fingerprint(pair.public_key().as_ref());
        Ok(Signer { pair, fingerprint })
    }

    /// The envelope of `body` for `subject`.
    pub fn seal(&self, subject: &str, body: &[u8]) -> Vec<u8> {
        let sig = self.pair.sign(&signed_bytes(subject, body));
        let env = Envelope {
            key: B64.encode(self.pair.public_key().as_ref()),
            sig: B64.encode(sig.as_ref()),
            body: String::from_utf8_lossy(body).into_owned(),
        };
        serde_json::to_vec(&env).expect("envelopes serialize")
    }

    /// The envelope of a message, as JSON.
    pub fn seal_json<T: Serialize>(&self, subject: &str, msg: &T) -> Vec<u8> {
        self.seal(
            subject,
            &serde_json::to_vec(msg).expect("messages serialize"),
        )
    }
}

/// The hex SHA-256 of a raw Ed25519 public key's SubjectPublicKeyInfo.
pub fn key_fingerprint(public: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(ED25519_SPKI_PREFIX);
    h.update(public);
    hex::encode(h.finalize())
}

fn signed_bytes(subject: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + subject.len() + 1 + body.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(subject.as_bytes());
    m.push(0);
    m.extend_from_slice(body);
    m
}

/// A message as it travels: the body is JSON text, kept as the exact bytes
/// that were signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The author's raw Ed25519 public key, base64.
    pub key: String,
    /// Its signature over the context, the subject and the body, base64.
    pub sig: String,
    pub body: String,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("envelope of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("not a signed envelope (unsigned or malformed): {0}")]
    Malformed(String),
    #[error("bad signature (tampered, or signed for another subject) by key {0}")]
    BadSignature(String),
}

/// An envelope whose signature checked out: who signed it (the key's
/// fingerprint; whether that key may say anything is the caller's
/// question) and the body it signed.
#[derive(Debug, Clone)]
pub struct Opened {
    pub fingerprint: String,
    pub body: String,
}

/// Checks an envelope received on `subject`.
pub fn open(subject: &str, payload: &[u8]) -> Result<Opened, SealError> {
    if payload.len() > MAX_ENVELOPE {
        return Err(SealError::TooLarge(payload.len(), MAX_ENVELOPE));
    }
    let env: Envelope =
        serde_json::from_slice(payload).map_err(|e| SealError::Malformed(e.to_string()))?;
    let key = B64
        .decode(&env.key)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| SealError::Malformed("its key is not 32 bytes of base64".into()))?;
    let sig = B64
        .decode(&env.sig)
        .map_err(|_| SealError::Malformed("its signature is not base64".into()))?;
    let fingerprint = key_fingerprint(&key);
    UnparsedPublicKey::new(&ED25519, &key)
        .verify(&signed_bytes(subject, env.body.as_bytes()), &sig)
        .map_err(|_| SealError::BadSignature(fingerprint.clone()))?;
    Ok(Opened {
        fingerprint,
        body: env.body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tls::Identity;

    #[test]
    fn an_envelope_opens_only_unchanged_and_on_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(dir.path(), "agent", "a1").unwrap();
        let s = id.signer().unwrap();
        // The bus's fingerprint is the one TLS shows: `cairn keys` has one.
        assert_eq!(s.fingerprint, id.fingerprint);
        let sealed = s.seal("cairn.agent.a1.job", br#"{"x":1}"#);
        let o = open("cairn.agent.a1.job", &sealed).unwrap();
        assert_eq!(o.fingerprint, id.fingerprint);
        assert_eq!(o.body, r#"{"x":1}"#);
        // Another subject: the signature binds it.
        let e = open("cairn.agent.a2.job", &sealed).unwrap_err();
        assert!(matches!(e, SealError::BadSignature(_)), "{e}");
        // A changed body.
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.body = r#"{"x":2}"#.into();
        let tampered = serde_json::to_vec(&env).unwrap();
        let e = open("cairn.agent.a1.job", &tampered).unwrap_err();
        assert!(matches!(e, SealError::BadSignature(_)), "{e}");
        // Another key swapped in with the old signature.
        let other = Identity::load_or_create(&dir.path().join("o"), "agent", "a2").unwrap();
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        let o2: Envelope =
            serde_json::from_slice(&other.signer().unwrap().seal("s", b"{}")).unwrap();
        env.key = o2.key;
        let e = open("cairn.agent.a1.job", &serde_json::to_vec(&env).unwrap()).unwrap_err();
        assert!(matches!(e, SealError::BadSignature(_)), "{e}");
        // Unsigned: a bare message, or an envelope without its fields.
        for raw in [
            &br#"{"type":"job"}"#[..],
            b"not json",
            br#"{"key":"","sig":"","body":"{}"}"#,
        ] {
            let e = open("cairn.agent.a1.job", raw).unwrap_err();
            assert!(matches!(e, SealError::Malformed(_)), "{e}");
        }
        let e = open("s", &vec![b' '; MAX_ENVELOPE + 1]).unwrap_err();
        assert!(matches!(e, SealError::TooLarge(..)), "{e}");
    }
}
