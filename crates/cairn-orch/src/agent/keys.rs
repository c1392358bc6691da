//! The master's key list (salt-key): every agent id with the fingerprint of
//! the key it connected with and what the operator decided about it. Kept
//! in `DIR/keys.json` (0600, written atomically).
//!
//! Masters of one fleet on a bus share the directory, so the file is the
//! one truth: every change is read, made and written under an exclusive
//! lock on `DIR/keys.lock` (no update lost between two masters), and a
//! master looks at the file's identity (inode, size, mtime) before each
//! check and reads it again when it changed, so another master's revoke
//! holds here from the next message on.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::protocol::now_ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Seen, not decided: the agent is served nothing.
    Pending,
    Accepted,
    Rejected,
    /// Was accepted; its connection was closed and it is refused from now.
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: String,
    pub fingerprint: String,
    pub status: KeyStatus,
    /// Unix milliseconds.
    pub first_seen: u64,
    pub updated: u64,
}

/// What an operator does to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    Accept,
    Reject,
    Revoke,
    /// Forget the id (an agent rebuilt with a new key enrols again).
    Delete,
}

/// What the master does with a connecting agent's (id, fingerprint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    Pending,
    Refused(String),
}

#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    entries: BTreeMap<String, KeyEntry>,
    /// The file as last read: (inode, size, mtime in ns); `None`: absent.
    stamp: Option<(u64, u64, i128)>,
}

fn stamp(path: &Path) -> Option<(u64, u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.ino(),
        m.size(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    ))
}

impl KeyStore {
    pub fn open(dir: &Path) -> Result<KeyStore, String> {
        let path = dir.join("keys.json");
        let mut k = KeyStore {
            path,
            entries: BTreeMap::new(),
            stamp: None,
        };
        k.reload()?;
        Ok(k)
    }

    fn reload(&mut self) -> Result<(), String> {
        let path = &self.path;
        let stamp = stamp(path);
        self.entries = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        self.stamp = stamp;
        Ok(())
    }

    /// Reads the file again if another process (a second master, `cairn
    /// keys` while no master ran) changed it; on a read error the list
    /// in memory stays, with a log line.
    pub fn refresh(&mut self) {
        if stamp(&self.path) != self.stamp
            && let Err(e) = self.reload()
        {
            tracing::error!("keeping the agents' keys as they were: {e}");
        }
    }

