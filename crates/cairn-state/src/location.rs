//! Where a state lives, as `--state` / `CAIRN_STATE` name it, and opening
//! it as one [`Store`] whichever the kind.

use std::fmt;
use std::path::PathBuf;

use cairn_engine::store::{StateStore, StoreResult};
use cairn_orch::job::JobStore;
use cairn_release::{HealStore, ReleaseStore};

use crate::key::KeySource;
use crate::overview::Overview;
use crate::pg::{PgStore, PgUrl};
use crate::store::SqliteStore;
use crate::transfer::Transfer;

/// Everything the CLI asks of a state, whichever store holds it.
pub trait Store:
    StateStore + JobStore + ReleaseStore + HealStore + Transfer + Overview + fmt::Debug
{
}

impl<T: StateStore + JobStore + ReleaseStore + HealStore + Transfer + Overview + fmt::Debug> Store
    for T
{
}

#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

impl Location {
    /// `postgres://…` or `postgresql://…`; `sqlite:PATH`; else a path.
    /// Other `scheme://` URLs are refused. Errors never hold a password.
    pub fn parse(text: &str) -> Result<Location, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return PgUrl::parse(text).map(Location::Postgres);
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            return Ok(Location::Sqlite(PathBuf::from(
                path.strip_prefix("//").unwrap_or(path),
            )));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "unknown state URL scheme `{scheme}://` (use postgres://…, sqlite:PATH or a path)"
            ));
        }
        Ok(Location::Sqlite(PathBuf::from(text)))
    }

    pub fn open(&self, key: KeySource) -> StoreResult<Box<dyn Store>> {
        Ok(match self {
            Location::Sqlite(path) => Box::new(SqliteStore::open(path, key)?),
            Location::Postgres(url) => Box::new(PgStore::open(url, key)?),
        })
    }
}

impl fmt::Display for Location {
    /// A path as is; a PostgreSQL URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            Location::parse("state.db").unwrap(),
            Location::Sqlite("state.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:/x/y.db").unwrap(),
            Location::Sqlite("/x/y.db".into())
        );
        let pg = Location::parse("postgresql://u:secret@h:1/d?sslmode=disable").unwrap();
        assert_eq!(pg.to_string(), "postgres://u@h:1/d?sslmode=disable");
        assert!(!format!("{pg:?}").contains("secret"));
        assert!(
            Location::parse("mysql://u@h/d")
                .unwrap_err()
                .contains("mysql://")
        );
    }
}
