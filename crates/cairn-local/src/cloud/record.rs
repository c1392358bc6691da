//! The local cloud's own record of what it holds, in SQLite (`cloud.db`):
//! one row per resource, its sensitive values sealed in the row (see
//! `seal`), one transaction per change.
//!
//! A change costs the same whatever the cloud's size: the first record was
//! one JSON document rewritten and resealed whole on every change, so
//! 10,000 DNS records took minutes. Crash safety: WAL with
//! `synchronous = FULL`, so a change the provider call reported as done is
//! on disk before the call answers, and a daemon killed at any moment
//! reopens with every such change and no half of one.
//!
//! A cloud made by an earlier cairn has `cloud.json`: it is read once, its
//! resources written here in one transaction, and kept as
//! `cloud.json.migrated`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::model::{CloudState, LocalResource};
use super::seal::Sealer;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
-- `resource`: the LocalResource as JSON with its sensitive values taken
-- out; `sealed`: those values, sealed for this resource (NULL: none).
CREATE TABLE IF NOT EXISTS resources (
    id       TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    sealed   TEXT
) STRICT;
";
const VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
#[error("the local cloud's record {path}: {why}")]
pub struct RecordError {
    path: PathBuf,
    why: String,
}

pub struct CloudRecord {
    conn: Mutex<Connection>,
    sealer: Sealer,
    path: PathBuf,
}

impl CloudRecord {
    /// Opens the record at `db` (creating it, or migrating `json` into
    /// it), with the sealing key at `key`, and returns what it holds with
    /// the sealed values back in place.
    pub fn open(db: &Path, json: &Path, key: &Path) -> Result<(CloudRecord, CloudState), String> {
        let fail = |why: String| {
            RecordError {
                path: db.to_path_buf(),
                why,
            }
            .to_string()
        };
        let conn = open_connection(db).map_err(|e| fail(e.to_string()))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| fail(e.to_string()))?;
        if version > VERSION {
            return Err(fail(format!(
                "it was written by a newer cairn (schema {version}, this one knows {VERSION})"
            )));
        }
        conn.execute_batch(SCHEMA)
            .and_then(|()| conn.pragma_update(None, "user_version", VERSION))
            .map_err(|e| fail(e.to_string()))?;
        let any_sealed: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM resources WHERE sealed IS NOT NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| fail(e.to_string()))?;
        let legacy = if json.exists() {
            Some(CloudState::load(json)?)
        } else {
            None
        };
        let may_create_key = !any_sealed && legacy.as_ref().is_none_or(|s| s.sealed.is_empty());
        let sealer = Sealer::load(key, may_create_key).map_err(|e| e.to_string())?;
        let record = CloudRecord {
            conn: Mutex::new(conn),
            sealer,
            path: db.to_path_buf(),
        };
        if let Some(mut legacy) = legacy {
            record
                .sealer
                .unseal(&mut legacy)
                .map_err(|e| e.to_string())?;
            record.import(&legacy)?;
            let kept = json.with_extension("json.migrated");
            std::fs::rename(json, &kept).map_err(|e| {
                fail(format!(
                    "migrated {}, but cannot move it aside: {e}",
                    json.display()
                ))
            })?;
            tracing::info!(
                "moved the local cloud's record from {} into {}",
                json.display(),
                db.display()
            );
        }
        let state = record.load()?;
        Ok((record, state))
    }

    fn fail(&self, why: impl std::fmt::Display) -> String {
        RecordError {
            path: self.path.clone(),
            why: why.to_string(),
        }
        .to_string()
    }

    fn load(&self) -> Result<CloudState, String> {
        let conn = self.conn.lock().expect("record lock");
        let mut state = CloudState {
            pool: meta(&conn, "pool")
                .map_err(|e| self.fail(e))?
                .and_then(|v| v.parse().ok()),
            next_id: meta(&conn, "next_id")
                .map_err(|e| self.fail(e))?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            ..CloudState::default()
        };
        let mut stmt = conn
            .prepare("SELECT id, resource, sealed FROM resources")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(|e| self.fail(e))?;
        for row in rows {
            let (id, text, sealed) = row.map_err(|e| self.fail(e))?;
            let mut r: LocalResource = serde_json::from_str(&text)
                .map_err(|e| self.fail(format!("resource {id} is damaged: {e}")))?;
            if let Some(blob) = sealed {
                self.sealer
                    .unseal_resource(&mut r, &blob)
                    .map_err(|e| e.to_string())?;
            }
            state.resources.insert(id, r);
        }
        Ok(state)
    }

    /// Writes a whole state in one transaction (the migration from JSON).
    fn import(&self, state: &CloudState) -> Result<(), String> {
        let mut conn = self.conn.lock().expect("record lock");
        let tx = conn.transaction().map_err(|e| self.fail(e))?;
        for r in state.resources.values() {
            self.put_in(&tx, r)?;
        }
        set_meta(&tx, "next_id", &state.next_id.to_string()).map_err(|e| self.fail(e))?;
        if let Some(pool) = state.pool {
            set_meta(&tx, "pool", &pool.to_string()).map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))
    }

    fn put_in(&self, conn: &Connection, r: &LocalResource) -> Result<(), String> {
        let (bare, sealed) = self.sealer.seal_resource(r).map_err(|e| e.to_string())?;
        let text = serde_json::to_string(&bare).map_err(|e| self.fail(e))?;
        conn.execute(
            "INSERT OR REPLACE INTO resources (id, resource, sealed) VALUES (?1, ?2, ?3)",
            params![r.id, text, sealed],
        )
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Records a resource made or changed, and the id counter, in one
    /// transaction.
    pub fn put(&self, r: &LocalResource, next_id: u64) -> Result<(), String> {
        let mut conn = self.conn.lock().expect("record lock");
        let tx = conn.transaction().map_err(|e| self.fail(e))?;
        self.put_in(&tx, r)?;
        // Parallel creates record in any order: the counter only grows.
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('next_id', ?1)
             ON CONFLICT (key) DO UPDATE SET value =
                 CAST(MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
            [next_id.to_string()],
        )
        .map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))
    }

    pub fn remove(&self, id: &str) -> Result<(), String> {
        let conn = self.conn.lock().expect("record lock");
        conn.execute("DELETE FROM resources WHERE id = ?1", [id])
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// The cloud's isolation (`process` or `runc`), if it was recorded:
    /// chosen once when the cloud is made (a cloud from before the choice
    /// existed has none and is a process cloud).
    pub fn isolation(&self) -> Result<Option<String>, String> {
        let conn = self.conn.lock().expect("record lock");
        meta(&conn, "isolation").map_err(|e| self.fail(e))
    }

    /// Records the cloud's isolation.
    pub fn set_isolation(&self, isolation: &str) -> Result<(), String> {
        let conn = self.conn.lock().expect("record lock");
        set_meta(&conn, "isolation", isolation).map_err(|e| self.fail(e))
    }

    /// The address pool, chosen once when the cloud is made.
    pub fn set_pool(&self, pool: u8) -> Result<(), String> {
        let conn = self.conn.lock().expect("record lock");
        set_meta(&conn, "pool", &pool.to_string()).map_err(|e| self.fail(e))
    }
}

