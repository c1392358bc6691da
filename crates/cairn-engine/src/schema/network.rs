//! The typed models of a `network`, a `subnet` and an `ip_address`, read
//! once for every target ([`typed::read`](super::typed::read)). Blocks are
//! IPv4 networks, as both targets make them.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::Deserialize;

use super::typed::{self, PropError, cidr};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(deserialize_with = "cidr")]
    pub cidr: Ipv4Net,
    /// An internet gateway and a public route table (aws); NAT (local).
    #[serde(default)]
    pub internet: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Subnet {
    #[serde(default)]
    pub name: Option<String>,
    /// The network's id.
    pub network: String,
    #[serde(deserialize_with = "cidr")]
    pub cidr: Ipv4Net,
    /// The availability zone (aws); the target picks one when unset.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IpAddress {
    #[serde(default)]
    pub name: Option<String>,
    /// The server it is associated with, if any.
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Network {
    pub fn read(props: &serde_json::Value) -> Result<Network, PropError> {
        typed::read(props)
    }
}

impl Subnet {
    pub fn read(props: &serde_json::Value) -> Result<Subnet, PropError> {
        typed::read(props)
    }
}

impl IpAddress {
    pub fn read(props: &serde_json::Value) -> Result<IpAddress, PropError> {
        typed::read(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_read_as_ipv4_networks() {
        let n = Network::read(&json!({"cidr": "10.20.0.0/16", "internet": null})).unwrap();
        assert_eq!((n.cidr.prefix_len(), n.internet), (16, false));
        let s = Subnet::read(&json!({"network": "n-1", "cidr": "10.20.1.0/24", "public": true}))
            .unwrap();
        assert_eq!(
            (s.cidr.to_string().as_str(), s.public),
            ("10.20.1.0/24", true)
        );
        assert_eq!(IpAddress::read(&json!({})).unwrap().server, None);
    }

    #[test]
    fn a_bad_block_is_named_by_its_path() {
        let bad = Network::read(&json!({"cidr": "fd00::/8"})).unwrap_err();
        assert_eq!(bad.path_text(), "cidr");
        let bad = Subnet::read(&json!({"cidr": "10.20.1.0/24"})).unwrap_err();
        assert_eq!(bad.to_string(), "properties: missing field `network`");
    }
}
