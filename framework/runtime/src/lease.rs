//! The hot-standby lock: before it serves, Switchboard takes the database lease
//! ([`Lease`]). On PostgreSQL a second process waits as a standby — `/ready` says `standby`,
//! `switchboard_standby` is 1 — and takes over within about a second of the active one's
//! connection ending, first ending the old process's database sessions (so nothing it had in
//! flight lands afterwards); on SQLite a second process on the same file is refused. The
//! active process checks its lease every 2 s (a check unanswered for 2 s counts as lost), and
//! stops when it is lost.

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
/// another process holds it (PostgreSQL); with whether it took over from another process.
/// `None` when `shutdown` came first.
pub(crate) async fn take(
    url: &str,
    appservice_id: &str,
    ready: &Readiness,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<Option<(Lease, bool)>, TakeError> {
    let mut previous: Option<String> = None;
    loop {
        match Lease::try_take(url, appservice_id).await {
            Ok(LeaseAttempt::Taken(mut lease)) => {
                metrics.standby.set(0);
                if let Some(holder) = &previous {
                    match lease.fence(holder).await {
                        Ok(ended) => {
                            tracing::warn!(previous = %holder, sessions_ended = ended, "took over: the active Switchboard is gone; serving now");
                        }
                        // Serving beats waiting: the old process's writes are unlikely to be
                        // in flight still, and a role that may not end them is a setup to fix.
                        Err(e) => {
                            tracing::error!(previous = %holder, error = %e, "took over, but cannot end the old process's database sessions (the database role needs to be the same as its, or pg_signal_backend)");
                        }
                    }
                }
                return Ok(Some((lease, previous.is_some())));
            }
            Ok(LeaseAttempt::HeldBy(holder)) if Lease::allows_standby(url) => {
                if previous.as_ref() != Some(&holder) {
                    tracing::info!(active = %holder, "another Switchboard serves this registration; waiting as a hot standby");
                    previous = Some(holder);
                }
                ready.set_standby();
                metrics.standby.set(1);
            }
            Ok(LeaseAttempt::HeldBy(holder)) => {
                return Err(TakeError::InUse(holder));
            }
            // The database may be restarting: a standby keeps trying.
            Err(e) if previous.is_some() => {
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
        let checked = tokio::time::timeout(LEASE_CHECK, lease.check()).await;
        if let Err(e) = checked
            .map_err(|_| "no answer".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::error!(error = %e, "lost the database lease; stopping (a standby may serve now)");
            lost.cancel();
            return;
        }
    }
}

/// How long a process that took over waits for the appservice address the old one may still
/// hold (it stops after losing its lease, but finishes what is in flight first).
const BIND_AFTER_TAKEOVER: Duration = Duration::from_secs(30);

/// Binds the appservice address; after a takeover, an address still in use is tried again
/// for up to [`BIND_AFTER_TAKEOVER`] (two processes sharing one address hand it over).
pub(crate) async fn bind_after_takeover(
    address: std::net::SocketAddr,
    took_over: bool,
) -> std::io::Result<tokio::net::TcpListener> {
    let deadline = tokio::time::Instant::now() + BIND_AFTER_TAKEOVER;
    let mut told = false;
    loop {
        match tokio::net::TcpListener::bind(address).await {
            Err(e)
                if took_over
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                if !std::mem::replace(&mut told, true) {
                    tracing::info!(%address, "the address is still held by the previous active process; waiting for it");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            bound => return bound,
        }
    }
}
