//! Secrets at rest: a stolen state file reveals none, a wrong key is
//! refused, the key file is private, and a sealed value is bound to its row.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_engine::store::{JournalEntry, JournalOp, StateStore, StoreError};
use cairn_state::{KeySource, SqliteStore};
use rusqlite::Connection;
use serde_json::json;

use crate::{Scratch, open, resource, run};

const SECRET: &str = "s3cr3t-CAIRN-7f3a9c-do-not-leak";
const PUBLIC: &str = "public-CAIRN-51e2-in-clear";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every file in `dir` (the database, `-wal`, `-shm`, anything else).
fn raw_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn assert_no_secret(dir: &Path, when: &str) -> Vec<String> {
    let files = raw_files(dir);
    for (name, bytes) in &files {
        assert!(
            !contains(bytes, SECRET),
            "{name} holds the secret in clear ({when})"
        );
    }
    // The check above means something only if the data is really in these
    // files: the public marker written beside the secrets must be found.
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, PUBLIC)),
        "the public marker is in none of {:?} ({when})",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    files.into_iter().map(|(name, _)| name).collect()
}

#[test]
fn a_stolen_state_file_reveals_no_secret() {
    let scratch = Scratch::new("stolen");
    let store = scratch.open();
    let mut record = resource("db", SECRET);
    record.properties = json!({"name": PUBLIC});
    record.secrets.insert(
        "attributes.private_key".into(),
        json!(format!("-----BEGIN {SECRET}")),
    );
    store.put_resource("prod", &record).unwrap();
    store
        .put_generated_secret("prod", "db_password", SECRET)
        .unwrap();
    store
        .put_outputs(
            "prod",
            &json!({"url": PUBLIC}),
            &BTreeMap::from([("admin_password".into(), json!(SECRET))]),
        )
        .unwrap();
    let mut history = run("prod", "up");
    history.parameters = json!({"db_password": "(secret)", "name": PUBLIC});
    store.begin_run(&history).unwrap();
    store
        .journal_intent(&JournalEntry {
            seq: 0,
            deployment: "prod".into(),
            run_id: "r".into(),
            address: "db".into(),
            kind: "database".into(),
            op: JournalOp::Create,
            token: PUBLIC.into(),
            id: None,
            started_at: 0,
            outcome: None,
        })
        .unwrap();

    // While the store is open the recent writes sit in the WAL.
    let names = assert_no_secret(&scratch.dir, "store open");
    assert!(
        names.contains(&"state.db-wal".to_string()),
        "no WAL: {names:?}"
    );
    assert!(
        names.contains(&"state.db-shm".to_string()),
        "no shm: {names:?}"
    );
    drop(store);
    // Closed: the WAL was checkpointed into the database file.
    assert_no_secret(&scratch.dir, "store closed");

    // The secrets are there all the same, for whoever has the key.
    let store = scratch.open();
    assert_eq!(store.resources("prod").unwrap(), [record]);
    assert_eq!(
        store.generated_secrets("prod").unwrap()["db_password"],
        SECRET
    );
    assert_eq!(
        store.outputs("prod").unwrap().1["admin_password"],
        json!(SECRET)
    );
}

fn expect_key_error<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Key(message)) => message,
        other => panic!("expected StoreError::Key, got {other:?}"),
    }
}

#[test]
fn a_wrong_key_is_refused() {
    let scratch = Scratch::new("wrong-key");
    open(&scratch.db())
        .put_resource("prod", &resource("db", SECRET))
        .unwrap();

    let wrong = KeySource::Bytes([0x11; 32]);
    let message = expect_key_error(SqliteStore::open(&scratch.db(), wrong.clone()));
    assert!(message.contains("does not open the state"), "{message}");
    let shown = StoreError::Key(message).to_string();
    assert!(shown.contains("wrong or missing key"), "{shown}");

    // Without the key check (lost, or a file edited by hand), every sealed
    // value still refuses the wrong key on its own.
    Connection::open(scratch.db())
        .unwrap()
        .execute("DELETE FROM meta WHERE key = 'key_check'", [])
        .unwrap();
    let store = SqliteStore::open(&scratch.db(), wrong).unwrap();
    let message = expect_key_error(store.resources("prod"));
    assert!(
        message.contains("resource `db` in deployment `prod`"),
        "{message}"
    );
}

