//! Finding PostgreSQL's server programs.
//!
//! Debian installs them in `/usr/lib/postgresql/<major>/bin`, off `PATH`;
//! `/usr/bin/psql` is `pg_wrapper`, a Perl script that picks a version. Some
//! machines add symlinks such as `/usr/local/bin/initdb ->
//! /usr/lib/postgresql/15/bin/initdb`. So every `initdb` found is resolved to
//! the directory that really holds it, the server programs are taken from
//! that same directory (never mixing versions), and each candidate is asked
//! for its version (`postgres --version`), which also weeds out broken
//! symlinks and binaries that do not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::error::PgError;

/// Environment variable naming the one directory to take the programs from.
pub const BIN_ENV: &str = "CAIRN_PG_BIN";

/// Where Debian and Ubuntu install each PostgreSQL version.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The PostgreSQL programs cairn runs, all of one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The directory that holds the server programs.
    pub bin_dir: PathBuf,
    /// `initdb`.
    pub initdb: PathBuf,
    /// `pg_ctl`.
    pub pg_ctl: PathBuf,
    /// `postgres`, the server.
    pub postgres: PathBuf,
    /// `psql`, from the same directory when it has one.
    pub psql: PathBuf,
    /// The version `postgres --version` reports, e.g. `15.18`.
    pub version: String,
    /// The version as numbers, e.g. `[15, 18]`, for comparing.
    pub version_parts: Vec<u32>,
}

impl Binaries {
    /// The major version (`15`; `9` for 9.x).
    pub fn major(&self) -> u32 {
        self.version_parts.first().copied().unwrap_or(0)
    }
}

/// Finds initdb, pg_ctl, postgres and psql: in `$CAIRN_PG_BIN` when set,
/// else on `PATH` and in `/usr/lib/postgresql/*/bin`, newest version first
/// (on a tie, the earlier `PATH` entry wins).
pub fn find_binaries() -> Result<Binaries, PgError> {
    find_binaries_for(None)
}

/// Like [`find_binaries`], but for an existing cluster whose `PG_VERSION`
/// says `cluster_version` (`15`, `9.6`): the newest installation of that
/// major version, since a server cannot open another major version's data
/// directory. Falls back to the newest of all when none matches (starting it
/// then fails with PostgreSQL's own explanation).
pub fn find_binaries_for(cluster_version: Option<&str>) -> Result<Binaries, PgError> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(dir) = std::env::var_os(BIN_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let mut problems = Vec::new();
        return match probe(&dir, &path_dirs, &mut problems) {
            Some(b) => Ok(b),
            None => Err(PgError::NotInstalled {
                searched: vec![dir],
                problems,
            }),
        };
    }

    let mut searched = Vec::new();
    let mut dirs = Vec::new();
    for dir in &path_dirs {
        if searched.contains(dir) {
            continue;
        }
        searched.push(dir.clone());
        if dir.join("initdb").is_file() {
            dirs.push(dir.clone());
        }
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    searched.push(PathBuf::from(format!("{DEBIAN_ROOT}/*/bin")));
    if let Ok(entries) = std::fs::read_dir(DEBIAN_ROOT) {
        for entry in entries.flatten() {
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                versioned.push((parse_version_numbers(&name), bin));
            }
        }
    }
    // Newest directory name first; the real order comes from --version below.
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    dirs.extend(versioned.into_iter().map(|(_, d)| d));

    let mut problems = Vec::new();
    let mut found: Vec<Binaries> = Vec::new();
    for dir in dirs {
        if let Some(b) = probe(&dir, &path_dirs, &mut problems)
            && !found.iter().any(|f| f.postgres == b.postgres)
        {
            found.push(b);
        }
    }
    // Stable sort: equal versions keep PATH order.
    found.sort_by(|a, b| b.version_parts.cmp(&a.version_parts));
    if let Some(wanted) = cluster_version.map(parse_version_numbers)
        && !wanted.is_empty()
        && let Some(i) = found
            .iter()
            .position(|b| b.version_parts.starts_with(&wanted))
    {
        return Ok(found.swap_remove(i));
    }
    found
        .into_iter()
        .next()
        .ok_or(PgError::NotInstalled { searched, problems })
}

/// Checks one directory that has (or links to) `initdb`.
pub(crate) fn probe(
    dir: &Path,
    path_dirs: &[PathBuf],
    problems: &mut Vec<String>,
) -> Option<Binaries> {
    let initdb = match std::fs::canonicalize(dir.join("initdb")) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("{}: {e}", dir.join("initdb").display()));
            return None;
        }
    };
    let bin_dir = initdb.parent()?.to_path_buf();
    // The server programs come from initdb's real directory, or failing that
    // from beside the link that was found.
    let sibling = |name: &str| -> Option<PathBuf> {
        [bin_dir.join(name), dir.join(name)]
            .into_iter()
            .find(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok())
    };
    let (Some(pg_ctl), Some(postgres)) = (sibling("pg_ctl"), sibling("postgres")) else {
        problems.push(format!(
            "{}: initdb without pg_ctl and postgres beside it",
            dir.display()
        ));
        return None;
    };
    // psql: the same installation's when it has one, else any on PATH
    // (Debian's pg_wrapper works too, only slower).
    let psql = sibling("psql").or_else(|| {
        path_dirs
            .iter()
            .map(|d| d.join("psql"))
            .find(|p| p.is_file())
    });
    let Some(psql) = psql else {
        problems.push(format!("{}: no psql beside it or on PATH", dir.display()));
        return None;
    };
    let version = match Command::new(&postgres).arg("--version").output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            match parse_version_output(&text) {
                Some(v) => v,
                None => {
                    problems.push(format!(
                        "{}: unrecognised --version output {:?}",
                        postgres.display(),
                        text.trim()
                    ));
                    return None;
                }
            }
        }
        Ok(out) => {
            problems.push(format!(
                "{} --version failed ({}): {}",
                postgres.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Err(e) => {
            problems.push(format!("{}: {e}", postgres.display()));
            return None;
        }
    };
    Some(Binaries {
        bin_dir,
        initdb,
        pg_ctl,
        postgres,
        psql,
        version_parts: parse_version_numbers(&version),
        version,
    })
}

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` -> `15.18`.
pub(crate) fn parse_version_output(text: &str) -> Option<String> {
    let rest = text.split("(PostgreSQL)").nth(1)?;
    let word = rest.split_whitespace().next()?;
    word.starts_with(|c: char| c.is_ascii_digit())
        .then(|| word.to_string())
}

/// `15.18` -> `[15, 18]`; `16beta1` -> `[16]`; `9.6.24` -> `[9, 6, 24]`.
pub(crate) fn parse_version_numbers(text: &str) -> Vec<u32> {
    let mut parts = Vec::new();
    for piece in text.split('.') {
        let digits: String = piece.chars().take_while(|c| c.is_ascii_digit()).collect();
        match digits.parse() {
            Ok(n) => parts.push(n),
            Err(_) => break,
        }
        if digits.len() != piece.len() {
            break;
        }
    }
    parts
}
