//! The agents of a local cloud's servers (issue 12): every server runs
//! `cairn agent`, enrolled by the cloud, so `cairn run --via agent` needs
//! no SSH and no `cairn keys accept`.
//!
//! - **The master** is cairn-orch's, served by the daemon in its own
//!   process (a task, not a child: it lives and dies with the daemon, as
//!   the cloud's DNS does), with its directory `ROOT/master` (key pair,
//!   `keys.json`, admin socket, events). It listens on 127.P.0.1:4506,
//!   an address of the cloud's own block that is never given to a
//!   resource (the block's addresses are handed out from 127.P.0.2 up).
//!   Servers of a `runc` cloud reach it on the machine's end of the
//!   cloud's link (`isolation::master`), as they reach the cloud's DNS.
//! - **Enrolment by the cloud.** The cloud knows which servers it made, so
//!   it makes each server's agent key itself and records it accepted
//!   under the server's id before the agent first starts; the agent is
//!   given the master's fingerprint. Neither side trusts a first use, no
//!   shared token exists that one server could use to enrol as another,
//!   and a destroyed server's key is deleted through the master, which
//!   closes its connection at once.
//! - **The agent's id is the server's resource id** (`server-00003`):
//!   unique in the cloud, where names are not (two deployments may both
//!   have a `web[0]`, or the same `name`). The CLI maps a deployment's
//!   host to it through the host's `cairn_id`.
//! - **Where the agent runs**: in a `runc` server, as a service of its
//!   init (the cairn binary is mounted in every server), its key in the
//!   server's own layer (`/var/lib/cairn/agent`); with `process`
//!   isolation, as a supervised process beside the server, with its key
//!   and log in `ROOT/agents/ID`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_orch::agent::keys::{Admission, KeyStore};
use cairn_orch::agent::tls::{Identity, MASTER_NAME};
use cairn_orch::agent::{self, AdminReply, AdminRequest, KeyAction, MasterConfig};
use tokio_util::sync::CancellationToken;

use super::dirs::LocalDirs;
use crate::supervisor::{ServerSpec, Supervisor};

/// The master's port, on its loopback address and on a `runc` cloud's
/// link (Salt's master port).
pub const MASTER_PORT: u16 = 4506;

/// Where a `runc` server's agent keeps its key, inside the server.
pub const AGENT_DIR: &str = "/var/lib/cairn/agent";

/// The directory of the master of the cloud in `dirs` (what
/// `cairn keys --local` and `cairn run --via agent` on a local deployment
/// talk to).
pub fn master_dir(dirs: &LocalDirs) -> PathBuf {
    dirs.root.join("master")
}

/// The master's address on loopback for the cloud whose block is
/// 127.`pool`.0.0/16.
pub fn master_address(pool: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, pool, 0, 1), MASTER_PORT))
}

/// The cloud's master and its servers' agents. Cheap to clone (the cloud
/// and its `runc` hosts share one).
#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// `process` isolation: each agent's directory is `agents/ID`.
    agents_dir: PathBuf,
    listen: SocketAddr,
    fingerprint: String,
    /// The key list, kept open (it reads the file again when the master
    /// changed it).
    keys: Mutex<KeyStore>,
    /// The master's task while it serves.
    serving: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    /// `process` isolation: the agents' processes.
    processes: Supervisor,
}

impl Agents {
    /// The master of the cloud in `dirs` (its key pair made on first use);
    /// nothing is served until [`Agents::serve`].
    pub fn open(dirs: &LocalDirs, pool: u8) -> Result<Agents, String> {
        let dir = master_dir(dirs);
        let identity = Identity::load_or_create(&dir, "master", MASTER_NAME)
            .map_err(|e| format!("the cloud's master: {e}"))?;
        let keys = KeyStore::open(&dir).map_err(|e| format!("the cloud's master: {e}"))?;
        Ok(Agents {
            inner: Arc::new(Inner {
                agents_dir: dirs.root.join("agents"),
                dir,
                listen: master_address(pool),
                fingerprint: identity.fingerprint,
                keys: Mutex::new(keys),
                serving: Mutex::new(None),
                processes: Supervisor::new(),
            }),
        })
    }

    /// The master's key fingerprint, which every agent pins.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Where the master listens for agents (loopback).
    pub fn listen(&self) -> SocketAddr {
        self.inner.listen
    }

    /// Whether the master is served (only then are agents enrolled and
    /// started: a cloud driven in-process by tests has none).
    pub fn serving(&self) -> bool {
        self.inner
            .serving
            .lock()
            .expect("agents lock")
            .as_ref()
            .is_some_and(|(_, task)| !task.is_finished())
    }

