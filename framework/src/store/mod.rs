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

use crate::config::{SqliteSync, redact_url_password};

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
mod login;
mod outbox;

pub use bot::AuditRecord;
pub use bridge::{MessageRecord, PortalRecord};
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
impl From<StoreError> for crate::inbox::HandleError {
    fn from(error: StoreError) -> Self {
        Self::Transient(error.to_string())
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
            let options = PgConnectOptions::from_str(url).map_err(connect_err)?;
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

/// The store conformance suite: every backend must pass it. Each function takes a freshly
/// migrated, empty store. Built with the `testkit` feature.
#[cfg(any(test, feature = "testkit"))]
pub mod conformance {
    use super::{ManagedUser, NewInboxEvent, Store};

    /// Inserts with the next free sequence numbers, as the inbox does; returns the first one,
    /// or `None` for a repeated transaction.
    async fn insert(
        store: &Store,
        txn_key: &str,
        at: i64,
        events: &[NewInboxEvent],
    ) -> Option<i64> {
        let first = store.inbox_max_seq().await.expect("max seq") + 1;
        store
            .inbox_insert(txn_key, at, first, events)
            .await
            .expect("insert")
            .then_some(first)
    }

    fn event(room: Option<&str>, body: &str) -> NewInboxEvent {
        NewInboxEvent {
            kind: "pdu".into(),
            event_id: None,
            room_id: room.map(str::to_owned),
            body: body.into(),
        }
    }

    fn with_id(id: &str) -> NewInboxEvent {
        NewInboxEvent {
            event_id: Some(id.to_owned()),
            ..event(Some("!s:x"), "{}")
        }
    }

    /// Runs every check below.
    pub async fn run_all(store: &Store) {
        duplicate_txn_is_stored_once(store).await;
        recent_event_ids_come_back_newest_first(store).await;
        pending_events_come_back_in_arrival_order_until_done(store).await;
        failed_events_leave_the_inbox_but_are_kept(store).await;
        old_txn_ids_are_pruned(store).await;
        managed_users_and_memberships_round_trip(store).await;
        portals_round_trip(store).await;
        puppets_and_the_message_map_round_trip(store).await;
        outbox_keeps_order_per_portal_until_removed(store).await;
        logins_and_relays_round_trip(store).await;
        bot_data_and_the_audit_log_round_trip(store).await;
        puppets_are_listed(store).await;
    }

    /// Puppets are listed per bridge or all together, in order, limited.
    pub async fn puppets_are_listed(store: &Store) {
        use crate::bridge::RemoteUserId;
        for (bridge, remote) in [("lxmpp", "bob"), ("lxmpp", "alice"), ("lmqtt", "kitchen")] {
            let user = format!("@_{bridge}_{remote}:x");
            store
                .put_puppet(bridge, &RemoteUserId::from(remote), &user, "{}")
                .await
                .expect("puppet");
        }
        let xmpp = store.puppets(Some("lxmpp"), 10).await.expect("list");
        let remotes: Vec<&str> = xmpp.iter().map(|(_, r, _)| r.as_str()).collect();
        assert_eq!(remotes, ["alice", "bob"]);
        assert_eq!(
            store.puppets(Some("lxmpp"), 1).await.expect("list").len(),
            1
        );
        let all = store.puppets(None, 100).await.expect("list");
        assert!(all.contains(&("lmqtt".into(), "kitchen".into(), "@_lmqtt_kitchen:x".into())));
        assert!(all.len() >= 3);
    }

    /// A bot's data is replaced under its key and kept apart from other bots'; its audit log
    /// comes back newest first, limited.
    pub async fn bot_data_and_the_audit_log_round_trip(store: &Store) {
        use crate::store::AuditRecord;
        assert_eq!(store.bot_data("admin", "room").await.expect("read"), None);
        store
            .put_bot_data("admin", "room", r#""!a:x""#)
            .await
            .expect("put");
        store
            .put_bot_data("admin", "room", r#""!b:x""#)
            .await
            .expect("replace");
        store
            .put_bot_data("other", "room", r#""!c:x""#)
            .await
            .expect("put");
        assert_eq!(
            store
                .bot_data("admin", "room")
                .await
                .expect("read")
                .as_deref(),
            Some(r#""!b:x""#)
        );
        for n in 1..=3 {
            let record = AuditRecord {
                at_ms: n,
                sender: "@root:x".into(),
                room_id: "!b:x".into(),
                command: format!("users show {n}"),
                outcome: "ok".into(),
            };
            store.add_audit("admin", &record).await.expect("audit");
        }
        let log = store.audit_log("admin", 2).await.expect("log");
        let commands: Vec<&str> = log.iter().map(|r| r.command.as_str()).collect();
        assert_eq!(commands, ["users show 3", "users show 2"]);
        assert!(store.audit_log("other", 5).await.expect("log").is_empty());
    }

    /// Logins are listed per user and bridge, move with their account, and leave a portal's
    /// relay when deleted.
    pub async fn logins_and_relays_round_trip(store: &Store) {
        use crate::bridge::PortalKey;
        use crate::store::{LoginRecord, PortalRecord};
        let login = |id: &str, user: &str, at: i64| LoginRecord {
            login_id: id.into(),
            user_id: user.into(),
            remote_name: format!("{id} on the network"),
            data: "{}".into(),
            created_at: at,
        };
        store
            .put_login("xmpp", &login("b", "@u:x", 2))
            .await
            .expect("put");
        store
            .put_login("xmpp", &login("a", "@u:x", 1))
            .await
            .expect("put");
        store
            .put_login("mqtt", &login("c", "@u:x", 3))
            .await
            .expect("put");
        let ids =
            |logins: Vec<LoginRecord>| logins.into_iter().map(|l| l.login_id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.logins_of("xmpp", "@u:x").await.expect("list")),
            ["a", "b"]
        );
        store
            .put_login("xmpp", &login("b", "@v:x", 9))
            .await
            .expect("moved");
        assert_eq!(
            ids(store.logins_of("xmpp", "@u:x").await.expect("list")),
            ["a"]
        );
        assert_eq!(ids(store.logins("xmpp").await.expect("all")), ["a", "b"]);
        let portal = PortalKey::shared("relayed");
        store
            .put_portal(
                "xmpp",
                &PortalRecord {
                    key: portal.clone(),
                    room_id: None,
                    data: "{}".into(),
                },
            )
            .await
            .expect("portal");
        assert_eq!(
            store.portal_relay("xmpp", &portal).await.expect("relay"),
            None
        );
        store
            .set_portal_relay("xmpp", &portal, Some("a"))
            .await
            .expect("set");
        assert_eq!(
            store
                .portal_relay("xmpp", &portal)
                .await
                .expect("relay")
                .as_deref(),
            Some("a")
        );
        assert!(store.delete_login("xmpp", "a").await.expect("delete"));
        assert!(!store.delete_login("xmpp", "a").await.expect("again"));
        assert_eq!(store.login("xmpp", "a").await.expect("get"), None);
        assert_eq!(
            store.portal_relay("xmpp", &portal).await.expect("relay"),
            None
        );
        assert_eq!(
            store
                .login("xmpp", "b")
                .await
                .expect("get")
                .map(|l| l.user_id)
                .as_deref(),
            Some("@v:x")
        );
        store
            .put_management_room("!dm:x", "@u:x")
            .await
            .expect("management room");
        store
            .put_management_room("!dm:x", "@v:x")
            .await
            .expect("again");
        assert_eq!(
            store.management_rooms().await.expect("list"),
            [("!dm:x".to_owned(), "@v:x".to_owned())]
        );
    }

    /// Outbox entries come back oldest first per portal, are queued once, record failed
    /// attempts and leave when removed.
    pub async fn outbox_keeps_order_per_portal_until_removed(store: &Store) {
        use crate::bridge::PortalKey;
        let a = PortalKey::shared("a");
        let b = PortalKey::shared("b");
        assert!(
            store
                .outbox_queue("xmpp", &a, "$1", "{1}", 10, 0, 10, "")
                .await
                .expect("push")
        );
        assert!(
            store
                .outbox_queue("xmpp", &b, "$2", "{2}", 11, 0, 11, "")
                .await
                .expect("push")
        );
        assert!(
            store
                .outbox_queue("xmpp", &a, "$3", "{3}", 12, 0, 12, "")
                .await
                .expect("push")
        );
        assert!(
            !store
                .outbox_queue("xmpp", &a, "$1", "{1}", 13, 0, 13, "")
                .await
                .expect("again")
        );
        let mut portals = store.outbox_portals("xmpp").await.expect("portals");
        portals.sort_by(|x, y| x.chat.as_str().cmp(y.chat.as_str()));
        assert_eq!(portals, vec![a.clone(), b.clone()]);
        assert!(store.outbox_portals("mqtt").await.expect("none").is_empty());
        assert_eq!(store.outbox_depth().await.expect("depth"), 3);
        assert_eq!(store.outbox_count("xmpp").await.expect("count"), 3);
        assert_eq!(store.outbox_count("mqtt").await.expect("count"), 0);
        let head = store
            .outbox_head("xmpp", &a)
            .await
            .expect("head")
            .expect("some");
        assert_eq!(
            (head.event_id.as_str(), head.attempts, head.next_attempt_at),
            ("$1", 0, 10)
        );
        store
            .outbox_retry_later(head.seq, 99, "down")
            .await
            .expect("retry");
        let again = store
            .outbox_head("xmpp", &a)
            .await
            .expect("head")
            .expect("some");
        assert_eq!((again.attempts, again.next_attempt_at), (1, 99));
        assert_eq!(again.last_error, "down");
        store.outbox_remove(head.seq).await.expect("remove");
        let next = store
            .outbox_head("xmpp", &a)
            .await
            .expect("head")
            .expect("some");
        assert_eq!(next.event_id, "$3");
        store.outbox_remove(next.seq).await.expect("remove");
        assert_eq!(store.outbox_head("xmpp", &a).await.expect("head"), None);
        assert_eq!(
            store.outbox_portals("xmpp").await.expect("portals"),
            vec![b]
        );
    }

    /// A repeated transaction key stores nothing.
    pub async fn duplicate_txn_is_stored_once(store: &Store) {
        let events = vec![event(Some("!a:x"), "{\"n\":1}"), event(None, "{\"n\":2}")];
        let first = insert(store, "t1", 1000, &events).await.expect("new txn");
        assert_eq!(insert(store, "t1", 2000, &events).await, None);
        assert_eq!(store.inbox_depth().await.expect("depth"), 2);
        let pending = store.inbox_pending().await.expect("pending");
        assert_eq!(
            pending.iter().map(|r| (r.seq, r.batch)).collect::<Vec<_>>(),
            [(first, first), (first + 1, first)]
        );
        store.inbox_batches_done(&[first]).await.expect("done");
        assert_eq!(store.inbox_depth().await.expect("depth"), 0);
        assert_eq!(
            store.inbox_max_seq().await.expect("max"),
            first + 1,
            "sequence numbers are not reused after the events are handled"
        );
    }

    /// The ids of recent room events, handled or not, come back newest first.
    pub async fn recent_event_ids_come_back_newest_first(store: &Store) {
        let first = insert(
            store,
            "r1",
            1000,
            &[with_id("$a"), event(None, "{}"), with_id("$b")],
        )
        .await
        .expect("new");
        store.inbox_batches_done(&[first]).await.expect("done");
        insert(store, "r2", 1000, &[with_id("$c")])
            .await
            .expect("new");
        let ids = store.inbox_recent_event_ids(10).await.expect("ids");
        assert_eq!(ids[..3], ["$c", "$b", "$a"]);
        assert_eq!(
            store.inbox_recent_event_ids(2).await.expect("ids"),
            ["$c", "$b"]
        );
        assert!(
            store
                .inbox_recent_event_ids(0)
                .await
                .expect("ids")
                .is_empty()
        );
        let pending = store.inbox_pending().await.expect("pending");
        let batches: Vec<i64> = pending.iter().map(|r| r.batch).collect();
        store.inbox_batches_done(&batches).await.expect("done");
    }

    /// Pending events come back in order, exactly as stored, until their batch is done.
    pub async fn pending_events_come_back_in_arrival_order_until_done(store: &Store) {
        let many: Vec<_> = (0..2500)
            .map(|i| {
                event(
                    Some("!b:x"),
                    &format!("{{\"n\":{i},\"s\":\"\\\"q\\u00e9\"}}"),
                )
            })
            .collect();
        let first = insert(store, "t2", 1000, &many).await.expect("new");
        let later = insert(store, "t2b", 1000, &[event(None, "[1]")])
            .await
            .expect("new");
        assert_eq!(later, first + 2500);
        let pending = store.inbox_pending().await.expect("pending");
        assert_eq!(pending.len(), 2501);
        assert_eq!(pending[0].body, many[0].body, "stored byte for byte");
        assert_eq!(pending[2499].body, many[2499].body);
        assert_eq!(pending[2500].body, "[1]");
        assert_eq!(pending[2500].room_id, None);
        assert_eq!(
            pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (first..=later).collect::<Vec<_>>()
        );
        assert_eq!(pending[7].room_id.as_deref(), Some("!b:x"));
        assert_eq!(pending[7].txn_id, "t2");
        assert_eq!(pending[7].batch, first);
        assert_eq!(pending[2500].batch, later);
        assert_eq!(store.inbox_max_seq().await.expect("max"), later);
        store.inbox_batches_done(&[first]).await.expect("done");
        let pending = store.inbox_pending().await.expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].seq, later);
        store.inbox_batches_done(&[later]).await.expect("done");
        assert_eq!(store.inbox_depth().await.expect("depth"), 0);
    }

    /// A permanently failed event is kept aside, with its error.
    pub async fn failed_events_leave_the_inbox_but_are_kept(store: &Store) {
        insert(store, "t3", 1000, &[event(Some("!c:x"), "{}")])
            .await
            .expect("new");
        let pending = store.inbox_pending().await.expect("pending");
        let failed_before = store.inbox_failed_count().await.expect("count");
        store
            .inbox_fail(&pending[0], "boom", 5)
            .await
            .expect("fail");
        store
            .inbox_batches_done(&[pending[0].batch])
            .await
            .expect("done");
        assert_eq!(store.inbox_depth().await.expect("depth"), 0);
        assert_eq!(
            store.inbox_failed_count().await.expect("count"),
            failed_before + 1
        );
    }

    /// Transaction keys and handled batches older than the retention are forgotten; pending
    /// batches are kept whatever their age.
    pub async fn old_txn_ids_are_pruned(store: &Store) {
        let old = insert(store, "old", 10, &[with_id("$old")])
            .await
            .expect("new");
        store.inbox_batches_done(&[old]).await.expect("done");
        let stuck = insert(store, "stuck", 10, &[with_id("$stuck")])
            .await
            .expect("new");
        insert(store, "empty-old", 10, &[]).await.expect("new");
        insert(store, "new", 1_000_000, &[]).await.expect("new");
        let pruned = store.inbox_prune_txns(500).await.expect("prune");
        assert_eq!(pruned, 2, "old and empty-old");
        let ids = store.inbox_recent_event_ids(100).await.expect("ids");
        assert!(!ids.contains(&"$old".to_owned()), "{ids:?}");
        assert!(ids.contains(&"$stuck".to_owned()), "{ids:?}");
        assert!(insert(store, "old", 20, &[]).await.is_some());
        assert!(
            insert(store, "stuck", 20, &[]).await.is_none(),
            "still pending: still known"
        );
        assert!(insert(store, "new", 20, &[]).await.is_none());
        store.inbox_batches_done(&[stuck]).await.expect("done");
    }

    /// A database left by the per-event inbox (schema version 1) keeps its unhandled events
    /// through the upgrade to batches. `url` names a fresh, empty database.
    pub async fn upgrade_keeps_unhandled_events(url: &str) {
        const LEGACY_ROWS: &str = "INSERT INTO inbox_txn (txn_id, received_at) VALUES \
             ('a/d', 1), ('b/d', 1), ('c/d', 1); \
             INSERT INTO inbox_event (seq, txn_id, kind, room_id, body) VALUES \
             (7, 'a/d', 'pdu', '!r:x', '{\"n\":\"it''s\"}'), (8, 'a/d', 'pdu', '!r:x', '{}'), \
             (9, 'b/d', 'ephemeral', NULL, '{}')";
        // Schema version 1 only, as the previous release left it, with unhandled events.
        macro_rules! legacy_database {
            ($pool:expr, $migrations:literal) => {{
                let pool = $pool.expect("connect");
                let migrator = sqlx::migrate!($migrations);
                migrator.run_to(1, &pool).await.expect("schema 1");
                sqlx::raw_sql(LEGACY_ROWS)
                    .execute(&pool)
                    .await
                    .expect("legacy rows");
                pool.close().await;
            }};
        }
        if url.starts_with("postgres") {
            legacy_database!(sqlx::PgPool::connect(url).await, "./migrations/postgres");
        } else {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
                .expect("url")
                .create_if_missing(true);
            legacy_database!(
                sqlx::SqlitePool::connect_with(options).await,
                "./migrations/sqlite"
            );
        }
        let store = Store::connect(url, 2, crate::config::SqliteSync::Normal)
            .await
            .expect("upgrade");
        let pending = store.inbox_pending().await.expect("pending");
        let seen: Vec<_> = pending
            .iter()
            .map(|r| {
                (
                    r.seq,
                    r.batch,
                    r.txn_id.as_str(),
                    r.kind.as_str(),
                    r.room_id.as_deref(),
                    r.body.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (7, 7, "a/d#7", "pdu", Some("!r:x"), "{\"n\":\"it's\"}"),
                (8, 8, "a/d#8", "pdu", Some("!r:x"), "{}"),
                (9, 9, "b/d#9", "ephemeral", None, "{}"),
            ]
        );
        assert_eq!(store.inbox_max_seq().await.expect("max"), 9);
        for key in ["a/d", "b/d", "c/d"] {
            assert!(
                !store.inbox_insert(key, 5, 10, &[]).await.expect("insert"),
                "{key} was accepted before the upgrade: still a repeat"
            );
        }
        store.close().await;
    }

    /// Portals (shared and per-user) are kept per bridge and found by key and by room.
    pub async fn portals_round_trip(store: &Store) {
        use crate::bridge::{PortalKey, RemoteUserId};
        use crate::store::PortalRecord;
        let shared = PortalKey::shared("chat");
        let mine = PortalKey {
            receiver: Some(RemoteUserId::from("me")),
            ..shared.clone()
        };
        assert_eq!(store.portal("xmpp", &shared).await.expect("get"), None);
        let portal = PortalRecord {
            key: shared.clone(),
            room_id: Some("!p:x".into()),
            data: "{\"topic\":\"t\"}".into(),
        };
        store.put_portal("xmpp", &portal).await.expect("put");
        let per_user = PortalRecord {
            key: mine.clone(),
            room_id: None,
            data: "{}".into(),
        };
        store.put_portal("xmpp", &per_user).await.expect("put");
        assert_eq!(
            store.portal("xmpp", &shared).await.expect("get"),
            Some(portal.clone())
        );
        assert_eq!(
            store.portal("xmpp", &mine).await.expect("get"),
            Some(per_user)
        );
        assert_eq!(
            store.portal("mqtt", &shared).await.expect("get"),
            None,
            "per bridge"
        );
        assert_eq!(
            store.portal_by_room("!p:x").await.expect("by room"),
            Some(("xmpp".into(), portal.clone()))
        );
        assert_eq!(
            store.portal_by_room("!other:x").await.expect("by room"),
            None
        );
        let with_rooms = store.portals_with_rooms().await.expect("with rooms");
        assert!(with_rooms.contains(&("xmpp".to_owned(), portal.clone())));
        assert!(with_rooms.iter().all(|(_, p)| p.room_id.is_some()));
    }

    /// Puppets and message-map entries are kept per bridge, found from either side, and the
    /// map is forgotten with its portal.
    pub async fn puppets_and_the_message_map_round_trip(store: &Store) {
        use crate::bridge::{PortalKey, RemoteMessageId, RemoteUserId};
        use crate::store::{MessageRecord, PortalRecord};
        let shared = PortalKey::shared("chat2");
        let mine = PortalKey {
            receiver: Some(RemoteUserId::from("me")),
            ..shared.clone()
        };
        for key in [&shared, &mine] {
            let portal = PortalRecord {
                key: key.clone(),
                room_id: None,
                data: "{}".into(),
            };
            store.put_portal("xmpp", &portal).await.expect("put");
        }
        let bob = RemoteUserId::from("bob");
        assert_eq!(store.puppet_data("xmpp", &bob).await.expect("get"), None);
        store
            .put_puppet("xmpp", &bob, "@_xmpp_bob:x", "{}")
            .await
            .expect("put");
        store
            .put_puppet("xmpp", &bob, "@_xmpp_bob:x", "{\"v\":2}")
            .await
            .expect("update");
        assert_eq!(
            store
                .puppet_data("xmpp", &bob)
                .await
                .expect("get")
                .as_deref(),
            Some("{\"v\":2}")
        );

        let message = MessageRecord {
            portal: shared.clone(),
            remote_message_id: RemoteMessageId::from("m1"),
            part: String::new(),
            room_id: "!p2:x".into(),
            event_id: "$e1".into(),
        };
        assert!(store.put_message("xmpp", &message).await.expect("put"));
        assert!(
            !store.put_message("xmpp", &message).await.expect("again"),
            "mapped once"
        );
        let same_event = MessageRecord {
            remote_message_id: RemoteMessageId::from("m2"),
            ..message.clone()
        };
        assert!(
            !store
                .put_message("xmpp", &same_event)
                .await
                .expect("same event")
        );
        assert_eq!(
            store
                .message_event("xmpp", &shared, &message.remote_message_id, "")
                .await
                .expect("get")
                .as_deref(),
            Some("$e1")
        );
        assert_eq!(
            store
                .message_event("xmpp", &mine, &message.remote_message_id, "")
                .await
                .expect("get"),
            None
        );
        assert_eq!(
            store.message_by_event("$e1").await.expect("by event"),
            Some(("xmpp".into(), message.clone()))
        );
        store.delete_portal("xmpp", &shared).await.expect("delete");
        assert_eq!(store.portal("xmpp", &shared).await.expect("get"), None);
        assert_eq!(store.message_by_event("$e1").await.expect("by event"), None);
        assert!(
            store.portal("xmpp", &mine).await.expect("get").is_some(),
            "other portals stay"
        );
    }

    /// Users and memberships are remembered and updated.
    pub async fn managed_users_and_memberships_round_trip(store: &Store) {
        assert_eq!(store.managed_user("@p:x").await.expect("get"), None);
        let user = ManagedUser {
            displayname: Some("P".into()),
            avatar_url: None,
        };
        store.put_managed_user("@p:x", &user).await.expect("put");
        assert_eq!(store.managed_user("@p:x").await.expect("get"), Some(user));
        let renamed = ManagedUser {
            displayname: Some("Q".into()),
            avatar_url: Some("mxc://x/y".into()),
        };
        store.put_managed_user("@p:x", &renamed).await.expect("put");
        assert_eq!(
            store.managed_user("@p:x").await.expect("get"),
            Some(renamed)
        );
        assert!(!store.is_member("!r:x", "@p:x").await.expect("member"));
        store.set_member("!r:x", "@p:x", true).await.expect("set");
        store
            .set_member("!r:x", "@p:x", true)
            .await
            .expect("set twice");
        assert!(store.is_member("!r:x", "@p:x").await.expect("member"));
        store
            .set_member("!r:x", "@p:x", false)
            .await
            .expect("unset");
        assert!(!store.is_member("!r:x", "@p:x").await.expect("member"));
    }
}

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
