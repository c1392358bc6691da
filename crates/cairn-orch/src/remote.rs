//! What every transport gives the layers above it: run a POSIX shell script
//! on one host, with bytes on its stdin, perhaps as another user.
//!
//! Modules, states and jobs see a host only through [`Remote`], so the same
//! code runs over SSH, through the agent, and against a local shell in tests.
//! Everything a module does on a host (read a file, stat it, write it
//! atomically, install a package) is a script, as pyinfra does: one round
//! trip per step, no helper program copied to the host first.

use async_trait::async_trait;

pub(crate) use crate::exec::run_mark;
pub use crate::exec::{Exec, Output, RUN_MARK, TransportError, quote};
use crate::transport::shell::Shell;

/// A host a script can be run on.
#[async_trait]
pub trait Remote: Send + Sync {
    /// The host's inventory name, for messages.
    fn name(&self) -> &str;

    /// Runs one script to its end. Many may run at once on one host (over
    /// SSH: one channel each on the host's one connection).
    async fn exec(&self, exec: Exec) -> Result<Output, TransportError>;

    /// A shell kept open on the host, as `become_user`, to run scripts in
    /// turn without an exec each (see [`Shell`]); `None` when this
    /// transport has none, and then every script is an exec.
    async fn shell(&self, become_user: Option<String>) -> Result<Option<Shell>, TransportError> {
        let _ = become_user;
        Ok(None)
    }
}
