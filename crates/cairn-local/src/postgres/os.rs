//! The operating-system side: who PostgreSQL runs as, directory ownership
//! and permissions, and processes. Linux only (as is the local target: it
//! relies on all of 127.0.0.0/8 being routed to `lo`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::error::PgError;

/// The system user PostgreSQL runs as when cairn is root (Debian's package
/// creates it).
pub const POSTGRES_USER: &str = "postgres";

/// An account: name, uid, gid and its supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (for the traversal check).
    pub groups: Vec<u32>,
}

/// Who PostgreSQL's programs run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// cairn is not root: the programs run as cairn's own user.
    CurrentUser,
    /// cairn is root: the programs run as this unprivileged user, through
    /// `setpriv` (which `exec`s, so the supervised child *is* the server).
    User(Account),
}

impl RunAs {
    /// Root runs PostgreSQL as [`POSTGRES_USER`]; anyone else as themself.
    pub fn detect() -> Result<RunAs, PgError> {
        if effective_uid()? != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let has_setpriv = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(SETPRIV).is_file()))
            .unwrap_or(false);
        if !has_setpriv {
            return Err(PgError::NoSetpriv {
                user: POSTGRES_USER.to_string(),
            });
        }
        match lookup_account(POSTGRES_USER)? {
            Some(account) => Ok(RunAs::User(account)),
            None => Err(PgError::NoPostgresUser {
                user: POSTGRES_USER.to_string(),
            }),
        }
    }

    /// A command that runs `program` as this user, with `/` as its working
    /// directory (the caller's may be unreachable for that user, e.g. /root).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = match self {
            RunAs::CurrentUser => Command::new(program),
            RunAs::User(account) => {
                let mut cmd = Command::new(SETPRIV);
                cmd.arg(format!("--reuid={}", account.uid))
                    .arg(format!("--regid={}", account.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program);
                // HOME/USER of root mean nothing to the postgres user.
                cmd.env("USER", &account.name)
                    .env("LOGNAME", &account.name)
                    .env_remove("HOME");
                cmd
            }
        };
        cmd.current_dir("/");
        // The programs get every location on their command line; a stray
        // PGDATA/PGPORT from cairn's environment must not change them.
        for var in PG_ENV_VARS {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Makes `path` (which cairn just created or that is dedicated to the
    /// cluster) belong to the run-as user. No-op for [`RunAs::CurrentUser`].
    pub fn chown(&self, path: &Path) -> Result<(), PgError> {
        if let RunAs::User(account) = self {
            std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).map_err(|e| {
                PgError::io(format!("chown {} to {}", path.display(), account.name), e)
            })?;
        }
        Ok(())
    }

    /// Makes sure the run-as user can enter every directory above `dir`
    /// (PostgreSQL must reach its data directory by path, and chdir into it).
    ///
    /// A directory that the user cannot traverse gets the search bit for
    /// others (`o+x`) added, and nothing else: this lets any local user pass
    /// through it to a path they already know, but not list it or read
    /// anything in it. That is what it takes when cairn's state lives under
    /// `/root` (mode 0700 on Debian). Each change is logged and returned.
    pub fn ensure_traversable(&self, dir: &Path) -> Result<Vec<PathBuf>, PgError> {
        let RunAs::User(account) = self else {
            return Ok(Vec::new());
        };
        let mut changed = Vec::new();
        let ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
        // From `/` down, so the log reads in path order.
        for ancestor in ancestors.into_iter().rev() {
            let meta = std::fs::metadata(ancestor)
                .map_err(|e| PgError::io(format!("inspect {}", ancestor.display()), e))?;
            if can_traverse(account, meta.uid(), meta.gid(), meta.mode()) {
                continue;
            }
            let mode = meta.mode() & 0o7777;
            std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))
                .map_err(|e| {
                    PgError::io(
                        format!(
                            "add o+x to {} so that user {} can reach the database directory",
                            ancestor.display(),
                            account.name
                        ),
                        e,
                    )
                })?;
            tracing::warn!(
                directory = %ancestor.display(),
                user = %account.name,
                "added o+x (search only) so that PostgreSQL, running as {}, can reach its directory",
                account.name
            );
            changed.push(ancestor.to_path_buf());
        }
        Ok(changed)
    }

    /// Whether the run-as user may create files in `dir` (by mode bits).
    pub fn can_write(&self, dir: &Path) -> Result<bool, PgError> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| PgError::io(format!("inspect {}", dir.display()), e))?;
        Ok(match self {
            RunAs::CurrentUser => meta.uid() == effective_uid()? || meta.mode() & 0o002 != 0,
            RunAs::User(account) => {
                permission_bits(account, meta.uid(), meta.gid(), meta.mode()) & 0o3 == 0o3
            }
        })
    }
}

