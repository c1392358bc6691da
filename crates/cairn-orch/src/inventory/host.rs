//! A host: how to reach it, what it is in, what is known of it.

use serde::Serialize;
use serde_json::{Map, Value as J};

/// A private key's text, redacted wherever it could be shown.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub String);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A host: how to reach it, what it is in, what is known of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Host {
    /// The inventory name (`inventory_hostname`).
    pub name: String,
    /// Where to connect (`ansible_host`); the name when `None`.
    pub address: Option<String>,
    /// A deployment server's public address.
    pub public_address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_file: Option<String>,
    #[serde(rename = "become")]
    pub r#become: Option<bool>,
    /// The groups it was put in directly, in the order first seen.
    pub groups: Vec<String>,
    /// Host variables other than the connection variables.
    pub vars: Map<String, J>,
    /// Tags (a deployment's, plus `role`, `deployment`, `env`): grains for
    /// `G@`.
    pub tags: Map<String, J>,
    /// The host key a deployment recorded (OpenSSH public key line).
    pub host_key: Option<String>,
    /// The private key of a deployment server's key pair (OpenSSH PEM),
    /// held in memory only: never printed, never in Ansible's JSON.
    #[serde(skip)]
    pub private_key: Option<PrivateKey>,
    /// Where it came from (files, scripts, `deployment:NAME`).
    pub sources: Vec<String>,
}

impl Host {
    pub fn new(name: impl Into<String>) -> Host {
        Host {
            name: name.into(),
            ..Host::default()
        }
    }

    /// Folds a later definition of the same host in.
    pub(super) fn merge(&mut self, other: Host) {
        macro_rules! later {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        later!(
            address,
            public_address,
            port,
            user,
            key_file,
            r#become,
            host_key,
            private_key
        );
        for g in other.groups {
            if !self.groups.contains(&g) {
                self.groups.push(g);
            }
        }
        self.vars.extend(other.vars);
        self.tags.extend(other.tags);
        for s in other.sources {
            if !self.sources.contains(&s) {
                self.sources.push(s);
            }
        }
    }

    /// Its own variables as Ansible sees them: the connection variables
    /// that are set, then the others.
    pub fn ansible_vars(&self) -> Map<String, J> {
        let mut out = Map::new();
        let mut put = |k: &str, v: Option<J>| {
            if let Some(v) = v {
                out.insert(k.to_string(), v);
            }
        };
        put("ansible_host", self.address.clone().map(J::String));
        put("ansible_port", self.port.map(J::from));
        put("ansible_user", self.user.clone().map(J::String));
        put(
            "ansible_ssh_private_key_file",
            self.key_file.clone().map(J::String),
        );
        put("ansible_become", self.r#become.map(J::Bool));
        out.extend(self.vars.clone());
        out
    }
}
