//! Switchboard's last sign of life (see the `runtime_heartbeat` migration).

use sqlx::Row;

use super::{Store, StoreError, StoreResult};

impl Store {
    /// Records that Switchboard is running at `now_ms`.
    pub async fn beat(&self, now_ms: i64) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO runtime_heartbeat (id, at_ms) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET at_ms = $1",
            )
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// When Switchboard last said it was running, if ever.
    pub async fn last_beat(&self) -> StoreResult<Option<i64>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT at_ms FROM runtime_heartbeat WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.try_get(0)).transpose().map_err(StoreError::from)
        })
    }
}
