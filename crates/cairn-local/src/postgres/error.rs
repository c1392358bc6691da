//! Errors of the PostgreSQL manager.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong managing a cluster. Every message says which cluster
/// (data directory or address) and, where PostgreSQL said why, its own words.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No usable PostgreSQL server programs on this machine.
    #[error(
        "PostgreSQL is not installed: found no directory with initdb, pg_ctl, postgres and psql \
         on PATH or in /usr/lib/postgresql/*/bin{}{}. Install it with \
         `apt-get install postgresql` (Debian/Ubuntu) or run ./scripts/install-postgres from the \
         cairn repository (it also keeps the distribution's default cluster off port 5432), or \
         set CAIRN_PG_BIN to a directory that holds these programs",
        searched_list(.searched),
        problems_list(.problems)
    )]
    NotInstalled {
        /// Directories that were looked at.
        searched: Vec<PathBuf>,
        /// Candidates that were found but unusable, and why.
        problems: Vec<String>,
    },

    /// cairn runs as root and the unprivileged user to run PostgreSQL as is missing.
    #[error(
        "cairn runs as root, and PostgreSQL refuses to run as root, but there is no `{user}` \
         system user to run it as: install Debian's postgresql package (it creates the user) \
         with ./scripts/install-postgres, or run cairn as an ordinary user"
    )]
    NoPostgresUser {
        /// The user name looked up.
        user: String,
    },

    /// cairn runs as root and cannot switch to the postgres user.
    #[error(
        "cairn runs as root and needs `setpriv` (util-linux) to run PostgreSQL as the `{user}` \
         user, but it is not on PATH: apt-get install util-linux"
    )]
    NoSetpriv {
        /// The user PostgreSQL would run as.
        user: String,
    },

    /// The cluster spec is not acceptable.
    #[error("invalid database spec: {0}")]
    InvalidSpec(String),

    /// A file system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `initdb` exited with an error.
    #[error("initdb failed for {data_dir} ({status}):\n{output}")]
    InitdbFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed (stdout and stderr).
        output: String,
    },

    /// Creating the owner role or the database failed.
    #[error("could not create role {owner:?} and database {database:?} in {data_dir}:\n{output}")]
    BootstrapFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// The owner role.
        owner: String,
        /// The database.
        database: String,
        /// psql's output.
        output: String,
    },

    /// The data directory holds something that is not a PostgreSQL cluster.
    #[error(
        "{data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION): refusing to \
         initialize over it"
    )]
    NotACluster {
        /// The data directory.
        data_dir: PathBuf,
    },

    /// The existing cluster was created with a different owner or database.
    #[error(
        "the cluster in {data_dir} was created with {field} {existing:?}, the spec asks for \
         {wanted:?}: changing it needs a new cluster (replace the database)"
    )]
    SpecMismatch {
        /// The data directory.
        data_dir: PathBuf,
        /// `owner` or `database`.
        field: &'static str,
        /// What the cluster has.
        existing: String,
        /// What the spec asks for.
        wanted: String,
    },

    /// `start` was called on a data directory that `init` has not completed.
    #[error("no initialized cluster in {data_dir}: run init first")]
    NotInitialized {
        /// The data directory.
        data_dir: PathBuf,
    },

    /// Something else already listens on the cluster's address and port.
    #[error("cannot start PostgreSQL on {address}:{port}: the address is already in use{}", detail_suffix(.detail))]
    PortInUse {
        /// The cluster's address.
        address: Ipv4Addr,
        /// The cluster's port.
        port: u16,
        /// What PostgreSQL said, when it was PostgreSQL that found out.
        detail: String,
    },

    /// The server exited while starting.
    #[error(
        "PostgreSQL for {data_dir} exited while starting ({status}); last lines of {log}:\n{log_tail}"
    )]
    StartFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// Its exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The log's last lines.
        log_tail: String,
    },

    /// The server did not become ready in time (it has been stopped again).
    #[error(
        "PostgreSQL on {address}:{port} was not ready after {after:?} (a server cairn had just \
         started is stopped again); last lines of {log}:\n{log_tail}"
    )]
    StartTimeout {
        /// The cluster's address.
        address: Ipv4Addr,
        /// The cluster's port.
        port: u16,
        /// How long was waited.
        after: Duration,
        /// The log file.
        log: PathBuf,
        /// The log's last lines.
        log_tail: String,
    },

    /// The server did not exit, even after SIGKILL.
    #[error("PostgreSQL (pid {pid}) for {data_dir} did not stop after {after:?}")]
    StopTimeout {
        /// The data directory.
        data_dir: PathBuf,
        /// The postmaster's pid.
        pid: u32,
        /// How long was waited.
        after: Duration,
    },
}

impl PgError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PgError::Io {
            context: context.into(),
            source,
        }
    }
}

fn searched_list(searched: &[PathBuf]) -> String {
    if searched.is_empty() {
        return String::new();
    }
    let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
    format!(" (searched {})", dirs.join(", "))
}

fn problems_list(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!("; unusable: {}", problems.join("; "))
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}
