//! Column codecs shared by the tables: JSON text columns and the owner
//! columns (`owner_user`, `owner_host`, `owner_pid`).

use cairn_engine::store::{Owner, StoreResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Context;

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).ctx(what)
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).ctx(what)
}

/// Reads the three owner columns starting at column `first`.
pub(crate) fn owner(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Owner> {
    Ok(Owner {
        user: row.get(first)?,
        host: row.get(first + 1)?,
        pid: row.get(first + 2)?,
        process: None,
    })
}
