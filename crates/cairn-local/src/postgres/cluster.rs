//! One PostgreSQL cluster: init, start, stop, readiness, destroy.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Child;

use super::binaries::{Binaries, find_binaries_for};
use super::config::{
    INCLUDE_LINE, PG_HBA, PostmasterPid, bootstrap_sql, cairn_conf, last_lines,
    parse_postmaster_pid,
};
use super::error::PgError;
use super::os::{PG_ENV_VARS, RunAs, process_alive, process_cmdline, random_hex, signal};
use super::spec::{ClusterSpec, SUPERUSER};

/// Files cairn keeps in the data directory (PostgreSQL ignores them).
const MARKER_FILE: &str = "cairn-cluster.json";
const SUPERUSER_PASSWORD_FILE: &str = "cairn-superuser.password";
const CONF_FILE: &str = "cairn.conf";
const LOG_FILE: &str = "cairn-postgres.log";

/// How often a waiting loop looks again.
const POLL: Duration = Duration::from_millis(20);
/// How many log lines an error quotes.
const LOG_TAIL_LINES: usize = 20;
/// How long one `psql` may take to connect and answer.
const PSQL_TIMEOUT: Duration = Duration::from_secs(10);

/// What `init` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new cluster was made.
    Created,
    /// The cluster already matched the spec.
    Unchanged,
    /// The cluster existed; its address, port or socket directory changed in
    /// `cairn.conf` and apply from the next start.
    Reconfigured,
}

/// What `start` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The server was started (pid of the postmaster).
    Started {
        /// The postmaster's pid.
        pid: u32,
    },
    /// It was already running as the spec says; nothing was done.
    AlreadyRunning {
        /// The postmaster's pid.
        pid: u32,
    },
}

/// What `stop` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The server was running and has exited.
    Stopped,
    /// It was not running.
    NotRunning,
}

/// The cluster as seen on disk and in the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterStatus {
    /// No completed `init` in the data directory.
    NotInitialized,
    /// Initialized, no server running.
    Stopped,
    /// A server runs on the data directory.
    Running {
        /// The postmaster's pid.
        pid: u32,
    },
}

/// What `init` records, so that a second `init` can tell it is the same
/// cluster. The password is not in it (it is applied on every start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClusterRecord {
    address: std::net::Ipv4Addr,
    port: u16,
    socket_dir: PathBuf,
    owner: String,
    database: String,
    superuser: String,
    version: String,
}

/// A PostgreSQL cluster managed by cairn. Methods that start or stop the
/// server take `&mut self`: one caller drives a cluster at a time.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    bins: Binaries,
    run_as: RunAs,
    /// The server when this `Cluster` started it.
    child: Option<Child>,
    start_timeout: Duration,
    stop_timeout: Duration,
}

impl Cluster {
    /// A manager for `spec`, with the newest PostgreSQL found and run as the
    /// right user (see [`RunAs::detect`]). Checks the spec; touches nothing.
    /// For an existing cluster, the installation of its major version is
    /// preferred (see [`find_binaries_for`]).
    pub fn new(spec: ClusterSpec) -> Result<Cluster, PgError> {
        let spec = spec.validated()?;
        let version = std::fs::read_to_string(spec.data_dir.join("PG_VERSION")).ok();
        let bins = find_binaries_for(version.as_deref().map(str::trim))?;
        Cluster::with(spec, bins, RunAs::detect()?)
    }

    /// A manager with given programs and user.
    pub fn with(spec: ClusterSpec, bins: Binaries, run_as: RunAs) -> Result<Cluster, PgError> {
        Ok(Cluster {
            spec: spec.validated()?,
            bins,
            run_as,
            child: None,
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(30),
        })
    }

    /// How long `start` waits for readiness (default 60 s; crash recovery of
    /// a big cluster can take long).
    pub fn with_start_timeout(mut self, timeout: Duration) -> Cluster {
        self.start_timeout = timeout;
        self
    }

