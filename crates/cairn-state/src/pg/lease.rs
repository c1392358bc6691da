//! `leases` on PostgreSQL: one row per deployment. Every write first locks
//! the deployment's row (`lock_deployment`), so the read of the current
//! lease and the write that follows cannot interleave with another
//! client's: two clients never both see the lease free. The decisions are
//! SQLite's own (`crate::lease::may_acquire`, `may_take_over`).

use std::time::Duration;

use cairn_engine::store::{Lease, Owner, StoreError, StoreResult, Timestamp};

use super::connection::{Tx, col};
use super::resources::lock_deployment;
use crate::lease::{expiry, granted, may_acquire, may_take_over};

pub(crate) fn get(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<Option<Lease>> {
    const WHAT: &str = "reading the lease";
    let Some(row) = tx.query_opt(
        "SELECT run_id, owner_user, owner_host, owner_pid, owner_process, operation,
                acquired_at, expires_at
         FROM leases WHERE deployment = $1",
        &[&deployment],
        WHAT,
    )?
    else {
        return Ok(None);
    };
    let pid: i64 = col(&row, 3, WHAT)?;
    Ok(Some(Lease {
        deployment: deployment.into(),
        run_id: col(&row, 0, WHAT)?,
        owner: Owner {
            user: col(&row, 1, WHAT)?,
            host: col(&row, 2, WHAT)?,
            pid: u32::try_from(pid).unwrap_or(0),
            process: col(&row, 4, WHAT)?,
        },
        operation: col(&row, 5, WHAT)?,
        acquired_at: col(&row, 6, WHAT)?,
        expires_at: col(&row, 7, WHAT)?,
    }))
}

fn write(tx: &mut Tx<'_>, lease: &Lease, now: Timestamp) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO leases
             (deployment, run_id, owner_user, owner_host, owner_pid, owner_process, operation,
              acquired_at, renewed_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (deployment) DO UPDATE SET
             run_id = EXCLUDED.run_id, owner_user = EXCLUDED.owner_user,
             owner_host = EXCLUDED.owner_host, owner_pid = EXCLUDED.owner_pid,
             owner_process = EXCLUDED.owner_process, operation = EXCLUDED.operation,
             acquired_at = EXCLUDED.acquired_at, renewed_at = EXCLUDED.renewed_at,
             expires_at = EXCLUDED.expires_at",
        &[
            &lease.deployment,
            &lease.run_id,
            &lease.owner.user,
            &lease.owner.host,
            &i64::from(lease.owner.pid),
            &lease.owner.process,
            &lease.operation,
            &lease.acquired_at,
            &now,
            &lease.expires_at,
        ],
        "writing the lease",
    )?;
    Ok(())
}

fn hold(
    tx: &mut Tx<'_>,
    deployment: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    let lease = granted(deployment, owner, run_id, operation, ttl, now);
    write(tx, &lease, now)?;
    Ok(lease)
}

pub(crate) fn acquire(
    tx: &mut Tx<'_>,
    deployment: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    lock_deployment(tx, deployment)?;
    may_acquire(get(tx, deployment)?, deployment, owner, run_id, now)?;
    hold(tx, deployment, owner, run_id, operation, ttl, now)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn take_over(
    tx: &mut Tx<'_>,
    deployment: &str,
    from_run_id: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    lock_deployment(tx, deployment)?;
    may_take_over(get(tx, deployment)?, deployment, from_run_id, run_id, now)?;
    hold(tx, deployment, owner, run_id, operation, ttl, now)
}

/// Extends this run's lease; one statement, so no lock is needed: it
/// matches only while the row is still this run's.
pub(crate) fn renew(
    tx: &mut Tx<'_>,
    deployment: &str,
    run_id: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    let updated = tx.execute(
        "UPDATE leases SET expires_at = $3, renewed_at = $4
         WHERE deployment = $1 AND run_id = $2",
        &[&deployment, &run_id, &expiry(now, ttl), &now],
        "renewing the lease",
    )?;
    match get(tx, deployment)? {
        Some(lease) if updated > 0 && lease.run_id == run_id => Ok(lease),
        _ => Err(StoreError::LeaseLost {
            deployment: deployment.into(),
        }),
    }
}

pub(crate) fn release(tx: &mut Tx<'_>, deployment: &str, run_id: &str) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM leases WHERE deployment = $1 AND run_id = $2",
        &[&deployment, &run_id],
        "releasing the lease",
    )?;
    Ok(())
}

pub(crate) fn force_remove(tx: &mut Tx<'_>, deployment: &str) -> StoreResult<Option<Lease>> {
    lock_deployment(tx, deployment)?;
    let lease = get(tx, deployment)?;
    if lease.is_some() {
        tx.execute(
            "DELETE FROM leases WHERE deployment = $1",
            &[&deployment],
            "breaking the lease",
        )?;
    }
    Ok(lease)
}
