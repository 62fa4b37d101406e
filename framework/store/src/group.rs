//! Group commit: many small writes (message-map entries, plug-ins' data) stored by one
//! statement, or one transaction, instead of one round trip each.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use futures_util::TryStreamExt;
use sqlx::{QueryBuilder, Row};

use super::bridge::{MessageRecord, receiver_column};
use super::{ROWS_PER_STATEMENT, Store, StoreResult};
use switchboard_api::ids::PortalKey;

/// One write of a group ([`Store::write_group`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupWrite {
    /// Records a message-map entry of `bridge` (nothing when either side was mapped before,
    /// as [`Store::put_message`]).
    Message {
        /// The bridge.
        bridge: String,
        /// The entry.
        record: MessageRecord,
    },
    /// Forgets the message-map entry of a Matrix event (as [`Store::delete_message`]).
    ForgetEvent {
        /// The Matrix event.
        event_id: String,
    },
    /// Forgets every message-map entry of a portal of `bridge` (unbridging; the portal's own
    /// record is deleted by [`Store::delete_portal`]).
    ForgetPortal {
        /// The bridge.
        bridge: String,
        /// The portal.
        key: PortalKey,
    },
    /// Stores a plug-in's data under a key (as [`Store::put_bot_data`]).
    Data {
        /// The plug-in whose data it is.
        owner: String,
        /// The key.
        key: String,
        /// The data, JSON.
        json: String,
    },
}

/// A message-map entry's two keys, as [`Store::message_keys`] hands them out.
#[derive(Clone, Copy, Debug)]
pub struct MessageKeys<'a> {
    /// The bridge.
    pub bridge: &'a str,
    /// The remote chat.
    pub chat: &'a str,
    /// The receiver (`""` for a shared portal).
    pub receiver: &'a str,
    /// The remote message.
    pub remote_message_id: &'a str,
    /// The part.
    pub part: &'a str,
    /// The Matrix event.
    pub event_id: &'a str,
}

/// Writes that go into one statement.
enum Statement<'a> {
    Messages(Vec<(&'a str, &'a MessageRecord)>),
    Forget(Vec<&'a str>),
    ForgetPortal(&'a str, &'a PortalKey),
    Data(Vec<(&'a str, &'a str, &'a str)>),
}

impl Statement<'_> {
    fn len(&self) -> usize {
        match self {
            Statement::Messages(rows) => rows.len(),
            Statement::Forget(rows) => rows.len(),
            Statement::ForgetPortal(..) => 1,
            Statement::Data(rows) => rows.len(),
        }
    }
}

/// Cuts `writes` into statements, in order: each run of writes of one kind becomes one
/// statement of at most [`ROWS_PER_STATEMENT`] rows. Within a run of data writes, the last
/// write of a key wins (one statement may not update a row twice).
fn statements(writes: &[GroupWrite]) -> Vec<Statement<'_>> {
    let mut out: Vec<Statement<'_>> = Vec::new();
    for write in writes {
        let full = out.last().is_some_and(|s| s.len() >= ROWS_PER_STATEMENT);
        match (write, out.last_mut()) {
            (GroupWrite::Message { bridge, record }, Some(Statement::Messages(rows))) if !full => {
                rows.push((bridge, record));
            }
            (GroupWrite::Message { bridge, record }, _) => {
                out.push(Statement::Messages(vec![(bridge, record)]));
            }
            (GroupWrite::ForgetEvent { event_id }, Some(Statement::Forget(rows))) if !full => {
                rows.push(event_id);
            }
            (GroupWrite::ForgetEvent { event_id }, _) => {
                out.push(Statement::Forget(vec![event_id]));
            }
            (GroupWrite::ForgetPortal { bridge, key }, _) => {
                out.push(Statement::ForgetPortal(bridge, key));
            }
            (GroupWrite::Data { owner, key, json }, Some(Statement::Data(rows))) if !full => {
                rows.retain(|(o, k, _)| (*o, *k) != (owner.as_str(), key.as_str()));
                rows.push((owner, key, json));
            }
            (GroupWrite::Data { owner, key, json }, _) => {
                out.push(Statement::Data(vec![(owner, key, json)]));
            }
        }
    }
    out
}

