//! Secret values in the cloud's own record (`cloud.db`, see `record`): every property
//! and attribute its type's schema marks sensitive (a secret's value, a
//! database's owner password, a key pair's private key) is taken out of
//! the resource and kept sealed beside it, XChaCha20-Poly1305 as the state
//! store seals its secrets, with the key in `cloud.key` (0600).
//!
//! Sealing happens only on the way to disk: in memory the cloud holds the
//! values in clear, since it hands them to PostgreSQL and to `read`. The
//! associated data names the resource, so a blob copied onto another
//! resource fails to open instead of giving it someone else's password.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use cairn_engine::provider::Json;
use cairn_engine::schema::portable;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::json;

use super::model::{CloudState, LocalResource};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Version of the blob layout and of the associated data.
const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the local cloud's key {path}: {why}")]
    Key { path: PathBuf, why: String },
    #[error(
        "the sealed values of {id} in the cloud's record do not open with {key}: \
         it was made with another key, or altered"
    )]
    Open { id: String, key: PathBuf },
    #[error("cannot seal the values of {id}: {why}")]
    Seal { id: String, why: String },
}

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    path: PathBuf,
}

impl Sealer {
    /// Reads the key file, or creates it (32 random bytes as hex, 0600)
    /// when `may_create`: only a cloud with nothing sealed yet may get a new
    /// key, since a new key cannot open what an old one sealed.
    pub fn load(path: &Path, may_create: bool) -> Result<Sealer, SealError> {
        let fail = |why: String| SealError::Key {
            path: path.to_path_buf(),
            why,
        };
        let key = match std::fs::read_to_string(path) {
            Ok(text) => {
                parse_hex(text.trim()).ok_or_else(|| fail("is not 64 hex digits".into()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_create => {
                let mut key = [0u8; KEY_LEN];
                getrandom::fill(&mut key).map_err(|e| fail(format!("no randomness: {e}")))?;
                let hex = hex::encode(key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| fail(format!("cannot create it: {e}")))?;
                f.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| fail(format!("cannot write it: {e}")))?;
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(
                    "is missing, and the cloud's record holds values sealed with it: restore it"
                        .into(),
                ));
            }
            Err(e) => return Err(fail(format!("cannot read it: {e}"))),
        };
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new(&Key::from(key)),
            path: path.to_path_buf(),
        })
    }

    /// The state as it goes to disk: sensitive fields out of every resource,
    /// sealed by resource id (the single document earlier cairns wrote;
    /// tests of the migration make one).
    #[cfg(test)]
    pub fn seal(&self, state: &CloudState) -> Result<CloudState, SealError> {
        let mut out = state.clone();
        out.sealed.clear();
        for r in out.resources.values_mut() {
            let (bare, blob) = self.seal_resource(r)?;
            *r = bare;
            if let Some(blob) = blob {
                out.sealed.insert(r.id.clone(), blob);
            }
        }
        Ok(out)
    }

    /// Puts the sealed values back into their resources.
    pub fn unseal(&self, state: &mut CloudState) -> Result<(), SealError> {
        for (id, blob) in std::mem::take(&mut state.sealed) {
            // A blob of a resource that is gone is nothing to restore.
            if let Some(r) = state.resources.get_mut(&id) {
                self.unseal_resource(r, &blob)?;
            }
        }
        Ok(())
    }

    /// One resource as it goes to disk: without its sensitive values, and
    /// those values sealed for it (`None` when it has none).
    pub fn seal_resource(
        &self,
        r: &LocalResource,
    ) -> Result<(LocalResource, Option<String>), SealError> {
        let mut bare = r.clone();
        let taken = take_sensitive(&mut bare);
        if taken == json!({}) {
            return Ok((bare, None));
        }
        let blob = self.seal_one(&bare, &taken)?;
        Ok((bare, Some(blob)))
    }

    /// Puts a resource's sealed values back in place.
    pub fn unseal_resource(&self, r: &mut LocalResource, blob: &str) -> Result<(), SealError> {
        let open = || SealError::Open {
            id: r.id.clone(),
            key: self.path.clone(),
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| open())?;
        if bytes.len() < 1 + NONCE_LEN || bytes[0] != FORMAT {
            return Err(open());
        }
        let nonce = XNonce::try_from(&bytes[1..1 + NONCE_LEN]).map_err(|_| open())?;
        let aad = associated_data(r);
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &bytes[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| open())?;
        let values: Json = serde_json::from_slice(&plain).map_err(|_| open())?;
        for (section, target) in [
            ("properties", &mut r.properties),
            ("attributes", &mut r.attributes),
        ] {
            if let (Some(from), Some(into)) = (
                values.get(section).and_then(Json::as_object),
                target.as_object_mut(),
            ) {
                for (k, v) in from {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(())
    }

    fn seal_one(&self, r: &LocalResource, values: &Json) -> Result<String, SealError> {
        let fail = |why: String| SealError::Seal {
            id: r.id.clone(),
            why,
        };
        let nonce = XNonce::try_generate().map_err(|e| fail(format!("no random nonce: {e}")))?;
        let plain = serde_json::to_vec(values).map_err(|e| fail(e.to_string()))?;
        let aad = associated_data(r);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| fail("encryption failed".into()))?;
        let mut blob = vec![FORMAT];
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(blob))
    }
}

