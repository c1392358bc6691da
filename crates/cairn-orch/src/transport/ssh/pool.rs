//! One [`SshHost`] per inventory name, shared by a run.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};

use super::dial::Dialer;
use super::host::SshHost;
use super::target::{SshOptions, SshTarget};

/// Hands out one [`SshHost`] per inventory name, so that every part of a
/// run shares a host's one connection.
pub struct SshPool {
    options: SshOptions,
    dialer: Arc<dyn Dialer>,
    hosts: StdMutex<HashMap<String, Arc<SshHost>>>,
}

impl SshPool {
    pub fn new(options: SshOptions, dialer: Arc<dyn Dialer>) -> SshPool {
        SshPool {
            options,
            dialer,
            hosts: StdMutex::new(HashMap::new()),
        }
    }

    /// The host named `target.name`: the one handed out before if any
    /// (its target as given then), else a new one for `target`.
    pub fn host(&self, target: SshTarget) -> Arc<SshHost> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(target.name.clone())
            .or_insert_with(|| {
                Arc::new(SshHost::new(
                    target,
                    self.options.clone(),
                    self.dialer.clone(),
                ))
            })
            .clone()
    }

    /// Ends every connection.
    pub async fn disconnect_all(&self) {
        let hosts: Vec<Arc<SshHost>> = {
            let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts.values().cloned().collect()
        };
        for h in hosts {
            h.disconnect().await;
        }
    }
}

impl fmt::Debug for SshPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshPool")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