/// Appends the statement's SQL to `qb`, with its values bound.
fn push_sql<'q, DB>(qb: &mut QueryBuilder<DB>, statement: &Statement<'q>)
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    match statement {
        Statement::Messages(rows) => {
            qb.push(
                "INSERT INTO bridge_message \
                 (bridge_id, chat_id, receiver, remote_message_id, part, room_id, event_id) ",
            );
            qb.push_values(rows, |mut row, (bridge, record)| {
                row.push_bind(*bridge)
                    .push_bind(record.portal.chat.as_str())
                    .push_bind(receiver_column(&record.portal))
                    .push_bind(record.remote_message_id.as_str())
                    .push_bind(record.part.as_str())
                    .push_bind(record.room_id.as_str())
                    .push_bind(record.event_id.as_str());
            });
            qb.push(" ON CONFLICT DO NOTHING");
        }
        Statement::Forget(event_ids) => {
            qb.push("DELETE FROM bridge_message WHERE event_id IN (");
            let mut list = qb.separated(", ");
            for event_id in event_ids {
                list.push_bind(*event_id);
            }
            qb.push(")");
        }
        Statement::ForgetPortal(bridge, key) => {
            qb.push("DELETE FROM bridge_message WHERE bridge_id = ")
                .push_bind(*bridge)
                .push(" AND chat_id = ")
                .push_bind(key.chat.as_str())
                .push(" AND receiver = ")
                .push_bind(receiver_column(key));
        }
        Statement::Data(rows) => {
            qb.push("INSERT INTO bot_data (bot_id, key, data) ");
            qb.push_values(rows, |mut row, (owner, key, json)| {
                row.push_bind(*owner).push_bind(*key).push_bind(*json);
            });
            qb.push(" ON CONFLICT (bot_id, key) DO UPDATE SET data = excluded.data");
        }
    }
}

/// A group as one PostgreSQL statement (one round trip, one commit): its messages and data
/// applied at once, with the outcome they have in order (the last write of a key wins). A
/// group that forgets events is written in order instead ([`AtOnce::of`] declines it): a
/// deletion in the same statement would not see rows inserted beside it, and rare as it is,
/// it is not worth a second form of the statement.
#[derive(Default)]
struct AtOnce<'a> {
    messages: Vec<(&'a str, &'a MessageRecord)>,
    /// The last write of each key.
    data: Vec<(&'a str, &'a str, &'a str)>,
}

impl<'a> AtOnce<'a> {
    /// `writes` as one statement, if they forget no event.
    fn of(writes: &'a [GroupWrite]) -> Option<Self> {
        let mut at_once = Self::default();
        let mut data_at: HashMap<(&str, &str), usize> = HashMap::new();
        for write in writes {
            match write {
                GroupWrite::Message { bridge, record } => at_once.messages.push((bridge, record)),
                GroupWrite::ForgetEvent { .. } | GroupWrite::ForgetPortal { .. } => return None,
                GroupWrite::Data { owner, key, json } => {
                    let row = (owner.as_str(), key.as_str(), json.as_str());
                    match data_at.entry((row.0, row.1)) {
                        Entry::Occupied(at) => at_once.data[*at.get()] = row,
                        Entry::Vacant(at) => {
                            at.insert(at_once.data.len());
                            at_once.data.push(row);
                        }
                    }
                }
            }
        }
        Some(at_once)
    }

    async fn execute(self, pool: &sqlx::PgPool) -> StoreResult<()> {
        let messages = message_columns(&self.messages);
        let data = data_columns(&self.data);
        let mut query = sqlx::query(
            "WITH recorded AS (\
               INSERT INTO bridge_message \
               (bridge_id, chat_id, receiver, remote_message_id, part, room_id, event_id) \
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
               $5::text[], $6::text[], $7::text[]) ON CONFLICT DO NOTHING), \
             stored AS (\
               INSERT INTO bot_data (bot_id, key, data) \
               SELECT * FROM UNNEST($8::text[], $9::text[], $10::text[]) \
               ON CONFLICT (bot_id, key) DO UPDATE SET data = excluded.data) \
             SELECT 1",
        );
        for column in messages {
            query = query.bind(column);
        }
        for column in data {
            query = query.bind(column);
        }
        query.execute(pool).await?;
        Ok(())
    }
}

