//! Uploads by content (see the `media_upload` migration).

use sqlx::Row;

use super::{Store, StoreError, StoreResult};

impl Store {
    /// The media URI recorded for a file's content, and whether its upload finished.
    pub async fn media_upload(&self, content_key: &str) -> StoreResult<Option<(String, bool)>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT mxc, uploaded FROM media_upload WHERE content_key = $1")
                .bind(content_key)
                .fetch_optional(pool)
                .await?;
            row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .transpose()
                .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    /// Records the media URI of a file's content (reserved, or `uploaded`).
    pub async fn put_media_upload(
        &self,
        content_key: &str,
        mxc: &str,
        uploaded: bool,
        now_ms: i64,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO media_upload (content_key, mxc, uploaded, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (content_key) \
                 DO UPDATE SET mxc = $2, uploaded = $3",
            )
            .bind(content_key)
            .bind(mxc)
            .bind(uploaded)
            .bind(now_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
