//! Authenticated encryption of the secret columns.
//!
//! A sealed value is `[FORMAT] ++ nonce (24 bytes) ++ ciphertext ++ tag (16)`,
//! XChaCha20-Poly1305 with a fresh random nonce per value (192-bit nonces:
//! random ones never collide in practice). The associated data names the
//! row the value belongs to (its kind and key columns) and the format byte,
//! so a blob copied onto another row, or onto another kind of row, fails to
//! authenticate instead of decrypting into the wrong place.

use cairn_engine::store::{StoreError, StoreResult};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::key::KEY_LEN;

/// Version of the blob layout and of the associated data.
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The row a sealed value belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Row<'a> {
    /// The known value in `meta` that tells a wrong key at open.
    KeyCheck,
    Resource {
        deployment: &'a str,
        address: &'a str,
    },
    Generated {
        deployment: &'a str,
        name: &'a str,
    },
    Outputs {
        deployment: &'a str,
    },
    /// A release signing key's seed (`cairn artifact build`).
    SigningKey {
        name: &'a str,
    },
}

impl Row<'_> {
    /// `FORMAT`, a tag for the kind of row, then each key column prefixed
    /// by its length, so that no two rows share associated data (no
    /// separator ambiguity whatever the names contain).
    fn associated_data(&self) -> Vec<u8> {
        let (kind, parts): (&[u8], &[&str]) = match self {
            Row::KeyCheck => (b"key-check", &[]),
            Row::Resource {
                deployment,
                address,
            } => (b"resource", &[deployment, address]),
            Row::Generated { deployment, name } => (b"generated-secret", &[deployment, name]),
            Row::Outputs { deployment } => (b"outputs", &[deployment]),
            Row::SigningKey { name } => (b"signing-key", &[name]),
        };
        let mut aad = vec![FORMAT];
        aad.extend_from_slice(b"cairn-state:");
        aad.extend_from_slice(kind);
        for part in parts {
            let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
            aad.extend_from_slice(&len.to_le_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }

    fn describe(&self) -> String {
        match self {
            Row::KeyCheck => "the state's key check".into(),
            Row::Resource {
                deployment,
                address,
            } => format!("the secrets of resource `{address}` in deployment `{deployment}`"),
            Row::Generated { deployment, name } => {
                format!("the generated secret `{name}` of deployment `{deployment}`")
            }
            Row::Outputs { deployment } => {
                format!("the secret outputs of deployment `{deployment}`")
            }
            Row::SigningKey { name } => format!("the signing key `{name}`"),
        }
    }
}

pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    pub(crate) fn seal(&self, row: Row<'_>, plaintext: &[u8]) -> StoreResult<Vec<u8>> {
        let nonce = XNonce::try_generate()
            .map_err(|e| StoreError::Key(format!("cannot draw a random nonce: {e}")))?;
        let aad = row.associated_data();
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Key(format!("cannot encrypt {}", row.describe())))?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        blob.push(FORMAT);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(blob)
    }

    pub(crate) fn open(&self, row: Row<'_>, blob: &[u8]) -> StoreResult<Vec<u8>> {
        let refuse = |why: &str| StoreError::Key(format!("{} {why}", row.describe()));
        let Some((&format, rest)) = blob.split_first() else {
            return Err(refuse("is empty"));
        };
        if format != FORMAT {
            return Err(refuse(&format!(
                "has blob format {format}, which this cairn does not know (it knows {FORMAT})"
            )));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(refuse("is truncated"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| refuse("has a malformed nonce"))?;
        let aad = row.associated_data();
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                refuse(
                    "does not decrypt: it was encrypted with another key, \
                     altered, or copied from another row",
                )
            })
    }

    pub(crate) fn seal_json<T: Serialize + ?Sized>(
        &self,
        row: Row<'_>,
        value: &T,
    ) -> StoreResult<Vec<u8>> {
        let plaintext = serde_json::to_vec(value)
            .map_err(|e| StoreError::Storage(format!("encoding {}: {e}", row.describe())))?;
        self.seal(row, &plaintext)
    }

    pub(crate) fn open_json<T: DeserializeOwned>(
        &self,
        row: Row<'_>,
        blob: &[u8],
    ) -> StoreResult<T> {
        let plaintext = self.open(row, blob)?;
        serde_json::from_slice(&plaintext)
            .map_err(|e| StoreError::Storage(format!("decoding {}: {e}", row.describe())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: Row<'static> = Row::Resource {
        deployment: "prod",
        address: "db",
    };

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; KEY_LEN])
    }

    fn key_error(result: StoreResult<Vec<u8>>) -> String {
        match result {
            Err(StoreError::Key(message)) => message,
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let s = sealer(1);
        let blob = s.seal(ROW, b"hunter2 hunter2").unwrap();
        assert_eq!(blob[0], FORMAT);
        assert_eq!(blob.len(), 1 + NONCE_LEN + 15 + TAG_LEN);
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open(ROW, &blob).unwrap(), b"hunter2 hunter2");
    }

    #[test]
    fn every_seal_draws_a_fresh_nonce() {
        let s = sealer(1);
        let a = s.seal(ROW, b"same").unwrap();
        let b = s.seal(ROW, b"same").unwrap();
        assert_ne!(a[1..1 + NONCE_LEN], b[1..1 + NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn another_key_does_not_open() {
        let blob = sealer(1).seal(ROW, b"x").unwrap();
        let message = key_error(sealer(2).open(ROW, &blob));
        assert!(
            message.contains("resource `db` in deployment `prod`"),
            "{message}"
        );
    }

    #[test]
    fn a_blob_is_bound_to_its_row() {
        let s = sealer(1);
        let blob = s.seal(ROW, b"x").unwrap();
        for other in [
            Row::Resource {
                deployment: "prod",
                address: "web",
            },
            Row::Resource {
                deployment: "staging",
                address: "db",
            },
            // The same bytes split differently must not collide.
            Row::Resource {
                deployment: "prodd",
                address: "b",
            },
            Row::Generated {
                deployment: "prod",
                name: "db",
            },
            Row::Outputs { deployment: "prod" },
            Row::KeyCheck,
        ] {
            key_error(s.open(other, &blob));
        }
    }

    #[test]
    fn tampering_is_detected() {
        let s = sealer(1);
        let blob = s.seal(ROW, b"some secret").unwrap();
        for i in 1..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            key_error(s.open(ROW, &bad));
        }
        assert!(key_error(s.open(ROW, &[])).contains("empty"));
        assert!(key_error(s.open(ROW, &blob[..20])).contains("truncated"));
        let mut future = blob.clone();
        future[0] = 9;
        assert!(key_error(s.open(ROW, &future)).contains("format 9"));
    }

    #[test]
    fn json_round_trips() {
        let s = sealer(3);
        let value = serde_json::json!({"password": "p", "nested": {"k": [1, 2]}});
        let blob = s.seal_json(ROW, &value).unwrap();
        let back: serde_json::Value = s.open_json(ROW, &blob).unwrap();
        assert_eq!(back, value);
    }
}
