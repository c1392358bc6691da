//! Which clients a load balancer lets in: its firewalls' ingress rules,
//! reduced by the cloud to the source networks allowed on its listener.
//!
//! A refused client gets a reset at once rather than a silent drop: a user
//! space listener cannot drop a SYN, and a reset tells the client straight
//! away instead of after its connect timeout. Like a cloud's stateful
//! firewall, a change applies to new connections; open ones run on.

use std::net::IpAddr;

use ipnet::IpNet;

/// The sources a load balancer accepts connections from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Access {
    /// No firewall is attached: everyone.
    #[default]
    Open,
    /// Firewalls are attached: only these sources (none when no rule matches
    /// the listener).
    Only(Vec<IpNet>),
}

impl Access {
    pub fn allows(&self, source: IpAddr) -> bool {
        match self {
            Access::Open => true,
            Access::Only(nets) => nets.iter().any(|n| n.contains(&source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_allows_all_and_only_allows_its_networks() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.61.0.9".parse().unwrap();
        assert!(Access::Open.allows(a));
        let only = Access::Only(vec!["127.61.0.0/24".parse().unwrap()]);
        assert!(only.allows(b));
        assert!(!only.allows(a));
        assert!(!Access::Only(vec![]).allows(a));
        let anywhere = Access::Only(vec!["0.0.0.0/0".parse().unwrap()]);
        assert!(anywhere.allows(a) && anywhere.allows(b));
    }
}
