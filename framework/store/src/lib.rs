//! Persistent state on sqlx: SQLite (WAL, the embedded default) or PostgreSQL, chosen by the
//! database URL. Both backends run the same SQL text (`$n` placeholders work on both) and the
//! same conformance tests; migrations are embedded per backend and run at start.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

mod config;

pub use config::{DatabaseConfig, SqliteSync, redact_url_password};

/// Most rows bound in one multi-row statement (PostgreSQL allows 65535 parameters).
const ROWS_PER_STATEMENT: usize = 2000;

/// The stored form of a batch: a JSON array of `[kind, room_id, event JSON as a string]`.
fn encode_batch(events: &[NewInboxEvent]) -> StoreResult<String> {
    let entries: Vec<(&str, Option<&str>, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.room_id.as_deref(), e.body.as_str()))
        .collect();
    serde_json::to_string(&entries).map_err(|e| StoreError::Query(sqlx::Error::Encode(Box::new(e))))
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connecting to the database failed.
    #[error("cannot open the database {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Underlying error.
        source: sqlx::Error,
    },
    /// Running the embedded migrations failed.
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Result type of the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// The database: one of the two backends.
#[derive(Clone, Debug)]
pub enum Store {
    /// Embedded SQLite file in WAL mode.
    Sqlite(SqlitePool),
    /// PostgreSQL server.
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

mod bot;
mod bridge;
mod crypto;
mod group;
mod heartbeat;
mod intent;
mod lease;
mod login;
mod media;
mod outbox;

pub use bot::AuditRecord;
pub use bridge::{MessageRecord, PortalRecord};
pub use crypto::{CryptoItem, CryptoWrite};
pub use group::{GroupWrite, MessageKeys};
pub use intent::Intent;
pub use lease::{Lease, LeaseAttempt};
pub use login::LoginRecord;
pub use outbox::OutboxEntry;

/// An event to put into the inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInboxEvent {
    /// Which list of the transaction it came from (`pdu`, `ephemeral`, `to_device`, …).
    pub kind: String,
    /// The event id, for room events (remembered to drop the event if it comes again).
    pub event_id: Option<String>,
    /// The room it belongs to, if any (the ordering key).
    pub room_id: Option<String>,
    /// The event's JSON, exactly as received.
    pub body: String,
}

/// An event stored in the inbox, not yet handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxRow {
    /// Arrival order; events of one room are handled in this order.
    pub seq: i64,
    /// The batch (stored transaction) it belongs to: the sequence number of the batch's first
    /// event. A batch leaves the inbox when all its events are handled.
    pub batch: i64,
    /// Transaction it arrived in.
    pub txn_id: String,
    /// Which list of the transaction it came from.
    pub kind: String,
    /// The room it belongs to, if any.
    pub room_id: Option<String>,
    /// The event's JSON.
    pub body: String,
}

pub use switchboard_client::ManagedUser;

/// The homeserver client remembers the users it set up, and their rooms, in the database.
#[async_trait::async_trait]
impl switchboard_client::ManagedUsers for Store {
    async fn managed_user(
        &self,
        user_id: &ruma::UserId,
    ) -> Result<Option<ManagedUser>, switchboard_client::MemoryError> {
        Ok(Store::managed_user(self, user_id.as_str()).await?)
    }

    async fn put_managed_user(
        &self,
        user_id: &ruma::UserId,
        user: &ManagedUser,
    ) -> Result<(), switchboard_client::MemoryError> {
        Ok(Store::put_managed_user(self, user_id.as_str(), user).await?)
    }

    async fn is_member(
        &self,
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
    ) -> Result<bool, switchboard_client::MemoryError> {
        Ok(Store::is_member(self, room_id.as_str(), user_id.as_str()).await?)
    }

    async fn set_member(
        &self,
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        joined: bool,
    ) -> Result<(), switchboard_client::MemoryError> {
        Ok(Store::set_member(self, room_id.as_str(), user_id.as_str(), joined).await?)
    }
}