    /// How long `stop` waits after SIGINT before escalating (default 30 s).
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Cluster {
        self.stop_timeout = timeout;
        self
    }

    /// The spec, with absolute directories.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The programs used.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// Who the server runs as.
    pub fn run_as(&self) -> &RunAs {
        &self.run_as
    }

    /// The server's log (its stderr), in the data directory.
    pub fn log_path(&self) -> PathBuf {
        self.spec.data_dir.join(LOG_FILE)
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        read_tail(&self.log_path(), n)
    }

    /// Whether `init` has completed, and whether a server runs.
    pub fn status(&mut self) -> ClusterStatus {
        if let Some(pm) = self.running_postmaster() {
            return ClusterStatus::Running { pid: pm.pid };
        }
        if self.spec.data_dir.join(MARKER_FILE).is_file() {
            ClusterStatus::Stopped
        } else {
            ClusterStatus::NotInitialized
        }
    }

    /// The running postmaster's pid.
    pub fn pid(&mut self) -> Option<u32> {
        self.running_postmaster().map(|pm| pm.pid)
    }

    /// Creates the cluster, the owner role and its database (see the module
    /// documentation). Leaves the server as it found it: stopped, or running
    /// (then the role and database are brought in line at once).
    pub async fn init(&mut self) -> Result<InitOutcome, PgError> {
        let spec = self.spec.clone();
        self.prepare_dirs()?;
        let marker = spec.data_dir.join(MARKER_FILE);
        let wanted = ClusterRecord {
            address: spec.address,
            port: spec.port,
            socket_dir: spec.socket_dir.clone(),
            owner: spec.owner.clone(),
            database: spec.database.clone(),
            superuser: SUPERUSER.to_string(),
            version: self.bins.version.clone(),
        };

        if let Some(existing) = read_record(&marker)? {
            for (field, has, wants) in [
                ("owner", &existing.owner, &wanted.owner),
                ("database", &existing.database, &wanted.database),
            ] {
                if has != wants {
                    return Err(PgError::SpecMismatch {
                        data_dir: spec.data_dir.clone(),
                        field,
                        existing: has.clone(),
                        wanted: wants.clone(),
                    });
                }
            }
            let network_changed = (existing.address, existing.port, &existing.socket_dir)
                != (wanted.address, wanted.port, &wanted.socket_dir);
            if network_changed {
                self.write_config()?;
                self.write_record(
                    &marker,
                    &ClusterRecord {
                        version: existing.version.clone(),
                        ..wanted
                    },
                )?;
            }
            if let Some(pm) = self.running_postmaster() {
                self.bootstrap(&pm).await?;
            }
            return Ok(if network_changed {
                InitOutcome::Reconfigured
            } else {
                InitOutcome::Unchanged
            });
        }

        let started = Instant::now();
        if !spec.data_dir.join("PG_VERSION").is_file() {
            if !dir_is_empty(&spec.data_dir)? {
                return Err(PgError::NotACluster {
                    data_dir: spec.data_dir.clone(),
                });
            }
            self.initdb().await?;
        }
        // From here on a failure leaves a cluster without marker; the next
        // init resumes here (initdb is not repeated).
        self.write_config()?;
        if let Some(pm) = self.running_postmaster() {
            self.bootstrap(&pm).await?;
        } else {
            self.bootstrap_offline().await?;
        }
        self.write_record(&marker, &wanted)?;
        tracing::info!(
            data_dir = %spec.data_dir.display(),
            endpoint = %spec.endpoint(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "PostgreSQL cluster initialized"
        );
        Ok(InitOutcome::Created)
    }

    /// Starts the server and waits until it is ready (accepts the owner's
    /// login over TCP). A no-op when it already runs with the spec's address,
    /// port and socket directory; a server running with other ones (the spec
    /// changed) is restarted.
    pub async fn start(&mut self) -> Result<StartOutcome, PgError> {
        let spec = self.spec.clone();
        if !spec.data_dir.join(MARKER_FILE).is_file() {
            return Err(PgError::NotInitialized {
                data_dir: spec.data_dir.clone(),
            });
        }
        if let Some(pm) = self.running_postmaster() {
            if pm.status.as_deref() == Some("stopping") {
                // A shutdown under way: let it finish, then start afresh.
                let timeout = self.stop_timeout;
                if !self.wait_gone(pm.pid, timeout).await {
                    return Err(PgError::StopTimeout {
                        data_dir: spec.data_dir.clone(),
                        pid: pm.pid,
                        after: timeout,
                    });
                }
            } else {
                let same = pm.port == Some(spec.port)
                    && pm.listen.as_deref() == Some(spec.address.to_string().as_str())
                    && pm
                        .socket_dir
                        .as_deref()
                        .is_some_and(|d| same_path(d, &spec.socket_dir));
                if same {
                    // It may still be starting or recovering (a daemon that
                    // restarted mid-start): wait, but never stop it.
                    self.wait_ready(pm.pid, false, false).await?;
                    return Ok(StartOutcome::AlreadyRunning { pid: pm.pid });
                }
                tracing::info!(
                    data_dir = %spec.data_dir.display(),
                    "PostgreSQL runs with another address, port or socket directory: restarting"
                );
                self.stop().await?;
            }
        }
        check_port_free(spec.address, spec.port)?;

        let started = Instant::now();
        let child = self.spawn_server(true)?;
        let child_pid = child.id().unwrap_or(0);
        self.child = Some(child);
        let pid = self.wait_ready(child_pid, false, true).await?;
        // Role, password and database as the spec says (cheap; idempotent),
        // then the owner's own login over TCP.
        let ready = async {
            let pm = self
                .running_postmaster()
                .ok_or_else(|| self.exited_error())?;
            self.bootstrap(&pm).await?;
            self.wait_ready(pid, true, true).await
        }
        .await;
        if let Err(e) = ready {
            let _ = self.stop().await;
            return Err(e);
        }
        tracing::info!(
            endpoint = %spec.endpoint(),
            pid,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "PostgreSQL started"
        );
        Ok(StartOutcome::Started { pid })
    }

    /// Stops the server: fast shutdown (SIGINT), then SIGQUIT (immediate
    /// shutdown, recovery at next start) after the stop timeout, then SIGKILL.
    pub async fn stop(&mut self) -> Result<StopOutcome, PgError> {
        let pid = match self.running_postmaster() {
            Some(pm) => pm.pid,
            None => match self.child.as_mut().and_then(|c| c.id()) {
                // Started, but no postmaster.pid yet.
                Some(pid) if process_alive(pid) => pid,
                _ => {
                    self.reap().await;
                    return Ok(StopOutcome::NotRunning);
                }
            },
        };
        let started = Instant::now();
        let steps = [
            (Signal::SIGINT, self.stop_timeout),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ];
        for (sig, wait) in steps {
            if sig != Signal::SIGINT {
                tracing::warn!(pid, "PostgreSQL did not stop in time: sending {sig}");
            }
            signal(pid, sig)?;
            if self.wait_gone(pid, wait).await {
                self.reap().await;
                tracing::info!(
                    endpoint = %self.spec.endpoint(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "PostgreSQL stopped"
                );
                return Ok(StopOutcome::Stopped);
            }
        }
        Err(PgError::StopTimeout {
            data_dir: self.spec.data_dir.clone(),
            pid,
            after: started.elapsed(),
        })
    }

    /// Whether the server answers a real query: `psql` logs in as the owner
    /// with the password over TCP to address:port and runs `select 1`.
    pub async fn is_ready(&self) -> bool {
        self.probe().await.is_ok()
    }

    /// Stops the server and deletes the data directory (and the socket
    /// directory when that is left empty). No-op when nothing is there.
    pub async fn destroy(&mut self) -> Result<(), PgError> {
        self.stop().await?;
        let data_dir = &self.spec.data_dir;
        match tokio::fs::remove_dir_all(data_dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PgError::io(format!("remove {}", data_dir.display()), e)),
        }
        // Only when empty: it may be shared, or hold another cluster's socket.
        let _ = std::fs::remove_dir(&self.spec.socket_dir);
        tracing::info!(data_dir = %data_dir.display(), "PostgreSQL cluster destroyed");
        Ok(())
    }

    /// Resolves when the server is no longer running: at once when it is not,
    /// else when it exits. For a server this `Cluster` started, the exit
    /// status; for one it adopted (started by an earlier daemon), `None`
    /// (it is watched through its pid, every half second).
    pub async fn wait_exit(&mut self) -> Option<ExitStatus> {
        if let Some(child) = self.child.as_mut() {
            let status = child.wait().await.ok();
            self.child = None;
            return status;
        }
        while self.running_postmaster().is_some() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    // ---- internals ----

    /// The postmaster running on this data directory, from `postmaster.pid`,
    /// when that process is alive and is a PostgreSQL server.
    fn running_postmaster(&mut self) -> Option<PostmasterPid> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(_)) = child.try_wait()
        {
            self.child = None;
        }
        let text = std::fs::read_to_string(self.spec.data_dir.join("postmaster.pid")).ok()?;
        let pm = parse_postmaster_pid(&text)?;
        if !same_path(&pm.data_dir, &self.spec.data_dir) || !process_alive(pm.pid) {
            return None;
        }
        let cmdline = process_cmdline(pm.pid)?;
        (cmdline.contains("postgres") || cmdline.contains("postmaster")).then_some(pm)
    }