/// Message-map rows as one array per column (bridge, chat, receiver, remote id, part, room,
/// event), for `UNNEST`.
fn message_columns<'a>(rows: &[(&'a str, &'a MessageRecord)]) -> [Vec<&'a str>; 7] {
    let mut columns: [Vec<&str>; 7] = Default::default();
    for (bridge, record) in rows {
        let values = [
            *bridge,
            record.portal.chat.as_str(),
            receiver_column(&record.portal),
            record.remote_message_id.as_str(),
            record.part.as_str(),
            record.room_id.as_str(),
            record.event_id.as_str(),
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    columns
}

/// Data rows as one array per column (owner, key, JSON), for `UNNEST`.
fn data_columns<'a>(rows: &[(&'a str, &'a str, &'a str)]) -> [Vec<&'a str>; 3] {
    let mut columns: [Vec<&str>; 3] = Default::default();
    for (owner, key, json) in rows {
        for (column, value) in columns.iter_mut().zip([*owner, *key, *json]) {
            column.push(value);
        }
    }
    columns
}

/// Runs one statement of a group on PostgreSQL. The rows travel as one array per column
/// (`UNNEST`), so that the SQL is the same whatever the number of rows and is prepared once
/// per connection.
async fn execute_on_postgres(
    conn: &mut sqlx::PgConnection,
    statement: &Statement<'_>,
) -> StoreResult<()> {
    match statement {
        Statement::Messages(rows) => {
            let columns = message_columns(rows);
            let mut query = sqlx::query(
                "INSERT INTO bridge_message \
                 (bridge_id, chat_id, receiver, remote_message_id, part, room_id, event_id) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                 $5::text[], $6::text[], $7::text[]) ON CONFLICT DO NOTHING",
            );
            for column in columns {
                query = query.bind(column);
            }
            query.execute(conn).await?;
        }
        Statement::Forget(event_ids) => {
            sqlx::query("DELETE FROM bridge_message WHERE event_id = ANY($1::text[])")
                .bind(event_ids.as_slice())
                .execute(conn)
                .await?;
        }
        Statement::ForgetPortal(bridge, key) => {
            sqlx::query(
                "DELETE FROM bridge_message WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3",
            )
            .bind(*bridge)
            .bind(key.chat.as_str())
            .bind(receiver_column(key))
            .execute(conn)
            .await?;
        }
        Statement::Data(rows) => {
            let columns = data_columns(rows);
            let mut query = sqlx::query(
                "INSERT INTO bot_data (bot_id, key, data) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (bot_id, key) DO UPDATE SET data = excluded.data",
            );
            for column in columns {
                query = query.bind(column);
            }
            query.execute(conn).await?;
        }
    }
    Ok(())
}

impl Store {
    /// Stores `writes` in order. On SQLite the whole group is one query — one hand-off to the
    /// database thread — whatever it holds, and not atomic: a group that failed (or whose
    /// outcome was lost) is stored again whole, which its idempotent writes make harmless. On
    /// PostgreSQL it is one statement, or one transaction when it forgets entries.
    pub async fn write_group(&self, writes: &[GroupWrite]) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(pool) => {
                let statements = statements(writes);
                let mut qb = QueryBuilder::new("");
                for (i, statement) in statements.iter().enumerate() {
                    if i > 0 {
                        qb.push("; ");
                    }
                    push_sql(&mut qb, statement);
                }
                qb.build().execute(pool).await?;
            }
            Store::Postgres(pool) => {
                if let Some(at_once) = AtOnce::of(writes) {
                    at_once.execute(pool).await?;
                    return Ok(());
                }
                // In order, in one transaction: one flush of the write-ahead log.
                let mut tx = pool.begin().await?;
                for statement in &statements(writes) {
                    execute_on_postgres(&mut tx, statement).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// How many message-map entries there are.
    pub async fn message_count(&self) -> StoreResult<i64> {
        on_pool!(self, pool => Ok(sqlx::query("SELECT COUNT(*) FROM bridge_message")
            .fetch_one(pool)
            .await?
            .try_get(0)?))
    }

    /// Hands the keys of every message-map entry to `each`, streamed (never all in memory).
    pub async fn message_keys(
        &self,
        mut each: impl FnMut(MessageKeys<'_>) + Send,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            let mut rows = sqlx::query(
                "SELECT bridge_id, chat_id, receiver, remote_message_id, part, event_id \
                 FROM bridge_message",
            )
            .fetch(pool);
            while let Some(row) = rows.try_next().await? {
                each(MessageKeys {
                    bridge: row.try_get(0)?,
                    chat: row.try_get(1)?,
                    receiver: row.try_get(2)?,
                    remote_message_id: row.try_get(3)?,
                    part: row.try_get(4)?,
                    event_id: row.try_get(5)?,
                });
            }
            Ok(())
        })
    }
}
