//! The typed models of a `secret` and a `key_pair`, read once for every
//! target ([`typed::read`](super::typed::read)).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::typed::{self, PropError};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Secret {
    #[serde(default)]
    pub name: Option<String>,
    pub value: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyPair {
    pub name: String,
    /// An OpenSSH public key to import; a new ed25519 pair when unset.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Secret {
    pub fn read(props: &serde_json::Value) -> Result<Secret, PropError> {
        typed::read(props)
    }
}

impl KeyPair {
    pub fn read(props: &serde_json::Value) -> Result<KeyPair, PropError> {
        typed::read(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_read_and_name_what_is_missing() {
        let s = Secret::read(&json!({"value": "v", "description": null})).unwrap();
        assert_eq!((s.value.as_str(), s.description), ("v", None));
        let k = KeyPair::read(&json!({"name": "admin"})).unwrap();
        assert_eq!((k.name.as_str(), k.public_key), ("admin", None));
        assert_eq!(
            KeyPair::read(&json!({"public_key": 5}))
                .unwrap_err()
                .to_string(),
            "public_key: invalid type: integer `5`, expected a string"
        );
    }
}
