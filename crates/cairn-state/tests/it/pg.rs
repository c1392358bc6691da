//! PostgreSQL only: what a database administrator sees, a schema from a
//! newer cairn, the errors a user fixes (password, server, privileges), and
//! a server restarted under an open store.

use std::collections::BTreeMap;

use cairn_engine::store::{StateStore, StoreError};
use cairn_state::{KeySource, PG_SCHEMA_VERSION, PgStore, PgUrl};
use serde_json::json;

use crate::pg_cluster::{Cluster, PASSWORD, SUPERUSER};
use crate::{KEY, open_pg, resource, run};

fn open_url(url: &str) -> Result<PgStore, StoreError> {
    PgStore::open(&PgUrl::parse(url).unwrap(), KeySource::Bytes(KEY))
}

#[test]
fn a_dba_selecting_every_column_of_every_table_sees_no_secret() {
    let db = Cluster::database("dba");
    let store = open_pg(&db);
    let secrets = ["res-secret-7f3a", "gen-secret-91bc", "out-secret-d2e4"];
    store
        .put_resource("prod", &resource("db", secrets[0]))
        .unwrap();
    store
        .put_generated_secret("prod", "db_password", secrets[1])
        .unwrap();
    store
        .put_outputs(
            "prod",
            &json!({"url": "https://x"}),
            &BTreeMap::from([("token".into(), json!(secrets[2]))]),
        )
        .unwrap();
    store.begin_run(&run("prod", "up")).unwrap();
    // Every column of every table in schema cairn, as text (bytea as hex).
    let tables = db.psql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'cairn' ORDER BY 1",
    );
    let tables: Vec<&str> = tables.lines().collect();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut seen = String::new();
    for table in &tables {
        seen += &db.psql(&format!("SELECT t::text FROM cairn.{table} AS t"));
        seen += &db.psql(&format!(
            "SELECT convert_from(t::text::bytea, 'UTF8') FROM cairn.{table} AS t"
        ));
    }
    assert!(
        seen.contains("127.42.0.5:5432"),
        "the public values are there to see"
    );
    for secret in secrets {
        assert!(!seen.contains(secret), "{secret} in clear");
        assert!(!seen.contains(&hex::encode(secret)), "{secret} in hex");
    }
    // And the store itself still opens them.
    assert_eq!(
        store.resources("prod").unwrap()[0],
        resource("db", secrets[0])
    );
}

#[test]
fn a_schema_from_a_newer_cairn_is_refused_untouched() {
    let db = Cluster::database("too_new");
    drop(open_pg(&db));
    db.psql(&format!(
        "UPDATE cairn.version SET version = {}",
        PG_SCHEMA_VERSION + 1
    ));
    match open_url(&db.url()) {
        Err(StoreError::TooNew { found, known }) => {
            assert_eq!((found, known), (PG_SCHEMA_VERSION + 1, PG_SCHEMA_VERSION));
            let message = StoreError::TooNew { found, known }.to_string();
            assert!(message.contains("newer than this cairn"), "{message}");
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert_eq!(
        db.psql("SELECT version FROM cairn.version").trim(),
        (PG_SCHEMA_VERSION + 1).to_string()
    );
}

/// A schema 2 database (releases, no heals) gains the heals table and
/// keeps its releases.
#[test]
fn a_schema_2_database_keeps_its_releases_and_gains_heals() {
    use cairn_release::{HealStore, ReleaseStore};
    let db = Cluster::database("from_v2");
    drop(open_pg(&db));
    db.psql(
        "DROP TABLE cairn.heals; UPDATE cairn.version SET version = 2; \
         INSERT INTO cairn.releases VALUES ('r1', 'web', 'd-prod', 'prod', 'v1', 'ab', 'succeeded', 10, \
         '{\"id\":\"r1\",\"app\":\"web\",\"deployment\":\"d-prod\",\"environment\":\"prod\",\"kind\":\"release\",\"version\":\"v1\",\"digest\":\"ab\",\"author\":\"a@b\",\"started_at\":10,\"outcome\":\"succeeded\",\"batches\":1,\"max_fail\":0,\"hosts\":[],\"events\":[]}')",
    );
    let store = open_pg(&db);
    assert_eq!(
        db.psql("SELECT version FROM cairn.version").trim(),
        PG_SCHEMA_VERSION.to_string()
    );
    assert_eq!(store.releases(Some("web")).unwrap()[0].version, "v1");
    assert!(store.heals(None, None, false).unwrap().is_empty());
}

#[test]
fn many_clients_may_create_the_schema_at_once() {
    let db = Cluster::database("create_race");
    let url = db.url();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| open_url(&url).unwrap());
        }
    });
    assert_eq!(
        db.psql("SELECT version FROM cairn.version").trim(),
        PG_SCHEMA_VERSION.to_string()
    );
}

