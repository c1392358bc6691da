//! Integration tests of the state stores: records, secrets at rest, leases
//! across connections and processes, journal, history, migrations.
//!
//! One suite, two stores: the tests written with [`both_stores!`] run once
//! on a SQLite file and once on a PostgreSQL database (a throwaway cluster
//! from `tests/support/pg_cluster.rs`, stopped when the tests are done).

pub use cairn_test_support::pg_cluster;

mod history;
mod journal;
mod leases;
mod migrations;
mod pg;
mod records;
mod releases;
mod secrets;
mod suite;
mod transfer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_engine::store::{Owner, ResourceRecord, RunRecord};
use cairn_state::{KeySource, Location, PgStore, PgUrl, SqliteStore, Store};
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

/// Where a test's state lives: a SQLite file or a PostgreSQL database.
pub enum Place {
    Sqlite(Scratch),
    Postgres(pg_cluster::TestDb),
}

impl Place {
    pub fn sqlite(name: &str) -> Place {
        Place::Sqlite(Scratch::new(name))
    }

    pub fn postgres(name: &str) -> Place {
        Place::Postgres(pg_cluster::Cluster::database(name))
    }

    pub fn location(&self) -> Location {
        match self {
            Place::Sqlite(s) => Location::Sqlite(s.db()),
            Place::Postgres(db) => Location::Postgres(PgUrl::parse(&db.url()).unwrap()),
        }
    }

    /// A new store (a new connection) on this place.
    pub fn open(&self) -> Box<dyn Store> {
        self.open_with(KeySource::Bytes(KEY)).unwrap()
    }

    pub fn open_with(
        &self,
        key: KeySource,
    ) -> Result<Box<dyn Store>, cairn_engine::store::StoreError> {
        self.location().open(key)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Place::Postgres(_))
    }
}

pub fn open_pg(db: &pg_cluster::TestDb) -> PgStore {
    PgStore::open(&PgUrl::parse(&db.url()).unwrap(), KeySource::Bytes(KEY)).unwrap()
}

/// `both_stores! { fn name(place) { body } ... }`: a module `name` with a
/// test `sqlite` and a test `postgres`, each running `body` with `place` a
/// fresh [`Place`] of that kind.
#[macro_export]
macro_rules! both_stores {
    ($(fn $name:ident($place:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($place: &$crate::Place) $body

            #[test]
            fn sqlite() {
                body(&$crate::Place::sqlite(stringify!($name)));
            }

            #[test]
            fn postgres() {
                body(&$crate::Place::postgres(stringify!($name)));
            }
        }
    )*};
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
