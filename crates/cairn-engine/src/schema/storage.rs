//! The typed models of what holds data outside a server: a `volume`, its
//! `snapshot`, a server's `image`, and a `bucket`. Read once for every
//! target ([`typed::read`](super::typed::read)).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::typed::{self, PropError, gigabytes};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Volume {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(deserialize_with = "gigabytes")]
    pub size_gb: u32,
    /// The snapshot it starts from.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The availability zone (aws); the target picks one when unset.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Snapshot {
    #[serde(default)]
    pub name: Option<String>,
    /// The volume copied.
    pub volume: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Image {
    #[serde(default)]
    pub name: Option<String>,
    /// The server captured.
    pub server: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Bucket {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub versioning: bool,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Volume {
    pub fn read(props: &serde_json::Value) -> Result<Volume, PropError> {
        typed::read(props)
    }
}

impl Snapshot {
    pub fn read(props: &serde_json::Value) -> Result<Snapshot, PropError> {
        typed::read(props)
    }
}

impl Image {
    pub fn read(props: &serde_json::Value) -> Result<Image, PropError> {
        typed::read(props)
    }
}

impl Bucket {
    pub fn read(props: &serde_json::Value) -> Result<Bucket, PropError> {
        typed::read(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_reads_with_the_schema_defaults() {
        let v = Volume::read(&json!({"size_gb": 5, "snapshot": null})).unwrap();
        assert_eq!((v.size_gb, v.snapshot), (5, None));
        let b = Bucket::read(&json!({"versioning": true})).unwrap();
        assert!(b.versioning && !b.public);
        assert_eq!(
            Snapshot::read(&json!({"volume": "v-1"})).unwrap().volume,
            "v-1"
        );
        assert_eq!(
            Image::read(&json!({"server": "s-1"})).unwrap().server,
            "s-1"
        );
    }

    #[test]
    fn a_volume_of_no_size_is_refused_at_its_size() {
        let bad = |p| Volume::read(&p).unwrap_err().to_string();
        assert_eq!(
            bad(json!({"size_gb": 0})),
            "size_gb: 0 is not a size in gigabytes: 1 or more"
        );
        assert_eq!(bad(json!({})), "properties: missing field `size_gb`");
    }
}
