//! Bridge logins (Matrix users' accounts on a network) and the relay login of each portal.

use sqlx::Row;

use super::bridge::receiver_column;
use super::{Store, StoreError, StoreResult};
use switchboard_api::ids::PortalKey;

/// A login as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRecord {
    /// The account's id on the network (unique per bridge).
    pub login_id: String,
    /// The Matrix user it belongs to.
    pub user_id: String,
    /// How the account is shown to its owner.
    pub remote_name: String,
    /// The bridge's own data, as JSON.
    pub data: String,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
}

/// `SELECT`s the columns [`login_row`] reads, with the rest of the query appended.
macro_rules! select_logins {
    ($rest:literal) => {
        concat!(
            "SELECT login_id, user_id, remote_name, data, created_at FROM bridge_login ",
            $rest
        )
    };
}

fn login_row<R: Row>(row: &R) -> Result<LoginRecord, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(LoginRecord {
        login_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        remote_name: row.try_get(2)?,
        data: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

impl Store {
    /// Records that `user`'s messages in `portal` go through their login `login_id`.
    pub async fn put_portal_login(
        &self,
        bridge: &str,
        portal: &PortalKey,
        user_id: &str,
        login_id: &str,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bridge_portal_login (bridge_id, chat_id, receiver, user_id, \
                 login_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bridge_id, chat_id, \
                 receiver, user_id) DO UPDATE SET login_id = $5",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .bind(user_id)
            .bind(login_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The login `user`'s messages in `portal` go through, if one was recorded.
    pub async fn portal_login(
        &self,
        bridge: &str,
        portal: &PortalKey,
        user_id: &str,
    ) -> StoreResult<Option<String>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT login_id FROM bridge_portal_login WHERE bridge_id = $1 AND \
                 chat_id = $2 AND receiver = $3 AND user_id = $4",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| r.try_get(0)).transpose().map_err(StoreError::from)
        })
    }

    /// Creates or replaces a login of `bridge` (a login id belongs to one Matrix user: logging
    /// in again as the same account moves it).
    pub async fn put_login(&self, bridge: &str, login: &LoginRecord) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO bridge_login (bridge_id, login_id, user_id, remote_name, data, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (bridge_id, login_id) \
                 DO UPDATE SET user_id = $3, remote_name = $4, data = $5",
            )
            .bind(bridge)
            .bind(&login.login_id)
            .bind(&login.user_id)
            .bind(&login.remote_name)
            .bind(&login.data)
            .bind(login.created_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The logins of a Matrix user on `bridge`, oldest first.
    pub async fn logins_of(&self, bridge: &str, user_id: &str) -> StoreResult<Vec<LoginRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(select_logins!("WHERE bridge_id = $1 AND user_id = $2 \
                 ORDER BY created_at, login_id"))
            .bind(bridge)
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(login_row).collect::<Result<_, _>>().map_err(StoreError::from)
        })
    }

    /// Every login of `bridge`, oldest first (to reconnect them at start).
    pub async fn logins(&self, bridge: &str) -> StoreResult<Vec<LoginRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(select_logins!("WHERE bridge_id = $1 \
                 ORDER BY created_at, login_id"))
            .bind(bridge)
            .fetch_all(pool)
            .await?;
            rows.iter().map(login_row).collect::<Result<_, _>>().map_err(StoreError::from)
        })
    }

    /// A login of `bridge` by its id.
    pub async fn login(&self, bridge: &str, login_id: &str) -> StoreResult<Option<LoginRecord>> {
        on_pool!(self, pool => {
            let row = sqlx::query(select_logins!("WHERE bridge_id = $1 AND login_id = $2"))
            .bind(bridge)
            .bind(login_id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(login_row).transpose().map_err(StoreError::from)
        })
    }

    /// Forgets a login, and it as the relay of any portal. Returns whether it existed.
    pub async fn delete_login(&self, bridge: &str, login_id: &str) -> StoreResult<bool> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE bridge_portal SET relay_login = NULL \
                 WHERE bridge_id = $1 AND relay_login = $2",
            )
            .bind(bridge)
            .bind(login_id)
            .execute(&mut *tx)
            .await?;
            let deleted = sqlx::query("DELETE FROM bridge_login WHERE bridge_id = $1 AND login_id = $2")
                .bind(bridge)
                .bind(login_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(deleted > 0)
        })
    }

    /// Sets (or clears) the login a portal relays through.
    pub async fn set_portal_relay(
        &self,
        bridge: &str,
        portal: &PortalKey,
        login_id: Option<&str>,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE bridge_portal SET relay_login = $4 \
                 WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .bind(login_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The login a portal relays through, if it has one.
    pub async fn portal_relay(
        &self,
        bridge: &str,
        portal: &PortalKey,
    ) -> StoreResult<Option<String>> {
        on_pool!(self, pool => Ok(sqlx::query(
                "SELECT relay_login FROM bridge_portal \
                 WHERE bridge_id = $1 AND chat_id = $2 AND receiver = $3",
            )
            .bind(bridge)
            .bind(portal.chat.as_str())
            .bind(receiver_column(portal))
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten()))
    }

    /// Records a direct chat `user_id` opened with the bot as their management room.
    pub async fn put_management_room(&self, room_id: &str, user_id: &str) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO management_room (room_id, user_id) VALUES ($1, $2) \
                 ON CONFLICT (room_id) DO UPDATE SET user_id = $2",
            )
            .bind(room_id)
            .bind(user_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Every management room, with its user.
    pub async fn management_rooms(&self) -> StoreResult<Vec<(String, String)>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT room_id, user_id FROM management_room")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }
}
