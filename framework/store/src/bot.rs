//! Bots' own data (JSON by key) and their audit log.

use sqlx::Row;

pub use switchboard_api::host::AuditRecord;

use super::{Store, StoreError, StoreResult};

impl Store {
    /// The data `bot` stored under `key`, if any.
    pub async fn bot_data(&self, bot: &str, key: &str) -> StoreResult<Option<String>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT data FROM bot_data WHERE bot_id = $1 AND key = $2")
                .bind(bot)
                .bind(key)
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.try_get(0)).transpose().map_err(StoreError::from)
        })
    }

    /// Stores `data` (JSON) under `key` for `bot`, replacing what was there.
    pub async fn put_bot_data(&self, bot: &str, key: &str, data: &str) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bot_data (bot_id, key, data) VALUES ($1, $2, $3) \
                 ON CONFLICT (bot_id, key) DO UPDATE SET data = $3",
            )
            .bind(bot)
            .bind(key)
            .bind(data)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Appends a command run to `bot`'s audit log.
    pub async fn add_audit(&self, bot: &str, record: &AuditRecord) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bot_audit (bot_id, at_ms, sender, room_id, command, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(bot)
            .bind(record.at_ms)
            .bind(&record.sender)
            .bind(&record.room_id)
            .bind(&record.command)
            .bind(&record.outcome)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The latest `limit` entries of `bot`'s audit log, newest first.
    pub async fn audit_log(&self, bot: &str, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT at_ms, sender, room_id, command, outcome FROM bot_audit \
                 WHERE bot_id = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(bot)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditRecord {
                        at_ms: r.try_get(0)?,
                        sender: r.try_get(1)?,
                        room_id: r.try_get(2)?,
                        command: r.try_get(3)?,
                        outcome: r.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }
}
