//! The `leases` table: one operation at a time per deployment.
//!
//! Every function here runs inside a `BEGIN IMMEDIATE` transaction (see
//! `SqliteStore::write`): the read of the current lease and the write that
//! follows happen under SQLite's write lock, so two processes can never
//! both see the lease free and both take it.

use std::time::Duration;

use cairn_engine::store::{Lease, Owner, StoreError, StoreResult, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::columns::owner;
use crate::error::Context;
use crate::resources::ensure_deployment;

pub(crate) fn get(conn: &Connection, deployment: &str) -> StoreResult<Option<Lease>> {
    conn.query_row(
        "SELECT run_id, owner_user, owner_host, owner_pid, operation, acquired_at, expires_at,
                owner_process
         FROM leases WHERE deployment = ?1",
        [deployment],
        |row| {
            Ok(Lease {
                deployment: deployment.into(),
                run_id: row.get(0)?,
                owner: Owner {
                    process: row.get(7)?,
                    ..owner(row, 1)?
                },
                operation: row.get(4)?,
                acquired_at: row.get(5)?,
                expires_at: row.get(6)?,
            })
        },
    )
    .optional()
    .ctx("reading the lease")
}

/// `now + ttl`, a fraction of a second counting as a whole one.
pub(crate) fn expiry(now: Timestamp, ttl: Duration) -> Timestamp {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn write(conn: &Connection, lease: &Lease) -> StoreResult<()> {
    conn.execute(
        "INSERT OR REPLACE INTO leases
             (deployment, run_id, owner_user, owner_host, owner_pid, operation,
              acquired_at, expires_at, owner_process)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            lease.deployment,
            lease.run_id,
            lease.owner.user,
            lease.owner.host,
            lease.owner.pid,
            lease.operation,
            lease.acquired_at,
            lease.expires_at,
            lease.owner.process,
        ],
    )
    .ctx("writing the lease")?;
    Ok(())
}

/// Writes `run_id`'s lease, from `now` for `ttl`: the caller has checked,
/// under the write lock, that it may.
fn hold(
    conn: &Connection,
    deployment: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    ensure_deployment(conn, deployment)?;
    let lease = granted(deployment, owner, run_id, operation, ttl, now);
    write(conn, &lease)?;
    Ok(lease)
}

/// The lease `run_id` holds once granted at `now` for `ttl` (both stores).
pub(crate) fn granted(
    deployment: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> Lease {
    Lease {
        deployment: deployment.into(),
        owner: owner.clone(),
        run_id: run_id.into(),
        operation: operation.into(),
        acquired_at: now,
        expires_at: expiry(now, ttl),
    }
}

/// Takes the lease when it is free, expired (`expires_at <= now`: its
/// holder stopped renewing, so it died or hung), or already this run's.
pub(crate) fn acquire(
    conn: &Connection,
    deployment: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    may_acquire(get(conn, deployment)?, deployment, owner, run_id, now)?;
    hold(conn, deployment, owner, run_id, operation, ttl, now)
}

/// Whether `run_id` may take the lease `held` (the current one, read under
/// the write lock): free, expired, or already this run's. Shared by both
/// stores, so that they decide alike.
pub(crate) fn may_acquire(
    held: Option<Lease>,
    deployment: &str,
    owner: &Owner,
    run_id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    if let Some(held) = held
        && held.run_id != run_id
    {
        if held.expires_at > now {
            return Err(StoreError::Locked {
                deployment: deployment.into(),
                lease: Box::new(held),
                now,
            });
        }
        tracing::warn!(
            deployment,
            old_owner = %held.owner,
            old_run = %held.run_id,
            old_operation = %held.operation,
            expired_at = held.expires_at,
            new_owner = %owner,
            "taking over an expired lease: its holder stopped renewing it",
        );
    }
    Ok(())
}

/// Whether `run_id` may take over `held` from `from_run_id`: only while it
/// is still that run's (or free, or already this run's).
pub(crate) fn may_take_over(
    held: Option<Lease>,
    deployment: &str,
    from_run_id: &str,
    run_id: &str,
    now: Timestamp,
) -> StoreResult<()> {
    if let Some(held) = held
        && held.run_id != from_run_id
        && held.run_id != run_id
    {
        return Err(StoreError::Locked {
            deployment: deployment.into(),
            lease: Box::new(held),
            now,
        });
    }
    Ok(())
}

/// Takes the lease from `from_run_id`, whose holder the caller found gone.
/// Under the write lock: if another run took it first, that one stays.
#[allow(clippy::too_many_arguments)]
pub(crate) fn take_over(
    conn: &Connection,
    deployment: &str,
    from_run_id: &str,
    owner: &Owner,
    run_id: &str,
    operation: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    may_take_over(get(conn, deployment)?, deployment, from_run_id, run_id, now)?;
    hold(conn, deployment, owner, run_id, operation, ttl, now)
}

/// Extends this run's lease. A lease that expired but that nobody took
/// over is still this run's: renewing it is safe.
pub(crate) fn renew(
    conn: &Connection,
    deployment: &str,
    run_id: &str,
    ttl: Duration,
    now: Timestamp,
) -> StoreResult<Lease> {
    match get(conn, deployment)? {
        Some(mut lease) if lease.run_id == run_id => {
            lease.expires_at = expiry(now, ttl);
            write(conn, &lease)?;
            Ok(lease)
        }
        _ => Err(StoreError::LeaseLost {
            deployment: deployment.into(),
        }),
    }
}

/// Removes the lease if `run_id` holds it; someone else's is left alone.
pub(crate) fn release(conn: &Connection, deployment: &str, run_id: &str) -> StoreResult<()> {
    conn.execute(
        "DELETE FROM leases WHERE deployment = ?1 AND run_id = ?2",
        [deployment, run_id],
    )
    .ctx("releasing the lease")?;
    Ok(())
}

pub(crate) fn force_remove(conn: &Connection, deployment: &str) -> StoreResult<Option<Lease>> {
    let lease = get(conn, deployment)?;
    if lease.is_some() {
        conn.execute("DELETE FROM leases WHERE deployment = ?1", [deployment])
            .ctx("breaking the lease")?;
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use cairn_engine::store::StateStore;

    use super::*;
    use crate::{KeySource, SqliteStore};

    const HOUR: Duration = Duration::from_secs(3600);

    fn owner(user: &str) -> Owner {
        Owner {
            user: user.into(),
            host: "box".into(),
            pid: 42,
            process: None,
        }
    }

    fn store() -> SqliteStore {
        SqliteStore::open_in_memory(KeySource::Bytes([7; 32])).unwrap()
    }

    #[test]
    fn expiry_rounds_fractions_up_and_saturates() {
        assert_eq!(expiry(100, Duration::from_secs(30)), 130);
        assert_eq!(expiry(100, Duration::from_millis(1500)), 102);
        assert_eq!(expiry(100, Duration::from_millis(1)), 101);
        assert_eq!(expiry(100, Duration::MAX), i64::MAX);
    }

    #[test]
    fn acquire_then_read_then_release() {
        let s = store();
        assert_eq!(s.lease("prod").unwrap(), None);
        let lease = s
            .acquire_lease("prod", &owner("ann"), "run-1", "up", HOUR, 1000)
            .unwrap();
        assert_eq!(
            lease,
            Lease {
                deployment: "prod".into(),
                owner: owner("ann"),
                run_id: "run-1".into(),
                operation: "up".into(),
                acquired_at: 1000,
                expires_at: 4600,
            }
        );
        assert_eq!(s.lease("prod").unwrap(), Some(lease));
        assert_eq!(s.lease("staging").unwrap(), None);
        s.release_lease("prod", "run-1").unwrap();
        assert_eq!(s.lease("prod").unwrap(), None);
    }

    #[test]
    fn the_holder_may_acquire_again() {
        let s = store();
        s.acquire_lease("prod", &owner("ann"), "run-1", "up", HOUR, 1000)
            .unwrap();
        let again = s
            .acquire_lease("prod", &owner("ann"), "run-1", "up", HOUR, 1010)
            .unwrap();
        assert_eq!(again.expires_at, 4610);
    }

    #[test]
    fn locked_until_expiry_then_taken_over() {
        let s = store();
        s.acquire_lease(
            "prod",
            &owner("ann"),
            "run-1",
            "up",
            Duration::from_secs(60),
            1000,
        )
        .unwrap();
        match s.acquire_lease("prod", &owner("bob"), "run-2", "destroy", HOUR, 1059) {
            Err(StoreError::Locked {
                deployment, lease, ..
            }) => {
                assert_eq!(deployment, "prod");
                assert_eq!(lease.owner, owner("ann"));
                assert_eq!(lease.run_id, "run-1");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let taken = s
            .acquire_lease("prod", &owner("bob"), "run-2", "destroy", HOUR, 1060)
            .unwrap();
        assert_eq!(taken.owner, owner("bob"));
        assert_eq!(s.lease("prod").unwrap(), Some(taken));
    }

    #[test]
    fn renew_extends_only_the_holders_lease() {
        let s = store();
        s.acquire_lease(
            "prod",
            &owner("ann"),
            "run-1",
            "up",
            Duration::from_secs(60),
            1000,
        )
        .unwrap();
        let renewed = s
            .renew_lease("prod", "run-1", Duration::from_secs(60), 1050)
            .unwrap();
        assert_eq!((renewed.acquired_at, renewed.expires_at), (1000, 1110));
        assert_eq!(s.lease("prod").unwrap(), Some(renewed));
        assert!(matches!(
            s.renew_lease("prod", "run-2", HOUR, 1050),
            Err(StoreError::LeaseLost { deployment }) if deployment == "prod"
        ));
        assert!(matches!(
            s.renew_lease("staging", "run-1", HOUR, 1050),
            Err(StoreError::LeaseLost { .. })
        ));
    }

    #[test]
    fn a_holder_process_round_trips_and_take_over_is_one_winner() {
        let s = store();
        let dead = Owner {
            process: Some("boot:pid:[1]:77".into()),
            ..owner("ann")
        };
        s.acquire_lease("prod", &dead, "run-1", "up", HOUR, 1000)
            .unwrap();
        assert_eq!(s.lease("prod").unwrap().unwrap().owner, dead);
        let taken = s
            .take_over_lease("prod", "run-1", &owner("bob"), "run-2", "up", HOUR, 1001)
            .unwrap();
        assert_eq!((taken.run_id.as_str(), taken.acquired_at), ("run-2", 1001));
        // A second taker that also saw run-1 finds run-2 there and stops.
        match s.take_over_lease("prod", "run-1", &owner("cat"), "run-3", "up", HOUR, 1001) {
            Err(StoreError::Locked { lease, now, .. }) => {
                assert_eq!((lease.run_id.as_str(), now), ("run-2", 1001));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        // Taking over a lease that is already free just takes it.
        s.release_lease("prod", "run-2").unwrap();
        s.take_over_lease("prod", "run-2", &owner("cat"), "run-3", "up", HOUR, 1002)
            .unwrap();
    }

    #[test]
    fn release_and_break() {
        let s = store();
        let lease = s
            .acquire_lease("prod", &owner("ann"), "run-1", "up", HOUR, 1000)
            .unwrap();
        s.release_lease("prod", "run-2").unwrap();
        assert_eq!(
            s.lease("prod").unwrap().as_ref(),
            Some(&lease),
            "released by a stranger"
        );
        assert_eq!(s.break_lease("prod").unwrap(), Some(lease));
        assert_eq!(s.lease("prod").unwrap(), None);
        assert_eq!(s.break_lease("prod").unwrap(), None);
    }
}