#[test]
fn bad_connections_say_what_to_fix_and_never_show_the_password() {
    let db = Cluster::database("bad_input");
    let port = db.cluster.port();
    let wrong = format!(
        "postgres://{SUPERUSER}:not-the-password@127.0.0.1:{port}/{}?sslmode=disable",
        db.name
    );
    let err = open_url(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("password authentication failed") && err.contains("PGPASSWORD"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");

    let nothing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = open_url(&format!(
        "postgres://u:pw@127.0.0.1:{nothing}/d?sslmode=disable"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{nothing}")) && err.contains("reachable"),
        "{err}"
    );

    let err = open_url(&format!(
        "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{port}/no_such_db?sslmode=disable"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("does not exist") && err.contains("create the database"),
        "{err}"
    );

    db.psql("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'");
    let err = open_url(&format!(
        "postgres://reader:reader-pw@127.0.0.1:{port}/{}?sslmode=disable",
        db.name
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("permission denied") && err.contains("CREATE on the database"),
        "{err}"
    );
}

#[test]
fn a_store_outlives_a_server_restart_between_calls() {
    let cluster = std::sync::Arc::new(Cluster::start());
    cluster.psql("postgres", "CREATE DATABASE restart");
    let store = open_url(&cluster.url("restart")).unwrap();
    store.put_resource("prod", &resource("a", "s")).unwrap();
    for restart in [Cluster::restart, Cluster::restart_immediate] {
        restart(&cluster);
        // The broken connection shows at the next call's BEGIN, before any
        // of it ran: the store opens a new one and the call succeeds.
        assert_eq!(store.resources("prod").unwrap()[0], resource("a", "s"));
    }
    store.put_resource("prod", &resource("b", "s")).unwrap();
    assert_eq!(store.resources("prod").unwrap().len(), 2);
}

#[test]
fn a_server_that_stays_down_fails_calls_after_a_deadline_then_at_once() {
    use std::time::{Duration, Instant};
    let cluster = std::sync::Arc::new(Cluster::start());
    cluster.psql("postgres", "CREATE DATABASE down");
    let store = open_url(&cluster.url("down")).unwrap();
    store.put_resource("prod", &resource("a", "s")).unwrap();
    cluster.stop();
    let t = Instant::now();
    let err = store.resources("prod").unwrap_err().to_string();
    let waited = t.elapsed();
    assert!(
        err.contains("is the server running and reachable")
            && err.contains("did not open again within 10 s"),
        "{err}"
    );
    // It waited for the server to come back (and returned: not forever).
    assert!(waited >= Duration::from_secs(8), "{waited:?}");
    // Having given up, the next call fails without waiting again (its
    // error does not say it waited).
    let err = store.lease("prod").unwrap_err().to_string();
    assert!(
        err.contains("is the server running and reachable") && !err.contains("did not open again"),
        "{err}"
    );
    // And once the server is back, the store works again, nothing lost.
    cluster.resume();
    assert_eq!(store.resources("prod").unwrap(), [resource("a", "s")]);
}

#[test]
fn deployments_share_one_database() {
    let db = Cluster::database("many");
    let store = open_pg(&db);
    for d in ["a", "b", "c"] {
        store.put_resource(d, &resource("x", d)).unwrap();
        store.begin_run(&run(d, "up")).unwrap();
    }
    assert_eq!(store.deployments().unwrap(), ["a", "b", "c"]);
    assert_eq!(store.resources("b").unwrap()[0], resource("x", "b"));
}

/// Figures for the README: lease acquire/renew latency and a 500-resource
/// write, SQLite against PostgreSQL on loopback. `cargo test -p cairn-state
/// --test it figures -- --ignored --nocapture`.
#[test]
#[ignore = "prints timings; run by hand"]
fn figures() {
    use std::time::{Duration, Instant};
    for place in [
        crate::Place::sqlite("figures"),
        crate::Place::postgres("figures"),
    ] {
        let s = place.open();
        let who = crate::owner("ann");
        let n = 200;
        let t = Instant::now();
        for i in 0..n {
            s.acquire_lease("prod", &who, "r", "up", Duration::from_secs(60), i)
                .unwrap();
        }
        let acquire = t.elapsed() / n as u32;
        let t = Instant::now();
        for i in 0..n {
            s.renew_lease("prod", "r", Duration::from_secs(60), i)
                .unwrap();
        }
        let renew = t.elapsed() / n as u32;
        let t = Instant::now();
        for i in 0..500 {
            s.put_resource("big", &resource(&format!("r{i}"), "s"))
                .unwrap();
        }
        let write = t.elapsed();
        let t = Instant::now();
        assert_eq!(s.resources("big").unwrap().len(), 500);
        let read = t.elapsed();
        println!(
            "{}: lease acquire {acquire:?}, renew {renew:?}; 500 resources written one transaction each in {write:?}, read back in {read:?}",
            if place.is_postgres() {
                "postgres"
            } else {
                "sqlite"
            }
        );
    }
}

/// A CA (its certificate in PEM, and an issuer to sign with).
fn make_ca(name: &str) -> (String, rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    (ca.pem(), ca)
}

#[test]
fn tls_require_and_verify_full_against_a_cluster_with_its_own_ca() {
    let (ca_pem, ca) = make_ca("cairn test CA");
    let (other_pem, _) = make_ca("some other CA");
    let key = rcgen::KeyPair::generate().unwrap();
    // For the address only: connecting by the name `localhost` must fail
    // verify-full, as a certificate for another host would.
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let cluster = std::sync::Arc::new(Cluster::start_tls(&cert.pem(), &key.serialize_pem()));
    cluster.psql("postgres", "CREATE DATABASE tls");
    let scratch = crate::Scratch::new("tls");
    let (root, other) = (scratch.dir.join("root.crt"), scratch.dir.join("other.crt"));
    std::fs::write(&root, &ca_pem).unwrap();
    std::fs::write(&other, &other_pem).unwrap();
    let port = cluster.port();
    let url = |host: &str, query: &str| {
        format!("postgres://{SUPERUSER}:{PASSWORD}@{host}:{port}/tls?{query}")
    };
    // The server sees TLS on the connection (pg_stat_ssl), for each mode.
    let encrypted = |store: &PgStore| {
        store.put_resource("prod", &resource("a", "s")).unwrap();
        cluster
            .psql(
                "tls",
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
                 WHERE ssl AND application_name = 'cairn'",
            )
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let require = open_url(&url("127.0.0.1", "sslmode=require")).unwrap();
    assert_eq!(encrypted(&require), 1);
    drop(require);
    let full = open_url(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", root.display()),
    ))
    .unwrap();
    assert_eq!(encrypted(&full), 1);
    assert_eq!(full.resources("prod").unwrap(), [resource("a", "s")]);
    drop(full);

    // A certificate from a CA not trusted, or for another host: refused,
    // saying what to check.
    for (host, root, why) in [
        ("127.0.0.1", &other, "UnknownIssuer"),
        ("localhost", &root, "not valid for name"),
    ] {
        let err = open_url(&url(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", root.display()),
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("TLS handshake") && err.contains(why) && err.contains("sslrootcert"),
            "{host}: {err}"
        );
        assert!(!err.contains(PASSWORD), "{err}");
    }
    // require on a server without TLS (the shared test cluster).
    let plain = Cluster::database("no_tls");
    let err = open_url(&plain.url().replace("sslmode=disable", "sslmode=require"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server does not support TLS") && err.contains("TLS enabled on the server"),
        "{err}"
    );
}