    /// Serves the master until [`Agents::shutdown`]. Fails when it cannot
    /// listen (its admin socket or its address taken).
    pub async fn serve(&self) -> Result<(), String> {
        let cfg = MasterConfig::new(self.inner.listen.to_string(), &self.inner.dir);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let r = agent::master::serve(cfg, stopped.cancelled_owned()).await;
            if let Err(e) = &r {
                tracing::error!("the cloud's master stopped: {e}");
            }
            let _ = tx.send(r);
        });
        // It binds its admin socket, then its address: once both are
        // there, it serves; an error before that is the start's. Looked
        // up in the kernel's socket table, which a probe connection (a
        // failed handshake in the master's log) or bind (a race with the
        // master's own) would not leave alone.
        let dir = self.inner.dir.clone();
        let listen = self.inner.listen;
        let up = async {
            for _ in 0..250 {
                if agent::master::admin_socket(&dir).exists() && listening(listen) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        };
        tokio::select! {
            r = rx => {
                return Err(format!(
                    "the cloud's master did not start: {}",
                    r.map_or_else(|_| "it stopped".to_string(), |r| r.err().unwrap_or_default())
                ));
            }
            up = up => if !up {
                stop.cancel();
                return Err(format!("the cloud's master did not listen on {listen} within 5 s"));
            }
        }
        tracing::info!(listen = %listen, fingerprint = %self.inner.fingerprint, "the cloud's master serves");
        *self.inner.serving.lock().expect("agents lock") = Some((stop, task));
        Ok(())
    }

    /// Makes server `id`'s agent key in `key_dir` (kept if it is there)
    /// and records it accepted under `id`; a key another agent held under
    /// that id (a server made again after a crash) is replaced. Returns
    /// the key's fingerprint.
    pub fn enrol(&self, id: &str, key_dir: &Path) -> Result<String, String> {
        let identity = Identity::load_or_create(key_dir, "agent", id)
            .map_err(|e| format!("server {id}'s agent key: {e}"))?;
        let fp = identity.fingerprint;
        let mut keys = self.inner.keys.lock().expect("keys lock");
        let mut admission = keys.admit(id, &fp, true);
        if let Admission::Refused(_) = admission {
            keys.apply(id, KeyAction::Delete)
                .map_err(|e| format!("server {id}'s agent key: {e}"))?;
            admission = keys.admit(id, &fp, true);
        }
        match admission {
            Admission::Accepted => Ok(fp),
            other => Err(format!(
                "server {id}'s agent key was not accepted: {other:?}"
            )),
        }
    }

    /// Deletes server `id`'s key: through the master when it serves (so
    /// its connection is closed at once), else in its key list.
    pub async fn forget(&self, id: &str) {
        let req = AdminRequest::Key {
            action: KeyAction::Delete,
            id: id.to_string(),
        };
        if self.serving() {
            match agent::ask(&self.inner.dir, &req).await {
                Ok(AdminReply::Key { .. }) => return,
                // No key (a server made before agents, or never enrolled).
                Ok(AdminReply::Error { .. }) => return,
                Ok(other) => tracing::warn!("deleting {id}'s agent key: {other:?}"),
                Err(e) => tracing::warn!("deleting {id}'s agent key through the master: {e}"),
            }
        }
        let _ = self
            .inner
            .keys
            .lock()
            .expect("keys lock")
            .apply(id, KeyAction::Delete);
    }

    /// `process` isolation: enrols server `id` and starts its agent as a
    /// supervised process beside it (restarted if it dies). Nothing while
    /// the master is not served.
    pub fn start_process(&self, id: &str, address: Ipv4Addr) -> Result<(), String> {
        if !self.serving() {
            return Ok(());
        }
        let dir = self.inner.agents_dir.join(id);
        stop_leftover(&dir);
        self.enrol(id, &dir)?;
        let cairn = std::env::current_exe()
            .map_err(|e| format!("server {id}'s agent: no cairn binary to run: {e}"))?;
        // The small agent binary when it is beside cairn (it ships with
        // it), else `cairn agent`.
        let program = match agent::binary_beside(&cairn) {
            Some(bin) => quote(&bin.to_string_lossy()),
            None => format!("{} agent", quote(&cairn.to_string_lossy())),
        };
        let script = format!(
            // Its pid (the same after `exec`) for the next daemon, should
            // this one be killed without stopping it.
            "#!/bin/sh\necho $$ > {}\nexec {} --master {} --master-fingerprint {} --id {} \
             --dir {} --service-events {}\n",
            quote(&dir.join(PID_FILE).to_string_lossy()),
            program,
            self.inner.listen,
            self.inner.fingerprint,
            quote(id),
            quote(&dir.to_string_lossy()),
            // A file no init writes: a process server has no init.
            quote(&dir.join("service-events.jsonl").to_string_lossy()),
        );
        self.inner
            .processes
            .start(ServerSpec {
                name: id.to_string(),
                address,
                sandbox: dir,
                user_data: script,
                path: Vec::new(),
            })
            .map_err(|e| format!("server {id}'s agent: {e}"))
    }

    /// `process` isolation: stops server `id`'s agent and removes its
    /// directory (key, log).
    pub async fn remove_process(&self, id: &str) {
        let _ = self.inner.processes.stop(id, Duration::from_secs(2)).await;
        let _ = std::fs::remove_dir_all(self.inner.agents_dir.join(id));
    }

    /// The pids of the agents' processes (`process` isolation), by server
    /// id, for `cairn local status`.
    pub fn process_pids(&self) -> Vec<(String, Option<u32>)> {
        self.inner
            .processes
            .status()
            .into_iter()
            .map(|s| (s.name, s.pid))
            .collect()
    }

    /// Stops the agents' processes, then the master.
    pub async fn shutdown(&self) {
        self.inner.processes.stop_all(Duration::from_secs(2)).await;
        let serving = self.inner.serving.lock().expect("agents lock").take();
        if let Some((stop, task)) = serving {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Where a `process` agent's script writes its pid.
const PID_FILE: &str = "agent.pid";

/// Stops the agent a killed daemon left running in `dir` (its pid file,
/// and that process's command line naming `dir`, so a pid reused by
/// another program is left alone); its successor would otherwise take
/// the connection from the new agent, and the new one from it, for ever.
fn stop_leftover(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let ours = procfs::process::Process::new(pid)
        .and_then(|p| p.cmdline())
        .is_ok_and(|cmd| {
            let agent = cmd.iter().any(|a| a == "agent")
                || cmd
                    .first()
                    .is_some_and(|a| Path::new(a).file_name() == Some(agent::BINARY.as_ref()));
            agent && cmd.iter().any(|a| Path::new(a) == dir)
        });
    if ours {
        tracing::warn!(
            pid,
            "stopping the agent a previous daemon left in {}",
            dir.display()
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// Whether something listens on `addr` (TCP, IPv4).
fn listening(addr: SocketAddr) -> bool {
    procfs::net::tcp().is_ok_and(|entries| {
        entries
            .iter()
            .any(|e| e.state == procfs::net::TcpState::Listen && e.local_address == addr)
    })
}

/// A word for `sh`, quoted.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_orch::agent::KeyStatus;

    /// The cloud enrols a server's key accepted, keeps it across a second
    /// enrolment, replaces a stale key under the same id, and forgets it.
    #[tokio::test]
    async fn the_cloud_enrols_and_forgets_its_servers_keys() {
        let root = tempfile::tempdir().unwrap();
        let dirs = LocalDirs::new(root.path());
        let agents = Agents::open(&dirs, 42).unwrap();
        assert_eq!(agents.listen().to_string(), "127.42.0.1:4506");
        let key_dir = root.path().join("k1");
        let fp = agents.enrol("server-00001", &key_dir).unwrap();
        assert_eq!(agents.enrol("server-00001", &key_dir).unwrap(), fp);
        let keys = || KeyStore::open(&master_dir(&dirs)).unwrap().list();
        assert_eq!(keys().len(), 1);
        assert_eq!(keys()[0].status, KeyStatus::Accepted);
        assert_eq!(keys()[0].fingerprint, fp);
        // A new key under the same id (its layer was lost) replaces it.
        let fp2 = agents
            .enrol("server-00001", &root.path().join("k2"))
            .unwrap();
        assert_ne!(fp, fp2);
        assert_eq!(keys()[0].fingerprint, fp2);
        // The same fingerprint on reopening: the master's key is kept.
        let again = Agents::open(&dirs, 42).unwrap();
        assert_eq!(again.fingerprint(), agents.fingerprint());
        agents.forget("server-00001").await;
        assert!(keys().is_empty());
        // Not served: no agent process is started.
        agents
            .start_process("server-00002", Ipv4Addr::new(127, 42, 0, 2))
            .unwrap();
        assert!(agents.process_pids().is_empty());
    }

    /// Served, the master answers on its admin socket and deleting a key
    /// goes through it; an address already taken is a clear error.
    #[tokio::test]
    async fn the_master_serves_and_says_why_it_cannot() {
        let root = tempfile::tempdir().unwrap();
        let dirs = LocalDirs::new(root.path());
        let agents = Agents::open(&dirs, 233).unwrap();
        agents.serve().await.unwrap();
        assert!(agents.serving());
        assert!(listening(agents.listen()));
        agents
            .enrol("server-00001", &root.path().join("k"))
            .unwrap();
        let keys = agent::ask(&master_dir(&dirs), &AdminRequest::Keys).await;
        assert!(
            matches!(&keys, Ok(AdminReply::Keys { keys }) if keys.len() == 1),
            "{keys:?}"
        );
        agents.forget("server-00001").await;
        let keys = agent::ask(&master_dir(&dirs), &AdminRequest::Keys).await;
        assert!(
            matches!(&keys, Ok(AdminReply::Keys { keys }) if keys.is_empty()),
            "{keys:?}"
        );
        agents.shutdown().await;
        assert!(!agents.serving());
        assert!(!listening(agents.listen()));

        // Another cloud's master cannot take an address in use.
        let taken = std::net::TcpListener::bind(master_address(234)).unwrap();
        let other = tempfile::tempdir().unwrap();
        let blocked = Agents::open(&LocalDirs::new(other.path()), 234).unwrap();
        let err = blocked.serve().await.unwrap_err();
        assert!(
            err.contains("did not start") && err.contains("127.234.0.1:4506"),
            "{err}"
        );
        assert!(!blocked.serving());
        drop(taken);
    }

    #[test]
    fn words_are_quoted_for_sh() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
