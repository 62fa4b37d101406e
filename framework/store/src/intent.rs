//! Intents of requests that must not be repeated blindly (see the `request_intent` migration).

use sqlx::Row;

use super::{Store, StoreError, StoreResult};

/// A recorded intent: its nonce, and whether an earlier attempt left it (so the thing may
/// exist already and must be looked up first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// What the request carries so that its result can be recognised.
    pub nonce: String,
    /// `true` when the intent was recorded by an earlier attempt that did not finish.
    pub resumed: bool,
}

impl Store {
    /// Records the intent to create `subject` (within `scope`) with `fresh_nonce`, or returns
    /// the intent an earlier unfinished attempt recorded.
    pub async fn begin_intent(
        &self,
        scope: &str,
        subject: &str,
        fresh_nonce: &str,
        now_ms: i64,
    ) -> StoreResult<Intent> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO request_intent (scope, subject, nonce, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (scope, subject) DO NOTHING",
            )
            .bind(scope)
            .bind(subject)
            .bind(fresh_nonce)
            .bind(now_ms)
            .execute(pool)
            .await?;
            let nonce: String = sqlx::query(
                "SELECT nonce FROM request_intent WHERE scope = $1 AND subject = $2",
            )
            .bind(scope)
            .bind(subject)
            .fetch_one(pool)
            .await?
            .try_get(0)
            .map_err(StoreError::from)?;
            let resumed = nonce != fresh_nonce;
            Ok(Intent { nonce, resumed })
        })
    }

    /// Forgets the intent for `subject`: its result is stored (or it was not carried out).
    pub async fn end_intent(&self, scope: &str, subject: &str) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM request_intent WHERE scope = $1 AND subject = $2")
                .bind(scope)
                .bind(subject)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
