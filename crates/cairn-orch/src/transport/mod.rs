//! The ways cairn reaches a host: [`local`] runs scripts with this
//! machine's `sh` (Ansible's `connection: local`, and the host tests
//! run modules against); [`ssh`] over SSH, in process, one connection per
//! host with a channel per script, host keys checked against
//! [`known_hosts`] files and a deployment's record. Both keep a [`shell`]
//! open on request, for a host's states to run their scripts in turn.

pub mod kept;
pub mod known_hosts;
pub mod local;
pub mod shell;
pub mod ssh;

pub use known_hosts::KnownHosts;
pub use shell::Shell;
pub use ssh::{
    DialFn, Dialer, HostKeyPolicy, KeyFiles, KeyPassphrase, SshAuth, SshHost, SshOptions, SshPool,
    SshStream, SshTarget, TcpDialer,
};
