//! What bridges keep: portals, puppets and the message map.

use sqlx::Row;

use super::{Store, StoreError, StoreResult};
use switchboard_api::ids::{PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};

/// A portal as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalRecord {
    /// Which remote chat, seen by whom.
    pub key: PortalKey,
    /// Its room, once created.
    pub room_id: Option<String>,
    /// The bridge's own data, as JSON.
    pub data: String,
}

/// A message-map entry: one remote message (part) and its Matrix event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// The portal it belongs to.
    pub portal: PortalKey,
    /// The remote message.
    pub remote_message_id: RemoteMessageId,
    /// Which part of it (`""` for a message in one part).
    pub part: String,
    /// The room.
    pub room_id: String,
    /// The Matrix event.
    pub event_id: String,
}

pub(super) fn receiver_column(key: &PortalKey) -> &str {
    key.receiver.as_ref().map_or("", RemoteUserId::as_str)
}

pub(super) fn portal_key(chat: String, receiver: String) -> PortalKey {
    PortalKey {
        chat: RemoteChatId(chat),
        receiver: (!receiver.is_empty()).then_some(RemoteUserId(receiver)),
    }
}

impl Store {
    /// The portal of `bridge` for `key`, if known.
    pub async fn portal(&self, bridge: &str, key: &PortalKey) -> StoreResult<Option<PortalRecord>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT room_id, data FROM bridge_portal \
                 WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3",
            )
            .bind(bridge)
            .bind(key.chat.as_str())
            .bind(receiver_column(key))
            .fetch_optional(pool)
            .await?;
            row.map(|r| Ok(PortalRecord { key: key.clone(), room_id: r.try_get(0)?, data: r.try_get(1)? }))
                .transpose()
                .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    /// Every portal that has a room, with its bridge.
    pub async fn portals_with_rooms(&self) -> StoreResult<Vec<(String, PortalRecord)>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT bridge_id, chat_id, receiver, room_id, data FROM bridge_portal \
                 WHERE room_id IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        PortalRecord {
                            key: portal_key(r.try_get(1)?, r.try_get(2)?),
                            room_id: r.try_get(3)?,
                            data: r.try_get(4)?,
                        },
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// The bridge and portal a room belongs to, if it is a portal.
    pub async fn portal_by_room(
        &self,
        room_id: &str,
    ) -> StoreResult<Option<(String, PortalRecord)>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT bridge_id, chat_id, receiver, data FROM bridge_portal WHERE room_id = $1",
            )
            .bind(room_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok((
                    r.try_get(0)?,
                    PortalRecord {
                        key: portal_key(r.try_get(1)?, r.try_get(2)?),
                        room_id: Some(room_id.to_owned()),
                        data: r.try_get(3)?,
                    },
                ))
            })
            .transpose()
            .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    /// Creates or replaces a portal of `bridge`.
    pub async fn put_portal(&self, bridge: &str, portal: &PortalRecord) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bridge_portal (bridge_id, chat_id, receiver, room_id, data) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bridge_id, chat_id, receiver) \
                 DO UPDATE SET room_id = $4, data = $5",
            )
            .bind(bridge)
            .bind(portal.key.chat.as_str())
            .bind(receiver_column(&portal.key))
            .bind(portal.room_id.as_deref())
            .bind(&portal.data)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Forgets a portal of `bridge` and its message map (unbridging).
    pub async fn delete_portal(&self, bridge: &str, key: &PortalKey) -> StoreResult<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for sql in [
                "DELETE FROM bridge_message WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3",
                "DELETE FROM bridge_portal WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3",
            ] {
                sqlx::query(sql)
                    .bind(bridge)
                    .bind(key.chat.as_str())
                    .bind(receiver_column(key))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records the Matrix user speaking for a remote user of `bridge`, with the bridge's data.
    pub async fn put_puppet(
        &self,
        bridge: &str,
        remote: &RemoteUserId,
        user_id: &str,
        data: &str,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bridge_puppet (bridge_id, remote_user_id, user_id, data) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (bridge_id, remote_user_id) \
                 DO UPDATE SET user_id = $3, data = $4",
            )
            .bind(bridge)
            .bind(remote.as_str())
            .bind(user_id)
            .bind(data)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Every puppet as `(bridge, remote user id, Matrix user id)`, of one bridge or of all,
    /// in order, at most `limit`.
    pub async fn puppets(
        &self,
        bridge: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<(String, String, String)>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT bridge_id, remote_user_id, user_id FROM bridge_puppet \
                 WHERE $1 IS NULL OR bridge_id = $1 ORDER BY bridge_id, remote_user_id LIMIT $2",
            )
            .bind(bridge)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// The bridge's data about a remote user's puppet, if it has one.
    pub async fn puppet_data(
        &self,
        bridge: &str,
        remote: &RemoteUserId,
    ) -> StoreResult<Option<String>> {
        on_pool!(self, pool => Ok(sqlx::query(
                "SELECT data FROM bridge_puppet WHERE bridge_id = $1 AND remote_user_id = $2",
            )
            .bind(bridge)
            .bind(remote.as_str())
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?))
    }

    /// Records that a remote message (part) and a Matrix event are the same message. Returns
    /// `false` (and changes nothing) if either side was mapped before.
    pub async fn put_message(&self, bridge: &str, message: &MessageRecord) -> StoreResult<bool> {
        on_pool!(self, pool => Ok(sqlx::query(
                "INSERT INTO bridge_message \
                 (bridge_id, chat_id, receiver, remote_message_id, part, room_id, event_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(bridge)
            .bind(message.portal.chat.as_str())
            .bind(receiver_column(&message.portal))
            .bind(message.remote_message_id.as_str())
            .bind(&message.part)
            .bind(&message.room_id)
            .bind(&message.event_id)
            .execute(pool)
            .await?
            .rows_affected()
            > 0))
    }

    /// The Matrix event of a remote message (part), if bridged.
    pub async fn message_event(
        &self,
        bridge: &str,
        portal: &PortalKey,
        remote_message_id: &RemoteMessageId,
        part: &str,
    ) -> StoreResult<Option<String>> {
        on_pool!(self, pool => Ok(sqlx::query(
                "SELECT event_id FROM bridge_message WHERE bridge_id = $1 AND chat_id = $2 \
                 AND receiver = $3 AND remote_message_id = $4 AND part = $5",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .bind(remote_message_id.as_str())
            .bind(part)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?))
    }

    /// The bridge and remote message of a Matrix event, if it was bridged either way.
    pub async fn message_by_event(
        &self,
        event_id: &str,
    ) -> StoreResult<Option<(String, MessageRecord)>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT bridge_id, chat_id, receiver, remote_message_id, part, room_id \
                 FROM bridge_message WHERE event_id = $1",
            )
            .bind(event_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| {
                Ok((
                    r.try_get(0)?,
                    MessageRecord {
                        portal: portal_key(r.try_get(1)?, r.try_get(2)?),
                        remote_message_id: RemoteMessageId(r.try_get(3)?),
                        part: r.try_get(4)?,
                        room_id: r.try_get(5)?,
                        event_id: event_id.to_owned(),
                    },
                ))
            })
            .transpose()
            .map_err(|e: sqlx::Error| StoreError::from(e))
        })
    }

    /// Forgets the message-map entry of a Matrix event (a reaction taken back).
    pub async fn delete_message(&self, event_id: &str) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM bridge_message WHERE event_id = $1")
                .bind(event_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
