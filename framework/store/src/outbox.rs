//! The bridges' outbox: Matrix events waiting to be delivered to a remote network.

use sqlx::Row;

use super::bridge::{portal_key, receiver_column};
use super::{Store, StoreError, StoreResult};
use switchboard_api::ids::PortalKey;

/// A Matrix event waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Queue position.
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
    /// The event as the homeserver sent it.
    pub event: String,
    /// When it was queued (ms since the epoch).
    pub queued_at: i64,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When to try next (ms since the epoch).
    pub next_attempt_at: i64,
    /// Why the last attempt failed.
    pub last_error: String,
}

impl Store {
    /// Queues a Matrix event of a portal of `bridge` for delivery at `next_attempt_at`, after
    /// `attempts` failed attempts (the last failing with `last_error`). Returns `false` (and
    /// changes nothing) if the event is queued already.
    #[allow(clippy::too_many_arguments)]
    pub async fn outbox_queue(
        &self,
        bridge: &str,
        portal: &PortalKey,
        event_id: &str,
        event: &str,
        now: i64,
        attempts: i64,
        next_attempt_at: i64,
        last_error: &str,
    ) -> StoreResult<bool> {
        on_pool!(self, pool => Ok(sqlx::query(
                "INSERT INTO bridge_outbox (bridge_id, chat_id, receiver, event_id, event, \
                 queued_at, attempts, next_attempt_at, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .bind(event_id)
            .bind(event)
            .bind(now)
            .bind(attempts)
            .bind(next_attempt_at)
            .bind(last_error)
            .execute(pool)
            .await?
            .rows_affected()
            > 0))
    }

    /// The portals of `bridge` with events waiting.
    pub async fn outbox_portals(&self, bridge: &str) -> StoreResult<Vec<PortalKey>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT DISTINCT chat_id, receiver FROM bridge_outbox WHERE bridge_id = $1",
            )
            .bind(bridge)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok(portal_key(r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// The oldest event waiting in a portal of `bridge`.
    pub async fn outbox_head(
        &self,
        bridge: &str,
        portal: &PortalKey,
    ) -> StoreResult<Option<OutboxEntry>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT seq, event_id, event, queued_at, attempts, next_attempt_at, last_error \
                 FROM bridge_outbox WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3 \
                 ORDER BY seq LIMIT 1",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok(OutboxEntry {
                    seq: r.try_get(0)?,
                    event_id: r.try_get(1)?,
                    event: r.try_get(2)?,
                    queued_at: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    next_attempt_at: r.try_get(5)?,
                    last_error: r.try_get(6)?,
                })
            })
            .transpose()
            .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    /// Records a failed attempt: try again at `next_attempt_at`.
    pub async fn outbox_retry_later(
        &self,
        seq: i64,
        next_attempt_at: i64,
        error: &str,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE bridge_outbox SET attempts = attempts + 1, next_attempt_at = $2, \
                 last_error = $3 WHERE seq = $1",
            )
            .bind(seq)
            .bind(next_attempt_at)
            .bind(error)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Removes an entry (delivered, or given up on).
    pub async fn outbox_remove(&self, seq: i64) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM bridge_outbox WHERE seq = $1")
                .bind(seq)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// How many events wait in the outbox of `bridge`.
    pub async fn outbox_count(&self, bridge: &str) -> StoreResult<i64> {
        on_pool!(self, pool => Ok(sqlx::query("SELECT COUNT(*) FROM bridge_outbox WHERE bridge_id = $1")
            .bind(bridge)
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?))
    }

    /// How many events wait in the outbox, of every bridge.
    pub async fn outbox_depth(&self) -> StoreResult<i64> {
        on_pool!(self, pool => Ok(sqlx::query("SELECT COUNT(*) FROM bridge_outbox")
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?))
    }
}
