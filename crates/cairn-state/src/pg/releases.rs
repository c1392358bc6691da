//! `releases` on PostgreSQL: cairn-release's [`ReleaseStore`] (see
//! `crate::releases`), and `heals`: its [`HealStore`].

use cairn_release::heal::{HealRecord, HealStore};
use cairn_release::record::{ReleaseRecord, ReleaseStore, ReleaseStoreError, StoredKey};

use super::connection::col;
use super::store::PgStore;
use crate::columns::{from_json, to_json};
use crate::seal::Row;

type R<T> = Result<T, ReleaseStoreError>;

fn err(e: impl std::fmt::Display) -> ReleaseStoreError {
    ReleaseStoreError(e.to_string())
}

impl ReleaseStore for PgStore {
    fn begin_release(&self, r: &ReleaseRecord) -> R<()> {
        self.finish_release(r)
    }

    fn finish_release(&self, r: &ReleaseRecord) -> R<()> {
        let r = r.clone();
        self.tx("recording a release", move |tx, _| {
            tx.execute(
                "INSERT INTO releases (id, app, deployment, environment, version, digest, outcome, started_at, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, record = excluded.record",
                &[
                    &r.id,
                    &r.app,
                    &r.deployment,
                    &r.environment,
                    &r.version,
                    &r.digest,
                    &r.outcome.as_str(),
                    &r.started_at,
                    &to_json(&r, "a release record")?,
                ],
                "recording a release",
            )?;
            Ok(())
        })
        .map_err(err)
    }

    fn releases(&self, app: Option<&str>) -> R<Vec<ReleaseRecord>> {
        let app = app.map(str::to_owned);
        self.tx("listing releases", move |tx, _| {
            const WHAT: &str = "listing releases";
            let rows = tx.query(
                "SELECT record FROM releases WHERE $1::text IS NULL OR app = $1
                 ORDER BY started_at DESC, id DESC",
                &[&app],
                WHAT,
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let text: String = col(row, 0, WHAT)?;
                out.push(from_json(&text, "a release record")?);
            }
            Ok(out)
        })
        .map_err(err)
    }

    fn signing_key(&self, name: &str) -> R<Option<StoredKey>> {
        let name = name.to_owned();
        self.tx("reading a signing key", move |tx, sealer| {
            const WHAT: &str = "reading a signing key";
            let Some(row) = tx.query_opt(
                "SELECT public, sealed FROM signing_keys WHERE name = $1",
                &[&name],
                WHAT,
            )?
            else {
                return Ok(None);
            };
            let public: String = col(&row, 0, WHAT)?;
            let sealed: Vec<u8> = col(&row, 1, WHAT)?;
            let seed: Vec<u8> = sealer.open_json(Row::SigningKey { name: &name }, &sealed)?;
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
        let (n, k) = (name.to_owned(), key.clone());
        self.tx("keeping a signing key", move |tx, sealer| {
            let sealed = sealer.seal_json(Row::SigningKey { name: &n }, &k.seed.to_vec())?;
            tx.execute(
                "INSERT INTO signing_keys (name, public, sealed) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&n, &k.public, &sealed],
                "keeping a signing key",
            )?;
            Ok(())
        })
        .map_err(err)?;
        self.signing_key(name)?
            .ok_or_else(|| err(format!("the signing key `{name}` vanished")))
    }
}

impl HealStore for PgStore {
    fn put_heal(&self, r: &HealRecord) -> R<()> {
        let r = r.clone();
        self.tx("recording a heal", move |tx, _| {
            tx.execute(
                "INSERT INTO heals (id, app, deployment, host, outcome, open, failing_since, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome,
                     open = excluded.open, record = excluded.record",
                &[
                    &r.id,
                    &r.app,
                    &r.deployment,
                    &r.host,
                    &r.outcome.as_str(),
                    &r.is_open(),
                    &r.failing_since_ms,
                    &to_json(&r, "a heal record")?,
                ],
                "recording a heal",
            )?;
            Ok(())
        })
        .map_err(err)
    }

    fn heals(&self, app: Option<&str>, deployment: Option<&str>, open: bool) -> R<Vec<HealRecord>> {
        let (app, deployment) = (app.map(str::to_owned), deployment.map(str::to_owned));
        self.tx("listing heals", move |tx, _| {
            const WHAT: &str = "listing heals";
            let rows = tx.query(
                "SELECT record FROM heals
                 WHERE ($1::text IS NULL OR app = $1) AND ($2::text IS NULL OR deployment = $2)
                   AND (NOT $3 OR open)
                 ORDER BY failing_since DESC, id DESC",
                &[&app, &deployment, &open],
                WHAT,
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let text: String = col(row, 0, WHAT)?;
                out.push(from_json(&text, "a heal record")?);
            }
            Ok(out)
        })
        .map_err(err)
    }
}