    /// Creates the data and socket directories with the right owner and mode,
    /// and makes their parents traversable for the server's user.
    fn prepare_dirs(&self) -> Result<(), PgError> {
        let spec = &self.spec;
        let mkdir = |dir: &Path| {
            std::fs::create_dir_all(dir)
                .map_err(|e| PgError::io(format!("create {}", dir.display()), e))
        };
        let chmod = |dir: &Path, mode: u32| {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(|e| PgError::io(format!("chmod {mode:o} {}", dir.display()), e))
        };

        // Data directory: the server's own, mode 0700 (PostgreSQL insists).
        if !spec.data_dir.exists() {
            mkdir(&spec.data_dir)?;
            self.run_as.chown(&spec.data_dir)?;
            chmod(&spec.data_dir, 0o700)?;
        } else if dir_is_empty(&spec.data_dir)? {
            self.run_as.chown(&spec.data_dir)?;
            chmod(&spec.data_dir, 0o700)?;
        }

        // Socket directory: the server creates its socket and lock file in it.
        if !spec.socket_dir.exists() {
            mkdir(&spec.socket_dir)?;
            self.run_as.chown(&spec.socket_dir)?;
            chmod(&spec.socket_dir, 0o755)?;
        } else if !self.run_as.can_write(&spec.socket_dir)? {
            if dir_is_empty(&spec.socket_dir)? {
                self.run_as.chown(&spec.socket_dir)?;
            } else {
                return Err(PgError::InvalidSpec(format!(
                    "socket_dir {} is not writable by the user PostgreSQL runs as",
                    spec.socket_dir.display()
                )));
            }
        }

        self.run_as.ensure_traversable(&spec.data_dir)?;
        self.run_as.ensure_traversable(&spec.socket_dir)?;
        Ok(())
    }