fn associated_data(r: &LocalResource) -> Vec<u8> {
    let mut aad = vec![FORMAT];
    aad.extend_from_slice(b"cairn-local:");
    aad.extend_from_slice(r.kind.as_bytes());
    aad.push(0);
    aad.extend_from_slice(r.id.as_bytes());
    aad
}

/// Removes the fields the type's schema marks sensitive, returning them as
/// `{"properties": {..}, "attributes": {..}}` (empty object when none).
fn take_sensitive(r: &mut LocalResource) -> Json {
    let Some(schema) = portable(&r.kind) else {
        return json!({});
    };
    let mut taken = serde_json::Map::new();
    // The schema's secrets, and what this template made secret.
    let mut props: Vec<String> = schema
        .properties
        .iter()
        .filter(|p| p.sensitive)
        .map(|p| p.name.to_string())
        .collect();
    props.extend(
        r.sensitive
            .iter()
            .filter(|n| !props.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let attrs = schema
        .attributes
        .iter()
        .filter(|a| a.sensitive)
        .map(|a| a.name.to_string())
        .collect::<Vec<_>>();
    for (section, names, from) in [
        ("properties", props, &mut r.properties),
        ("attributes", attrs, &mut r.attributes),
    ] {
        let Some(obj) = from.as_object_mut() else {
            continue;
        };
        let mut out = serde_json::Map::new();
        for name in names {
            if let Some(v) = obj.remove(&name).filter(|v| !v.is_null()) {
                out.insert(name, v);
            }
        }
        if !out.is_empty() {
            taken.insert(section.into(), Json::Object(out));
        }
    }
    Json::Object(taken)
}

fn parse_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn resource(id: &str, kind: &str, properties: Json, attributes: Json) -> LocalResource {
        LocalResource {
            id: id.into(),
            kind: kind.into(),
            deployment: "d".into(),
            address: id.into(),
            token: id.into(),
            properties,
            attributes,
            tags: BTreeMap::new(),
            ip: None,
            sensitive: Vec::new(),
        }
    }

    fn state() -> CloudState {
        let mut st = CloudState::default();
        for r in [
            resource(
                "secret-1",
                "secret",
                json!({"value": "hunter2-value", "name": "s"}),
                json!({"id": "secret-1"}),
            ),
            resource(
                "key-pair-2",
                "key_pair",
                json!({"name": "k"}),
                json!({"public_key": "ssh-ed25519 AAAA", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}),
            ),
            resource(
                "network-3",
                "network",
                json!({"cidr": "10.0.0.0/16"}),
                json!({}),
            ),
        ] {
            st.resources.insert(r.id.clone(), r);
        }
        st
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cairn-seal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sensitive_values_leave_in_clear_and_come_back() {
        let d = dir("round");
        let sealer = Sealer::load(&d.join("cloud.key"), true).unwrap();
        let st = state();
        let sealed = sealer.seal(&st).unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(
            text.contains("ssh-ed25519 AAAA"),
            "public values stay readable"
        );
        assert_eq!(sealed.sealed.len(), 2);

        let mut back: CloudState = serde_json::from_str(&text).unwrap();
        let again = Sealer::load(&d.join("cloud.key"), false).unwrap();
        again.unseal(&mut back).unwrap();
        assert_eq!(back.resources, st.resources);
        assert!(back.sealed.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn properties_the_template_made_secret_are_sealed_too() {
        let d = dir("derived");
        let sealer = Sealer::load(&d.join("cloud.key"), true).unwrap();
        let mut st = CloudState::default();
        let mut server = resource(
            "server-4",
            "server",
            json!({"image": "debian-12", "user_data": "#!/bin/sh\nexport PGPASSWORD=derived-s3cret\n"}),
            json!({"id": "server-4"}),
        );
        server.sensitive = vec!["user_data".into()];
        st.resources.insert(server.id.clone(), server);
        let text = serde_json::to_string(&sealer.seal(&st).unwrap()).unwrap();
        assert!(!text.contains("derived-s3cret"), "{text}");
        assert!(text.contains("debian-12"), "the rest stays readable");
        let mut back: CloudState = serde_json::from_str(&text).unwrap();
        sealer.unseal(&mut back).unwrap();
        assert_eq!(back.resources, st.resources);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn another_key_a_moved_blob_or_a_missing_key_are_refused() {
        let d = dir("refuse");
        let sealer = Sealer::load(&d.join("cloud.key"), true).unwrap();
        let sealed = sealer.seal(&state()).unwrap();

        let other = Sealer::load(&d.join("other.key"), true).unwrap();
        let err = other.unseal(&mut sealed.clone()).unwrap_err();
        assert!(err.to_string().contains("do not open with"), "{err}");

        // The secret's blob moved onto the key pair: refused, not swapped.
        let mut moved = sealed.clone();
        let blob = moved.sealed["secret-1"].clone();
        moved.sealed.insert("key-pair-2".into(), blob);
        assert!(sealer.unseal(&mut moved).is_err());

        let missing = Sealer::load(&d.join("gone.key"), false).err().unwrap();
        assert!(missing.to_string().contains("restore it"), "{missing}");
        std::fs::write(d.join("bad.key"), "xyz").unwrap();
        assert!(Sealer::load(&d.join("bad.key"), false).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