/// The resources of the record at `db` as they are stored (sensitive
/// values left out), read without the key: for commands that only need
/// names and ids while the daemon may be stopped (`cairn local logs`).
pub fn read_resources(db: &Path) -> Result<Vec<LocalResource>, String> {
    let fail = |why: String| {
        RecordError {
            path: db.to_path_buf(),
            why,
        }
        .to_string()
    };
    if !db.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| fail(e.to_string()))?;
    let mut stmt = conn
        .prepare("SELECT resource FROM resources ORDER BY id")
        .map_err(|e| fail(e.to_string()))?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| fail(e.to_string()))?;
    rows.map(|row| {
        let text = row.map_err(|e| fail(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
    })
    .collect()
}

/// The isolation recorded in the record at `db`, read without the key
/// (`cairn local exec` and `logs` while the daemon may be stopped); `None`
/// when there is no record or it predates the choice.
pub fn read_isolation(db: &Path) -> Result<Option<String>, String> {
    if !db.exists() {
        return Ok(None);
    }
    let fail = |why: String| {
        RecordError {
            path: db.to_path_buf(),
            why,
        }
        .to_string()
    };
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| fail(e.to_string()))?;
    let has_meta: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| fail(e.to_string()))?;
    if !has_meta {
        return Ok(None);
    }
    meta(&conn, "isolation").map_err(|e| fail(e.to_string()))
}

