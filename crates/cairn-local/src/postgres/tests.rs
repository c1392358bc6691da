//! Tests. The cluster tests run real PostgreSQL: without it they fail with
//! the `NotInstalled` message (run ./scripts/install-postgres). Every cluster
//! a test starts is stopped and removed by the test, and by a guard that
//! kills and deletes whatever is left when a test panics.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::config::{
    bootstrap_sql, cairn_conf, cluster_name, last_lines, parse_postmaster_pid, quote_conf,
    quote_ident, quote_literal,
};
use super::os::{Account, can_traverse, process_alive, process_cmdline};
use super::*;

// ---------------------------------------------------------------- helpers

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the temp dir, removed on drop together with any
/// server still running on a data directory inside it.
struct TestDir {
    root: PathBuf,
}

impl TestDir {
    fn new(label: &str) -> TestDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "cairn-pg-{label}-{}-{n}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&root).unwrap();
        TestDir { root }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Any postmaster.pid under the root: kill that server.
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().is_some_and(|n| n == "postmaster.pid")
                    && let Some(pm) = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| parse_postmaster_pid(&t))
                    && process_alive(pm.pid)
                {
                    eprintln!("cleanup: killing leftover PostgreSQL pid {}", pm.pid);
                    let _ = os::signal(pm.pid, nix::sys::signal::Signal::SIGQUIT);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while process_alive(pm.pid) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = os::signal(pm.pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A loopback address of its own for each test (127.0.0.x), and a port that
/// is free on it right now.
fn address_and_port(x: u8) -> (Ipv4Addr, u16) {
    let address = Ipv4Addr::new(127, 0, 0, x);
    let port = TcpListener::bind((address, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (address, port)
}

fn spec_in(dir: &Path, address: Ipv4Addr, port: u16) -> ClusterSpec {
    ClusterSpec {
        data_dir: dir.join("data"),
        socket_dir: dir.join("run"),
        address,
        port,
        owner: "app_owner".into(),
        password: "s3cret".into(),
        database: "app_db".into(),
    }
}

/// The cluster manager, or the test fails with the reason (NotInstalled
/// tells to run scripts/install-postgres).
fn cluster(spec: ClusterSpec) -> Cluster {
    Cluster::new(spec).unwrap_or_else(|e| panic!("{e}"))
}

struct Psql {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// psql over TCP to the spec's address as `user` with `password`.
async fn psql(cluster: &Cluster, user: &str, password: &str, sql: &str) -> Psql {
    let spec = cluster.spec();
    let out = tokio::process::Command::new(&cluster.binaries().psql)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGSERVICE")
        .args(["-X", "-w", "-A", "-t", "-h"])
        .arg(spec.address.to_string())
        .arg("-p")
        .arg(spec.port.to_string())
        .arg("-U")
        .arg(user)
        .arg("-d")
        .arg(&spec.database)
        .arg("-c")
        .arg(sql)
        .kill_on_drop(true)
        .output();
    // A server that accepts and then never answers would hang the suite:
    // the connect timeout above does not cover a query.
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .unwrap_or_else(|_| panic!("psql {sql:?} did not finish within 60 s"))
        .unwrap();
    Psql {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

fn listening(address: Ipv4Addr, port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from((address, port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Processes whose command line names the cluster's data directory (the
/// postmaster) or its cluster_name (every backend and helper process).
fn processes_of(spec: &ClusterSpec) -> Vec<(u32, String)> {
    let data_dir = spec.data_dir.to_string_lossy().into_owned();
    let name = cluster_name(spec.address, spec.port);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !process_alive(pid) {
            continue;
        }
        if let Some(cmd) = process_cmdline(pid)
            && (cmd.contains(&data_dir) || cmd.contains(&format!("{name}:")))
        {
            found.push((pid, cmd));
        }
    }
    found
}

async fn assert_gone(spec: &ClusterSpec) {
    // Backends exit right after the postmaster; allow them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = processes_of(spec);
        if procs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes of the cluster remain: {procs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !listening(spec.address, spec.port),
        "something still listens on {}",
        spec.endpoint()
    );
}

// ---------------------------------------------------------------- unit tests

#[test]
fn quoting() {
    assert_eq!(quote_literal("it's"), "'it''s'");
    assert_eq!(quote_literal(r"a\b"), r"'a\b'");
    assert_eq!(quote_ident(r#"my "db""#), r#""my ""db""""#);
    assert_eq!(quote_conf(r"/tmp/it's\x"), r"'/tmp/it''s\\x'");
}

#[test]
fn version_parsing() {
    use super::binaries::{parse_version_numbers, parse_version_output};
    assert_eq!(
        parse_version_output("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").as_deref(),
        Some("15.18")
    );
    assert_eq!(
        parse_version_output("postgres (PostgreSQL) 17.2").as_deref(),
        Some("17.2")
    );
    assert_eq!(parse_version_output("something else"), None);
    assert_eq!(parse_version_numbers("15.18"), vec![15, 18]);
    assert_eq!(parse_version_numbers("9.6.24"), vec![9, 6, 24]);
    assert_eq!(parse_version_numbers("16beta1"), vec![16]);
    assert_eq!(parse_version_numbers("15"), vec![15]);
    assert!(parse_version_numbers("16") > parse_version_numbers("15.18"));
    assert!(parse_version_numbers("9.6.24") < parse_version_numbers("10.1"));
}

#[test]
fn postmaster_pid_parsing() {
    let text = "4242\n/var/lib/cairn/db/data\n1700000000\n5433\n/var/lib/cairn/db/run\n\
                127.0.0.7\n  5433001     32768\nready   \n";
    let pm = parse_postmaster_pid(text).unwrap();
    assert_eq!(pm.pid, 4242);
    assert_eq!(pm.data_dir, PathBuf::from("/var/lib/cairn/db/data"));
    assert_eq!(pm.port, Some(5433));
    assert_eq!(pm.socket_dir, Some(PathBuf::from("/var/lib/cairn/db/run")));
    assert_eq!(pm.listen.as_deref(), Some("127.0.0.7"));
    assert_eq!(pm.status.as_deref(), Some("ready"));
    // Early in startup only the first lines exist.
    let early = parse_postmaster_pid("17\n/d\n").unwrap();
    assert_eq!((early.pid, early.port, early.status), (17, None, None));
    assert_eq!(parse_postmaster_pid(""), None);
    assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
}

#[test]
fn traversal_rules() {
    let pg = Account {
        name: "postgres".into(),
        uid: 101,
        gid: 104,
        groups: vec![104, 103],
    };
    // /root on Debian: root:root 0700.
    assert!(!can_traverse(&pg, 0, 0, 0o40700));
    assert!(can_traverse(&pg, 0, 0, 0o40701));
    assert!(can_traverse(&pg, 0, 0, 0o40755));
    // Group access through a supplementary group.
    assert!(can_traverse(&pg, 0, 103, 0o40710));
    assert!(!can_traverse(&pg, 0, 5, 0o40710));
    // Its own directory: the owner bits count, not others'.
    assert!(can_traverse(&pg, 101, 104, 0o40700));
    assert!(!can_traverse(&pg, 101, 0, 0o40077));
}

#[test]
fn spec_validation() {
    let base = spec_in(Path::new("/tmp/x"), Ipv4Addr::new(127, 0, 0, 9), 5433);
    assert!(base.validated().is_ok());
    let bad = |spec: ClusterSpec, needle: &str| {
        let err = spec.validated().unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    };
    bad(
        ClusterSpec {
            address: Ipv4Addr::new(10, 0, 0, 1),
            ..base.clone()
        },
        "not a loopback",
    );
    bad(
        ClusterSpec {
            port: 0,
            ..base.clone()
        },
        "port 0",
    );
    bad(
        ClusterSpec {
            owner: "pg_monitor".into(),
            ..base.clone()
        },
        "reserved",
    );
    bad(
        ClusterSpec {
            database: String::new(),
            ..base.clone()
        },
        "database is empty",
    );
    bad(
        ClusterSpec {
            password: String::new(),
            ..base.clone()
        },
        "password is empty",
    );
    bad(
        ClusterSpec {
            socket_dir: PathBuf::from("/tmp/x/data/run"),
            ..base.clone()
        },
        "inside data_dir",
    );
    bad(
        ClusterSpec {
            socket_dir: PathBuf::from(format!("/tmp/{}", "s".repeat(100))),
            ..base.clone()
        },
        "longer than the 107",
    );
    // Relative directories become absolute.
    let rel = ClusterSpec {
        data_dir: "rel/data".into(),
        ..base.clone()
    }
    .validated()
    .unwrap();
    assert!(rel.data_dir.is_absolute());
    // The password never shows in Debug output.
    let shown = format!("{base:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("(secret)"),
        "{shown}"
    );
}

#[test]
fn generated_text() {
    let sql = bootstrap_sql("o'wner", "p'w\\x", "d\"b", "postgres");
    assert!(sql.starts_with("\\set ON_ERROR_STOP on\n"));
    assert!(sql.contains("format('CREATE ROLE %I LOGIN', 'o''wner')"));
    assert!(sql.contains("ALTER ROLE \"o'wner\" WITH LOGIN PASSWORD 'p''w\\x';"));
    assert!(sql.contains("ALTER DATABASE \"d\"\"b\" OWNER TO \"o'wner\";"));
    // The superuser as owner is not created again.
    assert!(!bootstrap_sql("postgres", "pw", "db", "postgres").contains("CREATE ROLE"));
    let conf = cairn_conf(Ipv4Addr::new(127, 0, 0, 7), 5433, Path::new("/run/x"));
    assert!(conf.contains("listen_addresses = '127.0.0.7'\n"));
    assert!(conf.contains("port = 5433\n"));
    assert!(conf.contains("unix_socket_directories = '/run/x'\n"));
}

#[test]
fn not_installed_message_says_how_to_install() {
    let msg = PgError::NotInstalled {
        searched: vec![PathBuf::from("/usr/bin")],
        problems: vec![],
    }
    .to_string();
    assert!(msg.contains("apt-get install postgresql"), "{msg}");
    assert!(msg.contains("./scripts/install-postgres"), "{msg}");
    assert!(msg.contains("/usr/bin"), "{msg}");
}

// ---------------------------------------------------------------- real PostgreSQL

/// A lone `initdb` symlink (like /usr/local/bin/initdb on some machines)
/// leads to its real installation; a dangling one is reported, not used.
#[test]
fn a_symlinked_initdb_resolves_to_its_installation() {
    let real = find_binaries().unwrap_or_else(|e| panic!("{e}"));
    let dir = TestDir::new("bins");
    let links = dir.root.join("bin");
    std::fs::create_dir(&links).unwrap();
    std::os::unix::fs::symlink(&real.initdb, links.join("initdb")).unwrap();
    let mut problems = Vec::new();
    let found = super::binaries::probe(&links, &[], &mut problems).unwrap();
    assert_eq!(found.bin_dir, real.bin_dir);
    assert_eq!(found.postgres, real.postgres);
    assert_eq!(found.version, real.version);

    let dangling = dir.root.join("dangling");
    std::fs::create_dir(&dangling).unwrap();
    std::os::unix::fs::symlink("/nonexistent/initdb", dangling.join("initdb")).unwrap();
    assert!(super::binaries::probe(&dangling, &[], &mut problems).is_none());
    assert!(
        problems.iter().any(|p| p.contains("dangling")),
        "{problems:?}"
    );
}

#[test]
fn postgresql_is_installed() {
    let bins = find_binaries().unwrap_or_else(|e| panic!("{e}"));
    assert!(bins.major() >= 10, "{bins:?}");
    for p in [&bins.initdb, &bins.pg_ctl, &bins.postgres, &bins.psql] {
        assert!(p.is_file(), "{}", p.display());
    }
    // Server programs all come from one directory.
    assert_eq!(bins.initdb.parent(), Some(bins.bin_dir.as_path()));
    assert_eq!(bins.postgres.parent(), Some(bins.bin_dir.as_path()));
    eprintln!("PostgreSQL {} in {}", bins.version, bins.bin_dir.display());
}

#[tokio::test]
async fn owner_logs_in_over_tcp_and_destroy_leaves_nothing() {
    let dir = TestDir::new("login");
    let (address, port) = address_and_port(41);
    let spec = ClusterSpec {
        // Quotes, backslash, spaces, semicolon: quoting must hold.
        password: r#"it's a "pw" \with\ back;slash"#.into(),
        ..spec_in(&dir.root, address, port)
    };
    let mut c = cluster(spec.clone());
    assert_eq!(c.status(), ClusterStatus::NotInitialized);

    let t = Instant::now();
    assert_eq!(c.init().await.unwrap(), InitOutcome::Created);
    eprintln!("init (initdb + role + database): {:?}", t.elapsed());
    assert_eq!(c.status(), ClusterStatus::Stopped);
    assert!(
        !listening(address, port),
        "init must not leave it listening"
    );

    let t = Instant::now();
    assert_eq!(c.init().await.unwrap(), InitOutcome::Unchanged);
    eprintln!("init again (no-op): {:?}", t.elapsed());

    let t = Instant::now();
    let StartOutcome::Started { pid } = c.start().await.unwrap() else {
        panic!("expected Started");
    };
    eprintln!("start to ready (owner login over TCP): {:?}", t.elapsed());
    assert_eq!(c.status(), ClusterStatus::Running { pid });
    assert!(c.is_ready().await);
    assert_eq!(
        c.start().await.unwrap(),
        StartOutcome::AlreadyRunning { pid }
    );
    assert_eq!(c.init().await.unwrap(), InitOutcome::Unchanged);

    let r = psql(
        &c,
        &spec.owner,
        &spec.password,
        "select current_user, current_database()",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "app_owner|app_db");

    let r = psql(&c, &spec.owner, "wrong", "select 1").await;
    assert!(!r.ok, "a wrong password was accepted");
    assert!(
        r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    // The superuser's password is not the owner's.
    let r = psql(&c, SUPERUSER, &spec.password, "select 1").await;
    assert!(!r.ok, "superuser accepted the owner's password");

    // Only its own address: not 127.0.0.1 on the same port.
    assert!(!listening(Ipv4Addr::LOCALHOST, port));
    assert!(spec.socket_path().exists());

    if os::effective_uid().unwrap() == 0 {
        let meta = std::fs::metadata(&spec.data_dir).unwrap();
        let RunAs::User(pg) = c.run_as() else {
            panic!("root must run PostgreSQL as {POSTGRES_USER}")
        };
        assert_eq!(meta.uid(), pg.uid, "data dir not owned by {}", pg.name);
        let cmdline_user = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = cmdline_user
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap();
        assert!(
            uid_line.split_whitespace().nth(2) == Some(pg.uid.to_string().as_str()),
            "server not running as {}: {uid_line}",
            pg.name
        );
    }

    let t = Instant::now();
    c.destroy().await.unwrap();
    eprintln!("destroy (running): {:?}", t.elapsed());
    assert!(!spec.data_dir.exists(), "data dir remains");
    assert!(!spec.socket_path().exists(), "socket remains");
    assert!(!process_alive(pid));
    assert_gone(&spec).await;
    assert_eq!(c.status(), ClusterStatus::NotInitialized);
    // Destroying nothing is fine.
    c.destroy().await.unwrap();
}

#[tokio::test]
async fn data_survives_stop_start_and_a_new_manager_adopts_the_server() {
    let dir = TestDir::new("restart");
    let (address, port) = address_and_port(42);
    let spec = spec_in(&dir.root, address, port);
    let mut c = cluster(spec.clone());
    c.init().await.unwrap();
    c.start().await.unwrap();

    let r = psql(
        &c,
        &spec.owner,
        &spec.password,
        "create table notes (body text); insert into notes values ('kept')",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);

    let t = Instant::now();
    assert_eq!(c.stop().await.unwrap(), StopOutcome::Stopped);
    eprintln!("stop: {:?}", t.elapsed());
    assert_gone(&spec).await;
    assert!(!c.is_ready().await);
    assert_eq!(c.status(), ClusterStatus::Stopped);
    assert_eq!(c.stop().await.unwrap(), StopOutcome::NotRunning);

    let t = Instant::now();
    let StartOutcome::Started { pid } = c.start().await.unwrap() else {
        panic!("expected Started");
    };
    eprintln!("restart to ready: {:?}", t.elapsed());
    let r = psql(&c, &spec.owner, &spec.password, "select body from notes").await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "kept");

    // A daemon restart: the manager goes, the server stays, a new manager
    // finds it and does not start a second one.
    drop(c);
    let mut c = cluster(spec.clone());
    assert_eq!(c.status(), ClusterStatus::Running { pid });
    assert_eq!(
        c.start().await.unwrap(),
        StartOutcome::AlreadyRunning { pid }
    );
    assert!(c.is_ready().await);

    // The owner and database are fixed at creation.
    let other = ClusterSpec {
        owner: "someone_else".into(),
        ..spec.clone()
    };
    let err = cluster(other).init().await.unwrap_err();
    assert!(
        matches!(err, PgError::SpecMismatch { field: "owner", .. }),
        "{err}"
    );

    // A new port: init rewrites the configuration, start moves the running
    // server there (a restart), the data comes along.
    let (_, port2) = address_and_port(42);
    let moved = ClusterSpec {
        port: port2,
        ..spec.clone()
    };
    drop(c);
    let mut c = cluster(moved.clone());
    assert_eq!(c.init().await.unwrap(), InitOutcome::Reconfigured);
    let StartOutcome::Started { pid: pid2 } = c.start().await.unwrap() else {
        panic!("expected a restart on the new port");
    };
    assert_ne!(pid, pid2);
    assert!(!listening(address, port), "old port still open");
    let r = psql(&c, &moved.owner, &moved.password, "select body from notes").await;
    assert_eq!(r.stdout, "kept", "{}", r.stderr);
    assert_eq!(c.init().await.unwrap(), InitOutcome::Unchanged);

    c.destroy().await.unwrap();
    assert!(!spec.data_dir.exists());
    assert_gone(&spec).await;
    assert_gone(&moved).await;
}

#[tokio::test]
async fn a_crash_is_reported_to_the_supervisor_and_recovered_on_start() {
    let dir = TestDir::new("crash");
    let (address, port) = address_and_port(43);
    let spec = spec_in(&dir.root, address, port);
    let mut c = cluster(spec.clone());
    c.init().await.unwrap();
    let StartOutcome::Started { pid } = c.start().await.unwrap() else {
        panic!("expected Started");
    };
    let r = psql(
        &c,
        &spec.owner,
        &spec.password,
        "create table t (n int); insert into t values (7)",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);

    os::signal(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), c.wait_exit())
        .await
        .expect("wait_exit did not resolve after the server died")
        .expect("a server this manager started has an exit status");
    assert!(!status.success(), "{status}");
    assert_gone(&spec).await;

    // Start again: crash recovery replays the WAL; the committed row is back.
    let t = Instant::now();
    c.start().await.unwrap();
    eprintln!("start after crash (recovery) to ready: {:?}", t.elapsed());
    let r = psql(&c, &spec.owner, &spec.password, "select n from t").await;
    assert_eq!(r.stdout, "7", "{}", r.stderr);

    c.destroy().await.unwrap();
    assert_gone(&spec).await;
}

#[tokio::test]
async fn a_taken_port_is_reported() {
    let dir = TestDir::new("port");
    // Take the port first, then give it to the cluster: no race.
    let address = Ipv4Addr::new(127, 0, 0, 44);
    let taken = TcpListener::bind((address, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = spec_in(&dir.root, address, port);
    let mut c = cluster(spec.clone());
    // init needs no TCP port (it bootstraps over the unix socket).
    assert_eq!(c.init().await.unwrap(), InitOutcome::Created);
    let err = c.start().await.unwrap_err();
    assert!(
        matches!(err, PgError::PortInUse { port: p, .. } if p == port),
        "{err}"
    );
    assert!(err.to_string().contains("already in use"), "{err}");
    drop(taken);
    c.destroy().await.unwrap();
    assert!(!spec.data_dir.exists());
    assert_gone(&spec).await;
}

/// As root, PostgreSQL runs as `postgres`, which cannot enter a 0700
/// directory of root's (like /root): cairn adds o+x to it. Also: an owner
/// named `postgres` is the superuser itself (RDS-style) with the spec's
/// password.
#[tokio::test]
async fn an_unreachable_parent_is_made_traversable_and_postgres_can_own() {
    let dir = TestDir::new("root");
    let private = dir.root.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (address, port) = address_and_port(45);
    let spec = ClusterSpec {
        owner: SUPERUSER.into(),
        password: "rds-style".into(),
        ..spec_in(&private.join("db"), address, port)
    };
    let mut c = cluster(spec.clone());
    c.init().await.unwrap();
    c.start().await.unwrap();
    let mode = std::fs::metadata(&private).unwrap().mode() & 0o777;
    if os::effective_uid().unwrap() == 0 {
        assert_eq!(mode, 0o701, "expected only o+x added, got {mode:o}");
    } else {
        assert_eq!(mode, 0o700, "not root: nothing to change, got {mode:o}");
    }
    let r = psql(
        &c,
        SUPERUSER,
        "rds-style",
        "select rolsuper from pg_roles where rolname = current_user",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "t");
    // A restart still bootstraps with the (updated) superuser password.
    c.stop().await.unwrap();
    c.start().await.unwrap();
    assert!(c.is_ready().await);
    c.destroy().await.unwrap();
    assert!(!spec.data_dir.exists());
    assert_gone(&spec).await;
}
