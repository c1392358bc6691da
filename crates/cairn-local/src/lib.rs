//! The local target: an embedded cloud on this machine. Servers are
//! supervised processes on their own loopback addresses, the load balancer
//! is a real HTTP/TCP proxy, DNS is a real authoritative server, databases
//! are real PostgreSQL clusters.
//!
//! Never: listens on anything but loopback.

pub mod cloud;
pub mod daemon;
pub mod dns;
pub mod echo;
pub mod host;
pub mod init;
pub mod lb;
pub mod postgres;
pub mod random;
pub mod supervisor;
