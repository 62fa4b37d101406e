//! The hot-standby lock: before it serves, Switchboard takes the database lease
//! ([`Lease`]). On PostgreSQL a second process waits as a standby — `/ready` says `standby`,
//! `switchboard_standby` is 1 — and takes over within about a second of the active one's
//! connection ending; on SQLite a second process on the same file is refused. The active
//! process checks its lease every few seconds, and stops at once when it is lost.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, Readiness};
use crate::store::{Lease, LeaseAttempt, StoreError};

/// Why the lease could not be taken.
#[derive(Debug)]
pub(crate) enum TakeError {
    /// Another process serves from the same SQLite file (who, as its lock file says).
    InUse(String),
    /// The database failed.
    Store(StoreError),
}

/// How often a standby tries to take the lease.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// How often the active process checks that it still holds the lease.
const LEASE_CHECK: Duration = Duration::from_secs(2);

/// Takes the lease of `appservice_id` in the database at `url`, waiting as a standby while
/// another process holds it (PostgreSQL). `None` when `shutdown` came first.
pub(crate) async fn take(
    url: &str,
    appservice_id: &str,
    ready: &Readiness,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<Lease>, TakeError> {
    let mut announced = false;
    loop {
        match Lease::try_take(url, appservice_id).await {
            Ok(LeaseAttempt::Taken(lease)) => {
                metrics.standby.set(0);
                if announced {
                    tracing::warn!("took over: the active Switchboard is gone; serving now");
                }
                return Ok(Some(lease));
            }
            Ok(LeaseAttempt::HeldBy(holder)) if Lease::allows_standby(url) => {
                if !announced {
                    tracing::info!(active = %holder, "another Switchboard serves this registration; waiting as a hot standby");
                    announced = true;
                }
                ready.set_standby();
                metrics.standby.set(1);
            }
            Ok(LeaseAttempt::HeldBy(holder)) => {
                return Err(TakeError::InUse(holder));
            }
            // The database may be restarting: a standby keeps trying.
            Err(e) if announced => {
                tracing::warn!(error = %e, "cannot reach the database for the lease; retrying");
            }
            Err(e) => return Err(TakeError::Store(e)),
        }
        tokio::select! {
            () = tokio::time::sleep(STANDBY_RETRY) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Checks the lease until `shutdown`; cancels `lost` (and returns) when it is gone.
pub(crate) async fn keep(mut lease: Lease, lost: CancellationToken, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(LEASE_CHECK) => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = lease.check().await {
            tracing::error!(error = %e, "lost the database lease; stopping (a standby may serve now)");
            lost.cancel();
            return;
        }
    }
}
