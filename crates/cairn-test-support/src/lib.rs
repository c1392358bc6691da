//! What cairn's test suites share, in one place instead of files included
//! by path: a moto server per test ([`moto::Moto`]), throwaway PostgreSQL
//! clusters ([`pg_cluster`]), real OpenSSH test hosts through
//! `scripts/test-hosts` ([`test_hosts::TestHosts`]), and bounded polls
//! ([`poll`]) instead of fixed sleeps.
//!
//! Standard library only: the suites add their own crate's clients on top
//! (an `AwsProvider` on the moto server, an `Inventory` of the test hosts),
//! so this crate never links a second copy of a cairn crate into a test.

pub mod moto;
pub mod pg_cluster;
pub mod poll;
pub mod test_hosts;

use std::path::PathBuf;

/// The checkout this crate is built from (scripts, examples, peers).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A free TCP port on 127.0.0.1 (the OS picks; the listener is closed
/// again, so a server started next can bind it).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    l.local_addr().expect("a bound address").port()
}
