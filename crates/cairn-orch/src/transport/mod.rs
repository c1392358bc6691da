//! The ways cairn reaches a host: [`local`] runs scripts with this
//! machine's `sh` (Ansible's `connection: local`, and the host tests
//! run modules against).

pub mod local;
