//! The `releases` table: cairn-release's [`ReleaseStore`], the audit trail
//! of `cairn release`. A record is written when a release starts and
//! replaced when it ends, so a killed release still shows as `running`.
//! Beside it, `heals`: cairn-release's [`HealStore`], the incidents of
//! `cairn heal`.

use cairn_release::heal::{HealRecord, HealStore};
use cairn_release::record::{ReleaseRecord, ReleaseStore, ReleaseStoreError, StoredKey};
use rusqlite::{OptionalExtension, params};

use crate::columns::{from_json, to_json};
use crate::error::Context;
use crate::seal::Row;
use crate::store::SqliteStore;

type R<T> = Result<T, ReleaseStoreError>;

fn err(e: impl std::fmt::Display) -> ReleaseStoreError {
    ReleaseStoreError(e.to_string())
}

impl ReleaseStore for SqliteStore {
    fn begin_release(&self, r: &ReleaseRecord) -> R<()> {
        self.finish_release(r)
    }

    fn finish_release(&self, r: &ReleaseRecord) -> R<()> {
        const WHAT: &str = "recording a release";
        self.write(WHAT, |tx| {
            tx.execute(
                "INSERT INTO releases (id, app, deployment, environment, version, digest, outcome, started_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, record = excluded.record",
                params![
                    r.id,
                    r.app,
                    r.deployment,
                    r.environment,
                    r.version,
                    r.digest,
                    r.outcome.as_str(),
                    r.started_at,
                    to_json(r, "a release record")?,
                ],
            )
            .ctx(WHAT)?;
            Ok(())
        })
        .map_err(err)
    }

    fn releases(&self, app: Option<&str>) -> R<Vec<ReleaseRecord>> {
        const WHAT: &str = "listing releases";
        self.read(WHAT, |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT record FROM releases WHERE ?1 IS NULL OR app = ?1
                     ORDER BY started_at DESC, rowid DESC",
                )
                .ctx(WHAT)?;
            let rows = stmt
                .query_map([app], |row| row.get::<_, String>(0))
                .ctx(WHAT)?;
            let mut out = Vec::new();
            for text in rows {
                out.push(from_json(&text.ctx(WHAT)?, "a release record")?);
            }
            Ok(out)
        })
        .map_err(err)
    }

    fn signing_key(&self, name: &str) -> R<Option<StoredKey>> {
        const WHAT: &str = "reading a signing key";
        self.read(WHAT, |tx| {
            let row: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT public, sealed FROM signing_keys WHERE name = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .ctx(WHAT)?;
            let Some((public, sealed)) = row else {
                return Ok(None);
            };
            let seed: Vec<u8> = self.sealer.open_json(Row::SigningKey { name }, &sealed)?;
            let seed: [u8; 32] = seed.try_into().map_err(|_| {
                cairn_engine::store::StoreError::Storage(format!(
                    "the signing key `{name}` is not 32 bytes"
                ))
            })?;
            Ok(Some(StoredKey { public, seed }))
        })
        .map_err(err)
    }

    fn put_signing_key(&self, name: &str, key: &StoredKey) -> R<StoredKey> {
        const WHAT: &str = "keeping a signing key";
        self.write(WHAT, |tx| {
            let sealed = self
                .sealer
                .seal_json(Row::SigningKey { name }, &key.seed.to_vec())?;
            tx.execute(
                "INSERT INTO signing_keys (name, public, sealed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, key.public, sealed],
            )
            .ctx(WHAT)?;
            Ok(())
        })
        .map_err(err)?;
        self.signing_key(name)?
            .ok_or_else(|| err(format!("the signing key `{name}` vanished")))
    }
}

impl HealStore for SqliteStore {
    fn put_heal(&self, r: &HealRecord) -> R<()> {
        const WHAT: &str = "recording a heal";
        self.write(WHAT, |tx| {
            tx.execute(
                "INSERT INTO heals (id, app, deployment, host, outcome, open, failing_since, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome,
                     open = excluded.open, record = excluded.record",
                params![
                    r.id,
                    r.app,
                    r.deployment,
                    r.host,
                    r.outcome.as_str(),
                    r.is_open(),
                    r.failing_since_ms,
                    to_json(r, "a heal record")?,
                ],
            )
            .ctx(WHAT)?;
            Ok(())
        })
        .map_err(err)
    }

    fn heals(&self, app: Option<&str>, deployment: Option<&str>, open: bool) -> R<Vec<HealRecord>> {
        const WHAT: &str = "listing heals";
        self.read(WHAT, |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT record FROM heals
                     WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR deployment = ?2)
                       AND (NOT ?3 OR open)
                     ORDER BY failing_since DESC, rowid DESC",
                )
                .ctx(WHAT)?;
            let rows = stmt
                .query_map(params![app, deployment, open], |row| {
                    row.get::<_, String>(0)
                })
                .ctx(WHAT)?;
            let mut out = Vec::new();
            for text in rows {
                out.push(from_json(&text.ctx(WHAT)?, "a heal record")?);
            }
            Ok(out)
        })
        .map_err(err)
    }
}
