//! `runc` isolation: the cloud's servers as small hosts, made from the
//! building blocks in `crate::host`.
//!
//! A cloud chooses its isolation once, when it is made, and keeps it in its
//! record: `process` (a server is a supervised process on a loopback
//! address; the default) or `runc` (a server is a container with its own
//! namespaces, on a bridge per network in the cloud's own network
//! namespace, behind nftables rules). The two cannot mix in one cloud: the
//! addresses, firewalls and teardown differ.
//!
//! In `runc` mode a network reserves its CIDR on the machine (an
//! `unreachable` route that stays until the network is destroyed, also
//! while the daemon is stopped), a server gets an address of its subnet,
//! and every change that affects the firewalls replaces the cloud
//! namespace's nftables table. Load balancers stay in the daemon, each on
//! an address of its own on the machine's end of the cloud's link: the
//! machine has it, servers reach it through their gateway, and it is the
//! source of the balancer's connections to backends (through the machine's
//! route into the cloud namespace), so that the firewalls tell it apart
//! from the machine itself. Public addresses come from a block of
//! the cloud's own in 198.18.0.0/15, claimed with the first and released
//! with the last, routed into the cloud namespace like the networks and
//! translated there by the same table.
//!
//! Files, lowest first: each uses only names and methods of those before
//! it. `mode`, `rules` (the table as data) and `listeners` stand alone;
//! `hosts` holds the struct [`Hosts`], and the others are `impl Hosts`
//! blocks, one part of it each: `names` (DNS on the link), `master`,
//! `images` · `network` (the namespace, its link, the bridges) · `public`,
//! `databases`, `servers`, `balancers`, `table` · `lifecycle` (a start's
//! restore, the namespace going down when idle, the daemon's stop).

mod balancers;
mod databases;
mod hosts;
mod images;
mod lifecycle;
mod listeners;
mod master;
mod mode;
mod names;
mod network;
mod public;
mod rules;
mod servers;
mod table;

pub use hosts::{Hosts, cloud_id, container_id};
pub use mode::{Isolation, IsolationError, choose};
