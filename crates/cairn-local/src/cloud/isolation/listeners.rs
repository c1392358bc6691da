//! What the daemon runs on a `runc` cloud's link for its servers: the DNS
//! listener (`names`), the master's (`master`) and each database's
//! (`databases`), each a stop and a task. Here, below `Hosts`, which holds
//! them, rather than beside the code that serves them, which is `impl Hosts`.

use tokio_util::sync::CancellationToken;

/// The DNS listener on the link: its stop, and its task.
pub(super) type LinkDns = (
    CancellationToken,
    tokio::task::JoinHandle<Result<(), crate::dns::DnsError>>,
);

/// The master's listener on the link: its stop and its task.
pub(super) type LinkMaster = (CancellationToken, tokio::task::JoinHandle<()>);

/// A database's listener in the cloud namespace.
pub(super) struct Listener {
    pub(super) stop: CancellationToken,
    pub(super) task: tokio::task::JoinHandle<()>,
}
