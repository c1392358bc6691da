//! A throwaway PostgreSQL cluster for tests: `initdb` into a fresh
//! directory, `postgres` on 127.0.0.1 on a free port (`fsync=off`: nothing
//! here must survive a power cut, but a server crash must lose no commit), a database per test, and the server
//! stopped (and its directory removed) when the last handle is dropped.
//!
//! It finds the programs as cairn-local does (`CAIRN_PG_BIN`, else Debian's
//! `/usr/lib/postgresql/*/bin`, newest first, else `initdb` on PATH) and,
//! run as root, runs them as the `postgres` user through `setpriv` (initdb
//! refuses root). `scripts/install-postgres` installs them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::port::free_port;

/// The superuser every test cluster has, and its password (scram over TCP).
pub const SUPERUSER: &str = "cairn";
pub const PASSWORD: &str = "cairn-test-password";

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    server: Mutex<Option<Child>>,
    as_postgres: Option<(u32, u32)>,
    /// `-c` settings after the defaults (the last of a name wins).
    settings: Vec<String>,
}

/// One database of a cluster, for one test. Holds the cluster up.
pub struct TestDb {
    pub cluster: Arc<Cluster>,
    pub name: String,
}

impl TestDb {
    /// `postgres://cairn:PASSWORD@127.0.0.1:PORT/NAME?sslmode=disable`.
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// The URL without the password (the password comes from elsewhere).
    pub fn url_without_password(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}?sslmode=disable",
            self.cluster.port, self.name
        )
    }

    /// Runs `sql` through psql in this database; its output, unaligned.
    pub fn psql(&self, sql: &str) -> String {
        self.cluster.psql(&self.name, sql)
    }
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if let Ok(real) = std::fs::canonicalize(dir.join("initdb"))
            && let Some(parent) = real.parent()
        {
            return parent.to_path_buf();
        }
    }
    panic!(
        "PostgreSQL's server programs were not found: run scripts/install-postgres (or set CAIRN_PG_BIN)"
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no `postgres` user to run PostgreSQL as (root refuses): run scripts/install-postgres"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
static N: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// The cluster the running tests share, started when none runs; it
    /// stops when the last test holding it drops its handle.
    pub fn shared() -> Arc<Cluster> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = shared.upgrade() {
            return c;
        }
        let c = Arc::new(Cluster::start());
        *shared = Arc::downgrade(&c);
        c
    }

    /// A fresh database on the shared cluster.
    pub fn database(test: &str) -> TestDb {
        let cluster = Cluster::shared();
        let name = format!(
            "t_{}_{}",
            test.chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                })
                .take(40)
                .collect::<String>(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        cluster.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        TestDb { cluster, name }
    }

    /// A cluster of its own (for a test that stops or restarts it).
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A cluster of its own with server settings (`name=value`) over the
    /// test defaults: a benchmark turns `fsync` back on.
    pub fn start_with(settings: &[&str]) -> Cluster {
        Cluster::start_with_files(settings, &[])
    }

    /// A cluster of its own serving TLS with `cert_pem` (the chain) and
    /// `key_pem`, besides plain TCP.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Cluster {
        Cluster::start_with_files(
            &[
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
            ],
            &[("data/server.crt", cert_pem), ("data/server.key", key_pem)],
        )
    }

    /// `files` (path under the cluster's directory, contents) are written
    /// after initdb, owned by the server's user and readable by it only,
    /// as PostgreSQL demands of a private key.
    fn start_with_files(settings: &[&str], files: &[(&str, &str)]) -> Cluster {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "cairn-pg-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root().then(|| (id_of("-u"), id_of("-g")));
        if let Some((uid, gid)) = as_postgres {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            server: Mutex::new(None),
            as_postgres,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        let pwfile = cluster.dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if let Some((uid, gid)) = as_postgres {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.dir.join("data"))
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-N",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for (path, text) in files {
            let path = cluster.dir.join(path);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some((uid, gid)) = as_postgres {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        cluster.port = free_port();
        cluster.run_server();
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.as_postgres {
            Some(_) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn run_server(&self) {
        let log = std::fs::File::create(self.log()).unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // No fsync: nothing here must survive a power cut. But commits
            // stay synchronous (written to the WAL before COMMIT returns, a
            // write without fsync), so that a committed row survives the
            // server's own crash (an immediate restart), as on a real server.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        *self.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(status) = self
                .server
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("postgres exited ({status}): {}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready after 60 s: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            // Bounded: a wedged server fails the test instead of hanging it.
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGOPTIONS", "-c statement_timeout=60000")
            .output()
            .expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        self.stop_with("-INT");
    }

    /// Stops the server with `signal`, as `pg_ctl stop -m` does: `-INT`
    /// fast (transactions rolled back, clients told), `-QUIT` immediate (no
    /// shutdown checkpoint, crash recovery at the next start).
    fn stop_with(&self, signal: &str) {
        let Some(mut child) = self.server.lock().unwrap().take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops and starts the server again on the same port and data
    /// (`pg_ctl restart -m fast`).
    pub fn restart(&self) {
        self.stop();
        self.run_server();
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn resume(&self) {
        self.run_server();
    }

    /// `pg_ctl restart -m immediate`: the server quits without a shutdown
    /// checkpoint and recovers from its WAL when it starts again.
    pub fn restart_immediate(&self) {
        self.stop_with("-QUIT");
        self.run_server();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `Path` helper for callers that want the data directory.
pub fn data_dir(c: &Cluster) -> &Path {
    &c.dir
}