fn open_connection(db: &Path) -> rusqlite::Result<Connection> {
    use std::os::unix::fs::OpenOptionsExt;
    // Created 0600 before SQLite opens it: rows hold sealed secrets and
    // the clear values of everything else.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db);
    let conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn resource(id: &str, kind: &str, properties: serde_json::Value) -> LocalResource {
        LocalResource {
            id: id.into(),
            kind: kind.into(),
            deployment: "d".into(),
            address: id.into(),
            token: format!("tok-{id}"),
            properties,
            attributes: json!({"id": id}),
            tags: BTreeMap::new(),
            ip: None,
            sensitive: Vec::new(),
        }
    }

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("cairn-record-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn open(d: &Dir) -> Result<(CloudRecord, CloudState), String> {
        CloudRecord::open(
            &d.0.join("cloud.db"),
            &d.0.join("cloud.json"),
            &d.0.join("cloud.key"),
        )
    }
    /// Every byte SQLite wrote: the database and its write-ahead log.
    fn on_disk(d: &Dir) -> String {
        ["cloud.db", "cloud.db-wal"]
            .iter()
            .filter_map(|f| std::fs::read(d.0.join(f)).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    #[test]
    fn rows_come_back_after_a_reopen_with_secrets_sealed_on_disk() {
        let d = dir("round");
        let (rec, state) = open(&d).unwrap();
        assert!(state.resources.is_empty());
        rec.set_pool(77).unwrap();
        assert_eq!(rec.isolation().unwrap(), None);
        rec.set_isolation("runc").unwrap();
        let secret = resource(
            "secret-1",
            "secret",
            json!({"name": "s", "value": "hunter2-xyz"}),
        );
        let net = resource("network-2", "network", json!({"cidr": "10.0.0.0/16"}));
        rec.put(&secret, 1).unwrap();
        rec.put(&net, 2).unwrap();
        let mut zone = resource("dns-zone-3", "dns_zone", json!({"name": "a.test"}));
        rec.put(&zone, 3).unwrap();
        zone.properties = json!({"name": "b.test"});
        rec.put(&zone, 3).unwrap();
        rec.remove("network-2").unwrap();
        assert!(!on_disk(&d).contains("hunter2-xyz"), "a secret in clear");
        drop(rec);

        let (_, state) = open(&d).unwrap();
        assert_eq!((state.pool, state.next_id), (Some(77), 3));
        assert_eq!(state.resources.len(), 2);
        assert_eq!(state.resources["secret-1"], secret);
        assert_eq!(state.resources["dns-zone-3"].properties["name"], "b.test");
        assert_eq!(
            read_isolation(&d.0.join("cloud.db")).unwrap().as_deref(),
            Some("runc")
        );
        assert_eq!(read_isolation(&d.0.join("nothing.db")).unwrap(), None);
        let listed = read_resources(&d.0.join("cloud.db")).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(
            listed[1].properties.get("value").is_none(),
            "read without the key"
        );
    }

    #[test]
    fn the_id_counter_never_goes_back_when_creates_record_out_of_order() {
        let d = dir("counter");
        let (rec, _) = open(&d).unwrap();
        rec.put(&resource("bucket-6", "bucket", json!({})), 6)
            .unwrap();
        rec.put(&resource("bucket-5", "bucket", json!({})), 5)
            .unwrap();
        drop(rec);
        assert_eq!(open(&d).unwrap().1.next_id, 6);
    }

    #[test]
    fn a_cloud_json_from_an_earlier_cairn_is_migrated_once() {
        let d = dir("migrate");
        let key = d.0.join("cloud.key");
        let sealer = Sealer::load(&key, true).unwrap();
        let mut legacy = CloudState {
            pool: Some(61),
            next_id: 9,
            ..CloudState::default()
        };
        let secret = resource(
            "secret-9",
            "secret",
            json!({"name": "s", "value": "old-pass-123"}),
        );
        legacy.resources.insert(secret.id.clone(), secret.clone());
        sealer
            .seal(&legacy)
            .unwrap()
            .save(&d.0.join("cloud.json"))
            .unwrap();

        let (_, state) = open(&d).unwrap();
        assert_eq!((state.pool, state.next_id), (Some(61), 9));
        assert_eq!(state.resources["secret-9"], secret);
        assert!(!d.0.join("cloud.json").exists());
        assert!(d.0.join("cloud.json.migrated").exists());
        assert!(!on_disk(&d).contains("old-pass-123"));
        // Opened again: from the database alone.
        let (_, again) = open(&d).unwrap();
        assert_eq!(again.resources, state.resources);
    }

    #[test]
    fn a_record_from_a_newer_cairn_or_a_lost_key_is_refused() {
        let d = dir("refuse");
        let (rec, _) = open(&d).unwrap();
        rec.put(&resource("secret-1", "secret", json!({"value": "v"})), 1)
            .unwrap();
        drop(rec);
        std::fs::remove_file(d.0.join("cloud.key")).unwrap();
        let err = open(&d).err().unwrap();
        assert!(err.contains("is missing"), "{err}");

        let d = dir("newer");
        drop(open(&d).unwrap());
        let conn = Connection::open(d.0.join("cloud.db")).unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        drop(conn);
        let err = open(&d).err().unwrap();
        assert!(err.contains("newer cairn"), "{err}");
    }
}
