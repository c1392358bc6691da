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

/// Raises this process's open-file limit to what the system allows (the
/// hard limit): every host reached holds a socket for the whole run (and
/// the keeper one per kept connection), and a desktop session's default
/// soft limit (1,024) is below a fleet's size. Returns the limit now in
/// force; on failure the old one stands (the error is logged).
pub fn allow_many_connections() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::debug!(soft, hard, error = %e, "open-file limit not raised");
            soft
        }
    }
}
