//! What a cluster should be (`ClusterSpec`), checked before anything is
//! made; below `cluster`, which makes it so.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::error::PgError;

/// The longest unix socket path Linux accepts (`sun_path` is 108 bytes with
/// its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The PostgreSQL superuser every cluster gets (its password is random and
/// stays in the data directory; the owner is an ordinary role unless the
/// spec names `postgres` as the owner, RDS-style).
pub const SUPERUSER: &str = "postgres";

/// What a cluster should be.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The data directory (`PGDATA`). Created when missing; must be empty or
    /// hold a cluster.
    pub data_dir: PathBuf,
    /// Where the unix socket `.s.PGSQL.<port>` goes; dedicated to the cluster
    /// (or at least writable by the user PostgreSQL runs as).
    pub socket_dir: PathBuf,
    /// The loopback address (127.x.y.z) it listens on, and only on it.
    pub address: Ipv4Addr,
    /// Its TCP port.
    pub port: u16,
    /// The role that owns the database and logs in with `password`.
    pub owner: String,
    /// The owner's password.
    pub password: String,
    /// The database created for the owner.
    pub database: String,
}

impl std::fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("data_dir", &self.data_dir)
            .field("socket_dir", &self.socket_dir)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("owner", &self.owner)
            .field("password", &"(secret)")
            .field("database", &self.database)
            .finish()
    }
}

impl ClusterSpec {
    /// The endpoint clients use, `address:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// The unix socket's path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// Checks the spec and makes its directories absolute.
    pub fn validated(&self) -> Result<ClusterSpec, PgError> {
        let bad = |m: String| Err(PgError::InvalidSpec(m));
        if !self.address.is_loopback() {
            return bad(format!(
                "address {} is not a loopback address (127.x.y.z): the local target never \
                 listens elsewhere",
                self.address
            ));
        }
        if self.port == 0 {
            return bad("port 0: a database needs a fixed port".into());
        }
        check_name("owner", &self.owner)?;
        check_name("database", &self.database)?;
        if self.owner.starts_with("pg_") {
            return bad(format!(
                "owner {:?}: role names starting with pg_ are reserved by PostgreSQL",
                self.owner
            ));
        }
        if self.password.is_empty() {
            return bad("the owner's password is empty".into());
        }
        if self.password.contains('\0') {
            return bad("the owner's password contains a NUL character".into());
        }
        let absolute = |p: &PathBuf, what: &str| {
            if p.as_os_str().is_empty() {
                return Err(PgError::InvalidSpec(format!("{what} is empty")));
            }
            std::path::absolute(p)
                .map_err(|e| PgError::io(format!("make {what} {} absolute", p.display()), e))
        };
        let data_dir = absolute(&self.data_dir, "data_dir")?;
        let socket_dir = absolute(&self.socket_dir, "socket_dir")?;
        if socket_dir.starts_with(&data_dir) {
            return bad(format!(
                "socket_dir {} is inside data_dir {}: initdb needs an empty data directory",
                socket_dir.display(),
                data_dir.display()
            ));
        }
        let spec = ClusterSpec {
            data_dir,
            socket_dir,
            ..self.clone()
        };
        let socket = spec.socket_path();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return bad(format!(
                "the unix socket path {} is {} bytes, longer than the {MAX_SOCKET_PATH} Linux \
                 allows: choose a shorter socket_dir",
                socket.display(),
                socket.as_os_str().len()
            ));
        }
        Ok(spec)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), PgError> {
    if name.is_empty() {
        return Err(PgError::InvalidSpec(format!("{what} is empty")));
    }
    if name.len() > 63 {
        return Err(PgError::InvalidSpec(format!(
            "{what} {name:?} is longer than PostgreSQL's 63 bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(PgError::InvalidSpec(format!(
            "{what} {name:?} contains a control character"
        )));
    }
    Ok(())
}
