//! A `server`'s properties as one typed model, read once for every target
//! ([`typed::read`](super::typed::read)): its image, size, subnet,
//! firewalls, key pair, boot script, fixed address and volumes. A fault
//! (a size no target has, an address that is not one) is found when the
//! template is evaluated, at the value (file:line:col), the same way for
//! both targets, instead of by one target's API mid-apply.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;

use super::typed::{self, PropError};

/// The portable sizes; each target maps them to its own (an EC2 instance
/// type, a local server's memory limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    Nano,
    Micro,
    #[default]
    Small,
    Medium,
    Large,
    Xlarge,
}

impl Size {
    pub const ALL: [Size; 6] = [
        Size::Nano,
        Size::Micro,
        Size::Small,
        Size::Medium,
        Size::Large,
        Size::Xlarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Size::Nano => "nano",
            Size::Micro => "micro",
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
            Size::Xlarge => "xlarge",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Server {
    /// The display name; targets derive one from the deployment when unset.
    #[serde(default)]
    pub name: Option<String>,
    /// An image name (`debian-12`) or an image resource's id.
    pub image: String,
    #[serde(default)]
    pub size: Size,
    /// The subnet's id.
    pub subnet: String,
    /// Firewall ids.
    #[serde(default)]
    pub firewalls: Vec<String>,
    /// The key pair's id (its name on aws).
    #[serde(default)]
    pub key_pair: Option<String>,
    /// A shell script, or cloud-config with `write_files` and `runcmd`.
    #[serde(default)]
    pub user_data: Option<String>,
    /// A fixed private address instead of the next free one.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    /// Volume ids attached at start.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Server {
    /// Reads a `server`'s properties (as a request carries them).
    pub fn read(props: &serde_json::Value) -> Result<Server, PropError> {
        typed::read(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_server_reads_with_the_schema_defaults() {
        let s = Server::read(&json!({
            "image": "debian-12", "subnet": "subnet-1", "size": null,
            "firewalls": ["fw-1"], "key_pair": null, "address": "10.20.1.7",
            "tags": {"role": "web"},
        }))
        .unwrap();
        assert_eq!(s.size, Size::Small);
        assert_eq!(s.address, Some(Ipv4Addr::new(10, 20, 1, 7)));
        assert_eq!(s.firewalls, ["fw-1"]);
        assert_eq!((s.key_pair, s.user_data, s.volumes.len()), (None, None, 0));
        assert_eq!(s.tags["role"], "web");
    }

    #[test]
    fn a_bad_server_is_named_by_its_path() {
        let bad = |p| Server::read(&p).unwrap_err().to_string();
        assert!(
            bad(json!({"image": "i", "subnet": "s", "size": "huge"}))
                .starts_with("size: unknown variant `huge`, expected one of `nano`"),
        );
        assert_eq!(
            bad(json!({"image": "i", "subnet": "s", "address": "10.20.1.300"})),
            "address: invalid IPv4 address syntax"
        );
        assert_eq!(
            bad(json!({"image": "i", "subnet": "s", "firewalls": ["a", 7]})),
            "firewalls[1]: invalid type: integer `7`, expected a string"
        );
        assert_eq!(
            bad(json!({"subnet": "s"})),
            "properties: missing field `image`"
        );
    }

    #[test]
    fn sizes_read_as_they_print() {
        for size in Size::ALL {
            let s =
                Server::read(&json!({"image": "i", "subnet": "s", "size": size.as_str()})).unwrap();
            assert_eq!(s.size, size);
        }
    }
}