    /// `initdb` with a random superuser password, then one syncfs.
    async fn initdb(&self) -> Result<(), PgError> {
        let spec = &self.spec;
        // Random even when the owner is the superuser itself (RDS-style
        // `postgres`): the bootstrap then sets the spec's password.
        let password = random_hex(24)?;
        // initdb reads the password from a file; it must not live in the
        // (still empty) data directory, and the server's user must read it.
        let pwfile = spec
            .socket_dir
            .join(format!(".cairn-initdb-{}", std::process::id()));
        self.write_private(&pwfile, &format!("{password}\n"))?;
        let started = Instant::now();
        let output = self
            .run_as
            .command(&self.bins.initdb)
            .arg("--pgdata")
            .arg(&spec.data_dir)
            .arg(format!("--username={SUPERUSER}"))
            .arg("--auth=scram-sha-256")
            .arg("--pwfile")
            .arg(&pwfile)
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .await;
        let _ = std::fs::remove_file(&pwfile);
        let output =
            output.map_err(|e| PgError::io(format!("run {}", self.bins.initdb.display()), e))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(PgError::InitdbFailed {
                data_dir: spec.data_dir.clone(),
                status: output.status.to_string(),
                output: text.trim_end().to_string(),
            });
        }
        let initdb_ms = started.elapsed().as_millis() as u64;
        sync_filesystem(&self.bins, &self.run_as, &spec.data_dir).await?;
        tracing::info!(
            data_dir = %spec.data_dir.display(),
            initdb_ms,
            with_sync_ms = started.elapsed().as_millis() as u64,
            "initdb done"
        );
        self.write_private(&spec.data_dir.join(SUPERUSER_PASSWORD_FILE), &password)
    }

    /// Writes `cairn.conf`, the include line and `pg_hba.conf`.
    fn write_config(&self) -> Result<(), PgError> {
        let spec = &self.spec;
        self.write_private(
            &spec.data_dir.join(CONF_FILE),
            &cairn_conf(spec.address, spec.port, &spec.socket_dir),
        )?;
        let main_conf = spec.data_dir.join("postgresql.conf");
        let text = std::fs::read_to_string(&main_conf)
            .map_err(|e| PgError::io(format!("read {}", main_conf.display()), e))?;
        if !text.lines().any(|l| l.trim() == INCLUDE_LINE) {
            let mut text = text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("\n# Added by cairn: its settings for this cluster.\n");
            text.push_str(INCLUDE_LINE);
            text.push('\n');
            self.write_private(&main_conf, &text)?;
        }
        self.write_private(&spec.data_dir.join("pg_hba.conf"), PG_HBA)
    }

    /// Writes a file readable only by the server's user.
    fn write_private(&self, path: &Path, text: &str) -> Result<(), PgError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("cairn-tmp");
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
        result.map_err(|e| PgError::io(format!("write {}", tmp.display()), e))?;
        self.run_as.chown(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| PgError::io(format!("write {}", path.display()), e))
    }

    fn write_record(&self, path: &Path, record: &ClusterRecord) -> Result<(), PgError> {
        let text = serde_json::to_string_pretty(record).map_err(|e| {
            PgError::io(
                format!("encode {}", path.display()),
                std::io::Error::other(e),
            )
        })?;
        self.write_private(path, &(text + "\n"))
    }

    /// Runs a server on the unix socket only (no TCP: nothing can reach it
    /// but cairn, and the port need not be free), creates the role and the
    /// database, and stops it.
    async fn bootstrap_offline(&mut self) -> Result<(), PgError> {
        let child = self.spawn_server(false)?;
        let child_pid = child.id().unwrap_or(0);
        self.child = Some(child);
        let result = async {
            self.wait_ready(child_pid, false, true).await?;
            let pm = self
                .running_postmaster()
                .ok_or_else(|| self.exited_error())?;
            self.bootstrap(&pm).await
        }
        .await;
        let stopped = self.stop().await;
        result?;
        stopped.map(|_| ())
    }

    /// Makes the owner role (with the spec's password) and its database, as
    /// the superuser over the unix socket of the running server `pm`.
    async fn bootstrap(&self, pm: &PostmasterPid) -> Result<(), PgError> {
        let spec = &self.spec;
        let pw_path = spec.data_dir.join(SUPERUSER_PASSWORD_FILE);
        let superuser_password = std::fs::read_to_string(&pw_path)
            .map_err(|e| PgError::io(format!("read {}", pw_path.display()), e))?;
        let socket_dir = pm.socket_dir.clone().unwrap_or(spec.socket_dir.clone());
        let port = pm.port.unwrap_or(spec.port);
        let sql = bootstrap_sql(&spec.owner, &spec.password, &spec.database, SUPERUSER);
        let fail = |output: String| PgError::BootstrapFailed {
            data_dir: spec.data_dir.clone(),
            owner: spec.owner.clone(),
            database: spec.database.clone(),
            output,
        };
        let mut cmd = self.psql_command(
            &socket_dir.to_string_lossy(),
            port,
            SUPERUSER,
            &superuser_password,
            "postgres",
        );
        cmd.args(["--quiet", "--file=-"]).stdin(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| PgError::io(format!("run {}", self.bins.psql.display()), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .await
                .map_err(|e| PgError::io("write to psql", e))?;
        }
        let output = tokio::time::timeout(PSQL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| fail(format!("psql did not finish within {PSQL_TIMEOUT:?}")))?
            .map_err(|e| PgError::io("wait for psql", e))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(fail(text.trim_end().to_string()));
        }
        // An owner that is the superuser just had its password set to the
        // spec's: keep the file in step, or the next bootstrap cannot log in.
        if spec.owner == SUPERUSER && superuser_password != spec.password {
            self.write_private(&pw_path, &spec.password)?;
        }
        Ok(())
    }

    /// `psql` with the connection in the environment (never on the command
    /// line, where `ps` would show the password), no psqlrc, no prompt.
    fn psql_command(
        &self,
        host: &str,
        port: u16,
        user: &str,
        password: &str,
        database: &str,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bins.psql);
        for var in PG_ENV_VARS {
            cmd.env_remove(var);
        }
        cmd.env("PGHOST", host)
            .env("PGPORT", port.to_string())
            .env("PGUSER", user)
            .env("PGPASSWORD", password)
            .env("PGDATABASE", database)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGAPPNAME", "cairn")
            .args([
                "--no-psqlrc",
                "--no-password",
                "--no-align",
                "--tuples-only",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/")
            .kill_on_drop(true);
        cmd
    }

    /// One readiness check; the error says why not.
    async fn probe(&self) -> Result<(), String> {
        let spec = &self.spec;
        let mut cmd = self.psql_command(
            &spec.address.to_string(),
            spec.port,
            &spec.owner,
            &spec.password,
            &spec.database,
        );
        cmd.args(["--command", "select 1"]).stdin(Stdio::null());
        let output = tokio::time::timeout(PSQL_TIMEOUT, cmd.output())
            .await
            .map_err(|_| format!("psql did not answer within {PSQL_TIMEOUT:?}"))?
            .map_err(|e| format!("run {}: {e}", self.bins.psql.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && stdout.trim() == "1" {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// Spawns `postgres` (as the right user, in its own process group, its
    /// output appended to the log). `tcp: false` listens on the socket only.
    fn spawn_server(&self, tcp: bool) -> Result<Child, PgError> {
        let spec = &self.spec;
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| PgError::io(format!("open {}", log_path.display()), e))?;
        self.run_as.chown(&log_path)?;
        let log_err = log
            .try_clone()
            .map_err(|e| PgError::io(format!("open {}", log_path.display()), e))?;
        let listen = if tcp {
            spec.address.to_string()
        } else {
            String::new()
        };
        self.run_as
            .command(&self.bins.postgres)
            .arg("-D")
            .arg(&spec.data_dir)
            .arg("-h")
            .arg(listen)
            .arg("-p")
            .arg(spec.port.to_string())
            .arg("-k")
            .arg(&spec.socket_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| PgError::io(format!("run {}", self.bins.postgres.display()), e))
    }

    /// Waits until the server on this data directory reports `ready` in
    /// `postmaster.pid` and, with `tcp`, the owner can log in over TCP.
    /// Returns the postmaster's pid. On timeout the server is stopped when
    /// `stop_on_timeout`.
    async fn wait_ready(
        &mut self,
        pid_hint: u32,
        tcp: bool,
        stop_on_timeout: bool,
    ) -> Result<u32, PgError> {
        let deadline = Instant::now() + self.start_timeout;
        let mut last_probe_error = String::new();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.start_failed(status.to_string()));
            }
            match self.running_postmaster() {
                Some(pm) if pm.status.as_deref() == Some("ready") => {
                    if !tcp {
                        return Ok(pm.pid);
                    }
                    match self.probe().await {
                        Ok(()) => return Ok(pm.pid),
                        Err(e) => last_probe_error = e,
                    }
                }
                Some(_) => {}
                None if self.child.is_none() && !process_alive(pid_hint) => {
                    return Err(self.start_failed("exited".into()));
                }
                None => {}
            }
            if Instant::now() >= deadline {
                if stop_on_timeout {
                    let _ = self.stop().await;
                }
                let mut log_tail = self.log_tail(LOG_TAIL_LINES);
                if !last_probe_error.is_empty() {
                    log_tail.push_str(&format!("\n(last login attempt: {last_probe_error})"));
                }
                return Err(PgError::StartTimeout {
                    address: self.spec.address,
                    port: self.spec.port,
                    after: self.start_timeout,
                    log: self.log_path(),
                    log_tail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The error for a server that exited while starting.
    fn start_failed(&self, status: String) -> PgError {
        let log_tail = self.log_tail(LOG_TAIL_LINES);
        if let Some(line) = log_tail
            .lines()
            .find(|l| l.contains("Address already in use") || l.contains("could not bind"))
        {
            return PgError::PortInUse {
                address: self.spec.address,
                port: self.spec.port,
                detail: line.trim().to_string(),
            };
        }
        PgError::StartFailed {
            data_dir: self.spec.data_dir.clone(),
            status,
            log: self.log_path(),
            log_tail,
        }
    }

    fn exited_error(&self) -> PgError {
        self.start_failed("exited".into())
    }

    /// Waits until `pid` is gone (reaping it when it is our child).
    async fn wait_gone(&mut self, pid: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                let _ = child.try_wait();
            }
            if !process_alive(pid) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Collects our child's exit status, if any.
    async fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

/// Fails with `PortInUse` when something listens on address:port (a bind
/// test; PostgreSQL itself reports it too, this is only the clearer message).
fn check_port_free(address: std::net::Ipv4Addr, port: u16) -> Result<(), PgError> {
    match std::net::TcpListener::bind((address, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PgError::PortInUse {
            address,
            port,
            detail: String::new(),
        }),
        Err(e) => Err(PgError::io(format!("bind {address}:{port}"), e)),
    }
}

/// Flushes the data directory's file system once (`sync -f`, i.e. syncfs),
/// much faster than initdb's per-file fsyncs; falls back to `initdb
/// --sync-only` where `sync -f` is missing.
async fn sync_filesystem(bins: &Binaries, run_as: &RunAs, data_dir: &Path) -> Result<(), PgError> {
    let synced = tokio::process::Command::new("sync")
        .arg("-f")
        .arg(data_dir)
        .status()
        .await
        .is_ok_and(|s| s.success());
    if synced {
        return Ok(());
    }
    let output = run_as
        .command(&bins.initdb)
        .arg("--pgdata")
        .arg(data_dir)
        .arg("--sync-only")
        .output()
        .await
        .map_err(|e| PgError::io(format!("run {} --sync-only", bins.initdb.display()), e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(PgError::InitdbFailed {
            data_dir: data_dir.to_path_buf(),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_string(),
        })
    }
}

/// The same directory, as written or once symlinks, `.` and `..` are
/// resolved (PostgreSQL cleans up the paths it records).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn read_record(path: &Path) -> Result<Option<ClusterRecord>, PgError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PgError::io(format!("read {}", path.display()), std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PgError::io(format!("read {}", path.display()), e)),
    }
}

fn dir_is_empty(dir: &Path) -> Result<bool, PgError> {
    let mut entries =
        std::fs::read_dir(dir).map_err(|e| PgError::io(format!("read {}", dir.display()), e))?;
    Ok(entries.next().is_none())
}

/// The last `n` lines of a file (reading at most its last 64 KiB).
fn read_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    last_lines(&String::from_utf8_lossy(&bytes), n)
}