    /// Runs a change under the directory's lock, on the list as the file
    /// has it now.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Result<T, String> {
        let lock_path = self.path.with_file_name("keys.lock");
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        self.reload()?;
        Ok(f(self))
    }

    fn save(&self) -> Result<(), String> {
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(&self.entries)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    fn save_stamped(&mut self) -> Result<(), String> {
        self.save()?;
        self.stamp = stamp(&self.path);
        Ok(())
    }

    /// The keys as the file has them now: another process (the local
    /// cloud enrolling its servers) may have changed it.
    pub fn list(&mut self) -> Vec<KeyEntry> {
        self.refresh();
        self.entries.values().cloned().collect()
    }

    /// The id whose accepted key has this fingerprint.
    /// Whether `fingerprint` is the accepted key of `id`: a lookup by id,
    /// where [`KeyStore::accepted`] looks through every key.
    pub fn is_accepted_as(&self, id: &str, fingerprint: &str) -> bool {
        self.entries
            .get(id)
            .is_some_and(|e| e.status == KeyStatus::Accepted && e.fingerprint == fingerprint)
    }

    pub fn accepted(&self, fingerprint: &str) -> Option<&str> {
        self.entries
            .values()
            .find(|e| e.status == KeyStatus::Accepted && e.fingerprint == fingerprint)
            .map(|e| e.id.as_str())
    }

    /// An agent not accepted by fingerprint says it is `id`: record it
    /// pending, or refuse it. `auto_accept`: it showed the enrolment token.
    pub fn admit(&mut self, id: &str, fingerprint: &str, auto_accept: bool) -> Admission {
        // Nothing to write for a key already decided: no lock taken.
        self.refresh();
        if let Some(e) = self.entries.get(id)
            && e.fingerprint == fingerprint
            && !(e.status == KeyStatus::Pending && auto_accept)
        {
            return self.admit_unlocked(id, fingerprint, auto_accept);
        }
        match self.locked(|k| k.admit_unlocked(id, fingerprint, auto_accept)) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{e}");
                Admission::Refused(format!("the master cannot record its key: {e}"))
            }
        }
    }

    fn admit_unlocked(&mut self, id: &str, fingerprint: &str, auto_accept: bool) -> Admission {
        let now = now_ms();
        let admission = match self.entries.get_mut(id) {
            Some(e) if e.fingerprint == fingerprint => match e.status {
                KeyStatus::Accepted => return Admission::Accepted,
                KeyStatus::Pending if auto_accept => {
                    e.status = KeyStatus::Accepted;
                    e.updated = now;
                    Admission::Accepted
                }
                KeyStatus::Pending => return Admission::Pending,
                KeyStatus::Rejected => return Admission::Refused("its key was rejected".into()),
                KeyStatus::Revoked => return Admission::Refused("its key was revoked".into()),
            },
            // A pending claim is replaced by the newest: the operator
            // accepts the fingerprint `cairn keys list` shows.
            Some(e) if e.status == KeyStatus::Pending => {
                e.fingerprint = fingerprint.to_string();
                e.updated = now;
                if auto_accept {
                    e.status = KeyStatus::Accepted;
                    Admission::Accepted
                } else {
                    Admission::Pending
                }
            }
            Some(e) => {
                return Admission::Refused(format!(
                    "another key ({}, {:?}) holds the id `{id}`; `cairn keys delete {id}` to enrol it again",
                    e.fingerprint, e.status
                ));
            }
            None => {
                let status = if auto_accept {
                    KeyStatus::Accepted
                } else {
                    KeyStatus::Pending
                };
                self.entries.insert(
                    id.to_string(),
                    KeyEntry {
                        id: id.to_string(),
                        fingerprint: fingerprint.to_string(),
                        status,
                        first_seen: now,
                        updated: now,
                    },
                );
                if auto_accept {
                    Admission::Accepted
                } else {
                    Admission::Pending
                }
            }
        };
        if let Err(e) = self.save_stamped() {
            tracing::error!("{e}");
        }
        admission
    }

    /// Applies an operator's decision; the entry as it now is.
    pub fn apply(&mut self, id: &str, action: KeyAction) -> Result<Option<KeyEntry>, String> {
        self.locked(|k| k.apply_unlocked(id, action))?
    }

    fn apply_unlocked(&mut self, id: &str, action: KeyAction) -> Result<Option<KeyEntry>, String> {
        let Some(e) = self.entries.get_mut(id) else {
            return Err(format!("no key for `{id}` (see `cairn keys list`)"));
        };
        use KeyStatus::*;
        let to = match (action, e.status) {
            (KeyAction::Delete, _) => None,
            (KeyAction::Accept, Pending | Rejected | Accepted) => Some(Accepted),
            (KeyAction::Reject, Pending | Rejected) => Some(Rejected),
            (KeyAction::Revoke, Accepted | Revoked) => Some(Revoked),
            (action, status) => {
                return Err(format!(
                    "`{id}` is {status:?}; it cannot be {}",
                    match action {
                        KeyAction::Accept => "accepted (delete it, and let the agent enrol again)",
                        KeyAction::Reject => "rejected (revoke an accepted key)",
                        _ => "revoked (only an accepted key is)",
                    }
                ));
            }
        };
        let out = match to {
            None => {
                self.entries.remove(id);
                None
            }
            Some(s) => {
                e.status = s;
                e.updated = now_ms();
                Some(e.clone())
            }
        };
        self.save_stamped()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_key_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = KeyStore::open(dir.path()).unwrap();
        assert_eq!(k.admit("a1", "f1", false), Admission::Pending);
        assert_eq!(k.accepted("f1"), None);
        // A newer claim replaces a pending one.
        assert_eq!(k.admit("a1", "f2", false), Admission::Pending);
        k.apply("a1", KeyAction::Accept).unwrap();
        assert_eq!(k.accepted("f2"), Some("a1"));
        assert_eq!(k.accepted("f1"), None);
        // Once accepted, the id is pinned to that key.
        assert!(matches!(k.admit("a1", "f3", false), Admission::Refused(_)));
        // Kept on disk.
        let k2 = KeyStore::open(dir.path()).unwrap();
        assert_eq!(k2.accepted("f2"), Some("a1"));
        k.apply("a1", KeyAction::Revoke).unwrap();
        assert_eq!(k.accepted("f2"), None);
        assert!(matches!(k.admit("a1", "f2", false), Admission::Refused(_)));
        assert!(k.apply("a1", KeyAction::Accept).is_err());
        k.apply("a1", KeyAction::Delete).unwrap();
        assert_eq!(k.admit("a1", "f2", true), Admission::Accepted);
        assert!(k.apply("nobody", KeyAction::Accept).is_err());
    }

    /// Two masters on one directory: each sees the other's decisions, the
    /// one with its next check, and no change of one is lost to the other.
    #[test]
    fn two_stores_on_one_directory_share_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let mut m1 = KeyStore::open(dir.path()).unwrap();
        let mut m2 = KeyStore::open(dir.path()).unwrap();
        assert_eq!(m1.admit("a1", "f1", false), Admission::Pending);
        assert_eq!(m2.admit("a2", "f2", false), Admission::Pending);
        // m2 wrote over a file m1 had read: a1 is still there.
        m2.refresh();
        assert_eq!(m2.list().len(), 2);
        m2.apply("a1", KeyAction::Accept).unwrap();
        m1.refresh();
        assert_eq!(m1.accepted("f1"), Some("a1"));
        m1.apply("a1", KeyAction::Revoke).unwrap();
        m2.refresh();
        assert_eq!(m2.accepted("f1"), None);
        assert!(matches!(m2.admit("a1", "f1", false), Admission::Refused(_)));
        // m1's view of a2 was stale; the lock reads the file first.
        m1.apply("a2", KeyAction::Accept).unwrap();
        m2.refresh();
        assert_eq!(m2.accepted("f2"), Some("a2"));
    }
}