#[test]
fn the_key_file_is_created_private_and_reused() {
    let scratch = Scratch::new("key-file");
    let key_path = scratch.dir.join("config/cairn/key");
    let source = KeySource::File(key_path.clone());
    SqliteStore::open(&scratch.db(), source.clone())
        .unwrap()
        .put_generated_secret("prod", "p", SECRET)
        .unwrap();

    let text = std::fs::read_to_string(&key_path).unwrap();
    assert_eq!(text.trim().len(), 64, "{text:?}");
    assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_path), 0o600, "key file mode");
        assert_eq!(
            mode(&scratch.dir.join("config/cairn")),
            0o700,
            "key dir mode"
        );
        assert_eq!(mode(&scratch.dir.join("config")), 0o700, "key dir mode");
    }

    // The file's key is the one in use: the same bytes given directly open it.
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).unwrap();
    let direct = SqliteStore::open(&scratch.db(), KeySource::Bytes(bytes)).unwrap();
    assert_eq!(direct.generated_secrets("prod").unwrap()["p"], SECRET);
    drop(direct);
    let again = SqliteStore::open(&scratch.db(), source.clone()).unwrap();
    assert_eq!(again.generated_secrets("prod").unwrap()["p"], SECRET);
    drop(again);
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap(),
        text,
        "the key file changed"
    );

    // Lost key file: refused with a pointer to restore it, and no new key
    // is made (it could never open the secrets already sealed).
    std::fs::remove_file(&key_path).unwrap();
    let message = expect_key_error(SqliteStore::open(&scratch.db(), source));
    assert!(message.contains("does not exist"), "{message}");
    assert!(!key_path.exists());
}

fn blob(conn: &Connection, sql: &str) -> Vec<u8> {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// Writes `value` with `update` (one `?1`), checks that reading through the
/// store now fails with a key error, then restores `original` and checks
/// that it reads again.
fn check_moved_blob(
    db: &Path,
    update: &str,
    value: &[u8],
    original: &[u8],
    read: impl Fn(&SqliteStore) -> Result<(), StoreError>,
) {
    let conn = Connection::open(db).unwrap();
    assert_eq!(conn.execute(update, [value]).unwrap(), 1, "{update}");
    drop(conn);
    let message = expect_key_error(read(&open(db)));
    assert!(message.contains("copied from another row"), "{message}");
    let conn = Connection::open(db).unwrap();
    conn.execute(update, [original]).unwrap();
    drop(conn);
    read(&open(db)).expect("the original blob reads again");
}

#[test]
fn ciphertext_moved_to_another_row_does_not_decrypt() {
    let scratch = Scratch::new("swap");
    let db = scratch.db();
    {
        let store = open(&db);
        store
            .put_resource("prod", &resource("a", "secret-a"))
            .unwrap();
        store
            .put_resource("prod", &resource("b", "secret-b"))
            .unwrap();
        store
            .put_resource("staging", &resource("a", "secret-sa"))
            .unwrap();
        store.put_generated_secret("prod", "p1", "g1").unwrap();
        store.put_generated_secret("prod", "p2", "g2").unwrap();
        store
            .put_outputs(
                "prod",
                &json!({}),
                &BTreeMap::from([("o".into(), json!("o1"))]),
            )
            .unwrap();
        store
            .put_outputs(
                "staging",
                &json!({}),
                &BTreeMap::from([("o".into(), json!("o2"))]),
            )
            .unwrap();
    }
    let conn = Connection::open(&db).unwrap();
    let res = |d: &str, a: &str| {
        blob(
            &conn,
            &format!("SELECT secrets FROM resources WHERE deployment = '{d}' AND address = '{a}'"),
        )
    };
    let (prod_a, prod_b, staging_a) = (res("prod", "a"), res("prod", "b"), res("staging", "a"));
    let gen_p1 = blob(
        &conn,
        "SELECT value FROM generated_secrets WHERE name = 'p1'",
    );
    let gen_p2 = blob(
        &conn,
        "SELECT value FROM generated_secrets WHERE name = 'p2'",
    );
    let out_prod = blob(
        &conn,
        "SELECT secrets FROM outputs WHERE deployment = 'prod'",
    );
    let out_staging = blob(
        &conn,
        "SELECT secrets FROM outputs WHERE deployment = 'staging'",
    );
    drop(conn);

    let prod_a_row =
        "UPDATE resources SET secrets = ?1 WHERE deployment = 'prod' AND address = 'a'";
    let resources = |s: &SqliteStore| s.resources("prod").map(drop);
    // Another address of the same deployment.
    check_moved_blob(&db, prod_a_row, &prod_b, &prod_a, resources);
    // The same address in another deployment.
    check_moved_blob(&db, prod_a_row, &staging_a, &prod_a, resources);
    // Another generated secret.
    check_moved_blob(
        &db,
        "UPDATE generated_secrets SET value = ?1 WHERE deployment = 'prod' AND name = 'p1'",
        &gen_p2,
        &gen_p1,
        |s| s.generated_secrets("prod").map(drop),
    );
    // Another deployment's outputs.
    check_moved_blob(
        &db,
        "UPDATE outputs SET secrets = ?1 WHERE deployment = 'prod'",
        &out_staging,
        &out_prod,
        |s| s.outputs("prod").map(drop),
    );
    // Another kind of row altogether.
    check_moved_blob(
        &db,
        "UPDATE outputs SET secrets = ?1 WHERE deployment = 'prod'",
        &gen_p1,
        &out_prod,
        |s| s.outputs("prod").map(drop),
    );
}