/// A failing database is a passing condition: what needed it is retried later.
impl From<StoreError> for switchboard_api::PluginError {
    fn from(error: StoreError) -> Self {
        Self::transient(error)
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs the migrations.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        sqlite_sync: SqliteSync,
    ) -> StoreResult<Self> {
        let connect_err = |source| StoreError::Connect {
            url: redact_url_password(url),
            source,
        };
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Named after this process, so that a standby taking over can end what this one
            // still has in flight (see `Lease::fence`).
            let options = PgConnectOptions::from_str(url)
                .map_err(connect_err)?
                .application_name(&format!("switchboard {}", lease::this_process()));
            // One direct attempt first, so a wrong URL fails at once instead of after the
            // pool's acquire timeout.
            sqlx::Connection::close(
                <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
                    .await
                    .map_err(connect_err)?,
            )
            .await
            .map_err(connect_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(options)
                .await
                .map_err(connect_err)?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Store::Postgres(pool)
        } else {
            let options = SqliteConnectOptions::from_str(url).map_err(connect_err)?;
            if let Some(dir) = options.get_filename().parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match sqlite_sync {
                    SqliteSync::Full => SqliteSynchronous::Full,
                    SqliteSync::Normal => SqliteSynchronous::Normal,
                })
                .busy_timeout(Duration::from_secs(30))
                // 8 MiB of page cache per connection: the inbox tables stay in memory.
                .pragma("cache_size", "-8192")
                .pragma("temp_store", "memory");
            // One connection: SQLite serialises writers anyway, and with several connections
            // each write invalidates the others' page caches and makes them wait on locks.
            // No ping before each query (sqlx's default): the database is in this process, and
            // each ping is one more round trip to the connection's thread, which on a busy
            // machine may wait a scheduler slice to run.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(connect_err)?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Store::Sqlite(pool)
        };
        Ok(store)
    }

    /// Which backend this is, for logs (`sqlite` or `postgres`).
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (after a final WAL checkpoint on SQLite).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    /// Stores a transaction and its events as one batch row, in one statement. `txn_key`
    /// identifies the transaction (id and body digest); the events get the sequence numbers
    /// `first_seq`, `first_seq + 1`, … in the order given, and a transaction without events
    /// still takes `first_seq` (the caller serialises inserts, keeps the counter — see
    /// [`Store::inbox_max_seq`] — and has dropped room events it accepted before, see
    /// [`Store::inbox_recent_event_ids`]). Returns `false` when the transaction was seen
    /// before (nothing is stored).
    ///
    /// One statement returning no rows, appended in key order: on SQLite every statement is a
    /// hand-off to the database thread, and random index writes per event would dirty a page
    /// each.
    pub async fn inbox_insert(
        &self,
        txn_key: &str,
        received_at_ms: i64,
        first_seq: i64,
        events: &[NewInboxEvent],
    ) -> StoreResult<bool> {
        let encoded = if events.is_empty() {
            None
        } else {
            Some(encode_batch(events)?)
        };
        let ids: Vec<&str> = events
            .iter()
            .filter_map(|e| e.event_id.as_deref())
            .collect();
        on_pool!(self, pool => {
            let inserted = sqlx::query(
                "INSERT INTO inbox_batch \
                 (first_seq, event_count, txn_id, received_at, event_ids, events) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (txn_id) DO NOTHING",
            )
            .bind(first_seq)
            .bind(i64::try_from(events.len()).unwrap_or(i64::MAX))
            .bind(txn_key)
            .bind(received_at_ms)
            .bind(ids.join("\n"))
            .bind(encoded)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(inserted > 0)
        })
    }

    /// The ids of the room events in the most recent batches (handled or not, within the
    /// retention), newest first, at most `limit`.
    pub async fn inbox_recent_event_ids(&self, limit: usize) -> StoreResult<Vec<String>> {
        use futures_util::TryStreamExt;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        on_pool!(self, pool => {
            let mut rows = sqlx::query("SELECT event_ids FROM inbox_batch ORDER BY first_seq DESC")
                .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                let ids: &str = row.try_get(0)?;
                for id in ids.rsplit('\n').filter(|id| !id.is_empty()) {
                    out.push(id.to_owned());
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            Ok(out)
        })
    }

    /// The highest sequence number given out so far (0 when the inbox is empty).
    pub async fn inbox_max_seq(&self) -> StoreResult<i64> {
        on_pool!(self, pool => Ok(sqlx::query(
                "SELECT first_seq + CASE WHEN event_count > 0 THEN event_count - 1 ELSE 0 END \
                 FROM inbox_batch ORDER BY first_seq DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
            .map(|row| row.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0)))
    }

    /// Every event of the batches not yet handled completely, in arrival order. A batch whose
    /// stored JSON does not decode (never written by Switchboard) is logged and left in place.
    pub async fn inbox_pending(&self) -> StoreResult<Vec<InboxRow>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT first_seq, txn_id, events FROM inbox_batch \
                 WHERE events IS NOT NULL ORDER BY first_seq",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::new();
            for row in rows {
                let batch: i64 = row.try_get(0)?;
                let txn_id: String = row.try_get(1)?;
                let events: String = row.try_get(2)?;
                let decoded: Vec<(String, Option<String>, String)> = match serde_json::from_str(&events) {
                    Ok(d) => d,
                    Err(error) => {
                        tracing::error!(batch, %error, "an inbox batch does not decode; left in the database");
                        continue;
                    }
                };
                for (seq, (kind, room_id, body)) in (batch..).zip(decoded) {
                    out.push(InboxRow { seq, batch, txn_id: txn_id.clone(), kind, room_id, body });
                }
            }
            Ok(out)
        })
    }

    /// Number of events in batches not yet handled completely.
    pub async fn inbox_depth(&self) -> StoreResult<i64> {
        on_pool!(self, pool => Ok(sqlx::query(
                "SELECT CAST(COALESCE(SUM(event_count), 0) AS BIGINT) FROM inbox_batch \
                 WHERE events IS NOT NULL",
            )
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?))
    }

    /// Records the handling of these batches (by their first sequence number) as done: their
    /// events leave the inbox (their ids stay for the retention period).
    pub async fn inbox_batches_done(&self, batches: &[i64]) -> StoreResult<()> {
        on_pool!(self, pool => {
            for chunk in batches.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::new("UPDATE inbox_batch SET events = NULL WHERE first_seq IN (");
                let mut list = qb.separated(", ");
                for seq in chunk {
                    list.push_bind(*seq);
                }
                qb.push(")");
                qb.build().execute(pool).await?;
            }
            Ok(())
        })
    }

    /// Keeps an event whose handling failed permanently in `inbox_failed`, with the error.
    /// (It leaves the inbox with its batch, when the batch's other events are done.)
    pub async fn inbox_fail(
        &self,
        event: &InboxRow,
        error: &str,
        failed_at_ms: i64,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO inbox_failed (seq, txn_id, kind, room_id, body, error, failed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(event.seq)
            .bind(&event.txn_id)
            .bind(&event.kind)
            .bind(event.room_id.as_deref())
            .bind(&event.body)
            .bind(error)
            .bind(failed_at_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Number of events whose handling failed permanently.
    pub async fn inbox_failed_count(&self) -> StoreResult<i64> {
        on_pool!(self, pool => Ok(sqlx::query("SELECT COUNT(*) FROM inbox_failed")
            .fetch_one(pool)
            .await?
            .try_get::<i64, _>(0)?))
    }

    /// Forgets the transactions (keys and event ids) received before `before_ms` whose events
    /// are all handled; returns how many. Deletes in chunks, oldest first, so that the single
    /// SQLite connection is never held for long.
    pub async fn inbox_prune_txns(&self, before_ms: i64) -> StoreResult<u64> {
        const CHUNK: i64 = 5000;
        let mut pruned = 0;
        loop {
            let deleted = on_pool!(self, pool => sqlx::query(
                    "DELETE FROM inbox_batch WHERE first_seq IN (\
                     SELECT first_seq FROM inbox_batch \
                     WHERE events IS NULL AND received_at < $1 ORDER BY first_seq LIMIT $2)",
                )
                .bind(before_ms)
                .bind(CHUNK)
                .execute(pool)
                .await?
                .rows_affected());
            pruned += deleted;
            if deleted < CHUNK.unsigned_abs() {
                return Ok(pruned);
            }
        }
    }

    /// The user as last set up by us, or `None` if we never registered it.
    pub async fn managed_user(&self, user_id: &str) -> StoreResult<Option<ManagedUser>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT displayname, avatar_url FROM managed_user WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| {
                Ok(ManagedUser {
                    displayname: r.try_get(0)?,
                    avatar_url: r.try_get(1)?,
                })
            })
            .transpose()
            .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    /// Records a user as registered with the given profile.
    pub async fn put_managed_user(&self, user_id: &str, user: &ManagedUser) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO managed_user (user_id, displayname, avatar_url) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET displayname = $2, avatar_url = $3",
            )
            .bind(user_id)
            .bind(user.displayname.as_deref())
            .bind(user.avatar_url.as_deref())
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Whether `user_id` is known to have joined `room_id`.
    pub async fn is_member(&self, room_id: &str, user_id: &str) -> StoreResult<bool> {
        on_pool!(self, pool => Ok(sqlx::query(
                "SELECT 1 FROM room_member WHERE room_id = $1 AND user_id = $2",
            )
            .bind(room_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .is_some()))
    }

    /// Records or forgets that `user_id` has joined `room_id`.
    pub async fn set_member(&self, room_id: &str, user_id: &str, joined: bool) -> StoreResult<()> {
        on_pool!(self, pool => {
            let sql = if joined {
                "INSERT INTO room_member (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM room_member WHERE room_id = $1 AND user_id = $2"
            };
            sqlx::query(sql).bind(room_id).bind(user_id).execute(pool).await?;
            Ok(())
        })
    }
}

/// The store conformance suite: every backend must pass it. Built with the `testkit` feature.
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 4, SqliteSync::Normal)
            .await
            .expect("connect");
        conformance::run_all(&store).await;
        store.close().await;
        let reopened = Store::connect(&url, 4, SqliteSync::Full)
            .await
            .expect("reopen runs migrations idempotently");
        assert_eq!(reopened.inbox_failed_count().await.expect("count"), 1);
    }

    #[tokio::test]
    async fn sqlite_upgrade_keeps_unhandled_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        conformance::upgrade_keeps_unhandled_events(&url).await;
    }

    #[tokio::test]
    async fn unreachable_postgres_is_a_connect_error_without_the_password() {
        let err = Store::connect(
            "postgres://sb:secretpw@127.0.0.1:1/sb",
            1,
            SqliteSync::Normal,
        )
        .await
        .expect_err("nothing listens on port 1")
        .to_string();
        assert!(err.contains("cannot open the database"), "{err}");
        assert!(!err.contains("secretpw"), "{err}");
    }
}
