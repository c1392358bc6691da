//! Integration tests of `SqliteStore` on real files: records, secrets at
//! rest, leases across connections and processes, journal, history,
//! migrations.

mod history;
mod journal;
mod leases;
mod migrations;
mod records;
mod secrets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_engine::store::{Owner, ResourceRecord, RunRecord};
use cairn_state::{KeySource, SqliteStore};
use serde_json::json;

pub const KEY: [u8; 32] = [0x5a; 32];

/// A directory under the system temp dir, unique to this test, removed on
/// drop (also when the test fails).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cairn-state-it-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    pub fn open(&self) -> SqliteStore {
        open(&self.db())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn open(db: &Path) -> SqliteStore {
    SqliteStore::open(db, KeySource::Bytes(KEY)).unwrap()
}

pub fn owner(user: &str) -> Owner {
    Owner {
        user: user.into(),
        host: "build-host".into(),
        pid: 4242,
        process: None,
    }
}

pub fn resource(address: &str, secret: &str) -> ResourceRecord {
    ResourceRecord {
        address: address.into(),
        kind: "database".into(),
        id: format!("db-{address}"),
        properties: json!({"engine": "postgres", "size": {"cpu": 2, "disk_gb": 20}}),
        attributes: json!({"endpoint": "127.42.0.5:5432", "ready": true}),
        secrets: BTreeMap::from([
            ("properties.owner_password".into(), json!(secret)),
            ("attributes.ca".into(), json!({"pem": secret, "n": 1})),
        ]),
        tags: BTreeMap::from([
            ("cairn:deployment".into(), "prod".into()),
            ("team".into(), "data".into()),
        ]),
        depends_on: vec!["net".into(), "subnets[\"a\"]".into()],
        data_holding: true,
        prevent_destroy: true,
        create_before_destroy: false,
    }
}

pub fn run(deployment: &str, command: &str) -> RunRecord {
    RunRecord {
        serial: 0,
        deployment: deployment.into(),
        run_id: format!("{deployment}-{command}-run"),
        command: command.into(),
        owner: owner("ann"),
        environment: "prod".into(),
        target: "aws".into(),
        started_at: 1_700_000_000,
        finished_at: None,
        template_digest: "sha256:0123".into(),
        template_files: BTreeMap::from([
            (
                "main.yaml".into(),
                "resources:\n  web: {type: server}\n".into(),
            ),
            ("env/prod.yaml".into(), "size: large\n".into()),
        ]),
        parameters: json!({"size": "large", "db_password": "(secret)"}),
        plan: json!({"changes": [{"address": "web", "action": "create"}]}),
        outcome: "running".into(),
        duration_ms: None,
        outputs: json!({}),
    }
}
