//! Opening existing files: the schema is migrated once, kept on reopen, and
//! a newer one is refused.

use cairn_engine::store::{StateStore, StoreError};
use cairn_state::{KeySource, SCHEMA_VERSION, SqliteStore};
use rusqlite::Connection;

use crate::{KEY, Scratch, open, resource};

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

#[test]
fn reopening_keeps_the_schema_and_the_data() {
    let scratch = Scratch::new("reopen");
    let db = scratch.dir.join("nested/.cairn/state.db");
    open(&db).put_resource("prod", &resource("a", "s")).unwrap();
    {
        let raw = Connection::open(&db).unwrap();
        assert_eq!(user_version(&raw), SCHEMA_VERSION);
        let mode: String = raw
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal", "WAL mode is a property of the file");
    }
    for _ in 0..2 {
        let store = open(&db);
        assert_eq!(store.resources("prod").unwrap(), [resource("a", "s")]);
        assert_eq!(store.serial("prod").unwrap(), 1);
    }
    assert_eq!(
        user_version(&Connection::open(&db).unwrap()),
        SCHEMA_VERSION
    );
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let scratch = Scratch::new("too-new");
    let db = scratch.db();
    open(&db).put_resource("prod", &resource("a", "s")).unwrap();
    {
        let raw = Connection::open(&db).unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
            .unwrap();
        // A newer cairn may use another journal mode: it is left alone.
        raw.pragma_update(None, "journal_mode", "delete").unwrap();
    }
    match SqliteStore::open(&db, KeySource::Bytes(KEY)) {
        Err(StoreError::TooNew { found, known }) => {
            assert_eq!((found, known), (SCHEMA_VERSION + 3, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let raw = Connection::open(&db).unwrap();
    assert_eq!(user_version(&raw), SCHEMA_VERSION + 3);
    let mode: String = raw
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
}

#[test]
fn a_file_that_is_not_a_database_is_a_storage_error() {
    let scratch = Scratch::new("garbage");
    let db = scratch.db();
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    match SqliteStore::open(&db, KeySource::Bytes(KEY)) {
        Err(StoreError::Storage(message)) => {
            assert!(message.contains("not a database"), "{message}")
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[test]
fn many_processes_may_create_the_file_at_once() {
    let scratch = Scratch::new("first-open");
    let db = scratch.db();
    std::thread::scope(|s| {
        for i in 0..8 {
            let db = &db;
            s.spawn(move || {
                open(db)
                    .put_generated_secret("prod", &format!("p{i}"), "v")
                    .unwrap()
            });
        }
    });
    assert_eq!(open(&db).generated_secrets("prod").unwrap().len(), 8);
    assert_eq!(
        user_version(&Connection::open(&db).unwrap()),
        SCHEMA_VERSION
    );
}