/// Variables of libpq and the server programs that could redirect them.
pub(crate) const PG_ENV_VARS: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGTARGETSESSIONATTRS",
    "PGCLUSTER",
    "PGCONNECT_TIMEOUT",
    "PGAPPNAME",
    "PGTZ",
    "PGDATESTYLE",
    "PGCLIENTENCODING",
];

const SETPRIV: &str = "setpriv";

/// The user's rwx bits (0..=7) that apply to a file with this owner and mode.
fn permission_bits(account: &Account, owner: u32, group: u32, mode: u32) -> u32 {
    if account.uid == owner {
        (mode >> 6) & 7
    } else if account.gid == group || account.groups.contains(&group) {
        (mode >> 3) & 7
    } else {
        mode & 7
    }
}

/// Whether `account` may search (enter) a directory with this owner and mode.
pub(crate) fn can_traverse(account: &Account, owner: u32, group: u32, mode: u32) -> bool {
    permission_bits(account, owner, group, mode) & 1 == 1
}

/// The effective uid, from `/proc/self/status` (the crate forbids `unsafe`,
/// and nix's `user` feature is not enabled).
pub fn effective_uid() -> Result<u32, PgError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| PgError::io("read /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .ok_or_else(|| {
            PgError::io(
                "read the effective uid",
                std::io::Error::other("no Uid line in /proc/self/status"),
            )
        })
}

/// Looks a user up with `getent passwd` (NSS-aware) and `id -G`, falling
/// back to `/etc/passwd` when getent is missing.
fn lookup_account(name: &str) -> Result<Option<Account>, PgError> {
    let passwd_line = match std::process::Command::new("getent")
        .args(["passwd", name])
        .output()
    {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        // 2: no such user.
        Ok(_) => None,
        Err(_) => std::fs::read_to_string("/etc/passwd")
            .map_err(|e| PgError::io("read /etc/passwd", e))?
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .map(str::to_string),
    };
    let Some(line) = passwd_line else {
        return Ok(None);
    };
    let fields: Vec<&str> = line.split(':').collect();
    let (Some(uid), Some(gid)) = (
        fields.get(2).and_then(|s| s.parse().ok()),
        fields.get(3).and_then(|s| s.parse().ok()),
    ) else {
        return Ok(None);
    };
    let groups = std::process::Command::new("id")
        .args(["-G", name])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Account {
        name: name.to_string(),
        uid,
        gid,
        groups,
    }))
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// A process's command line, arguments joined by spaces.
pub fn process_cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// Sends a signal; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) -> Result<(), PgError> {
    let Ok(raw) = i32::try_from(pid) else {
        return Ok(());
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(PgError::io(
            format!("send {sig} to PostgreSQL (pid {pid})"),
            std::io::Error::from(e),
        )),
    }
}

/// `n` random bytes from the operating system, as hex.
pub fn random_hex(n: usize) -> Result<String, PgError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| PgError::io("drawing random bytes", std::io::Error::other(e.to_string())))?;
    Ok(hex::encode(bytes))
}
