//! cairn-test-support's sshd test hosts, with this crate's view of them:
//! their inventory and known hosts loaded, and an SSH target per host.

use std::ops::Deref;
use std::sync::Arc;

use cairn_orch::Inventory;
use cairn_orch::transport::{KnownHosts, SshTarget};
pub use cairn_test_support::test_hosts::{connections_to, running};

pub struct TestHosts {
    hosts: cairn_test_support::test_hosts::TestHosts,
    inventory: Inventory,
    known_hosts: Arc<KnownHosts>,
}

impl Deref for TestHosts {
    type Target = cairn_test_support::test_hosts::TestHosts;
    fn deref(&self) -> &Self::Target {
        &self.hosts
    }
}

impl TestHosts {
    /// `n` servers from `base` (a range no other test uses), in a scratch
    /// directory named `name`.
    pub fn up(name: &str, n: usize, base: &str) -> TestHosts {
        TestHosts::up_on_port(name, n, base, 22)
    }

    pub fn up_on_port(name: &str, n: usize, base: &str, port: u16) -> TestHosts {
        let hosts = cairn_test_support::test_hosts::TestHosts::up_on_port(name, n, base, port);
        let inventory = Inventory::load(&hosts.inventory_file()).expect("inventory.ini");
        let known_hosts = Arc::new(KnownHosts::load(&[hosts.known_hosts_file()]).unwrap());
        TestHosts {
            hosts,
            inventory,
            known_hosts,
        }
    }

    /// `hI` as its inventory line says, checked against the written
    /// known_hosts.
    pub fn target(&self, name: &str) -> SshTarget {
        let host = self.inventory.host(name).expect("a test host");
        SshTarget::from_host(host, "root", None).known_hosts(self.known_hosts.clone())
    }

    pub fn address(&self, name: &str) -> String {
        self.target(name).address
    }
}
