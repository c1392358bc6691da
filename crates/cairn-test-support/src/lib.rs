//! What cairn's test suites share, in one place instead of files included
//! by path: a moto server per test ([`moto::Moto`]), throwaway PostgreSQL
//! clusters ([`pg_cluster`]), real OpenSSH test hosts through
//! `scripts/test-hosts` ([`test_hosts::TestHosts`]), and bounded polls
//! ([`poll`]) instead of fixed sleeps.
//!
//! Standard library only: the suites add their own crate's clients on top
//! (an `AwsProvider` on the moto server, an `Inventory` of the test hosts),
//! so this crate never links a second copy of a cairn crate into a test.
//!
//! Files import one way: `scripts/module-graph crates/cairn-test-support/src`
//! checks it.
//!
//! ```text
//! moto → checkout, port · pg_cluster → port · test_hosts → checkout · poll
//! ```

mod checkout;
pub mod moto;
pub mod pg_cluster;
pub mod poll;
mod port;
pub mod test_hosts;

pub use checkout::repo_root;
pub use port::free_port;
