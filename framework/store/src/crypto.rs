//! The encryption engine's items (see the `crypto_items` migration): opaque values by owner
//! (a device), kind and key, read all at once at start and written in atomic groups.

use sqlx::Row;

use super::{Store, StoreResult};

/// One stored item of a device's encryption state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoItem {
    /// What it is (`account`, `session`, `inbound_group_session`…).
    pub kind: String,
    /// Which one of its kind.
    pub key: String,
    /// Its value, as the engine serialised it.
    pub value: Vec<u8>,
}

/// One change of a device's encryption state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptoWrite {
    /// Stores an item, replacing the one of the same kind and key.
    Put(CryptoItem),
    /// Removes the item of this kind and key, if any.
    Delete {
        /// Its kind.
        kind: String,
        /// Its key.
        key: String,
    },
    /// Removes every item of this kind whose key starts with `prefix`.
    DeletePrefix {
        /// Their kind.
        kind: String,
        /// The start of their keys.
        prefix: String,
    },
}

impl Store {
    /// Every stored item of `owner`'s encryption state.
    pub async fn crypto_items(&self, owner: &str) -> StoreResult<Vec<CryptoItem>> {
        on_pool!(self, pool => {
            let rows = sqlx::query("SELECT kind, key, value FROM crypto_item WHERE owner = $1")
                .bind(owner)
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(CryptoItem {
                        kind: r.try_get(0)?,
                        key: r.try_get(1)?,
                        value: r.try_get(2)?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    /// Applies `writes` to `owner`'s encryption state, in order, all or none.
    pub async fn write_crypto(&self, owner: &str, writes: &[CryptoWrite]) -> StoreResult<()> {
        if writes.is_empty() {
            return Ok(());
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for write in writes {
                match write {
                    CryptoWrite::Put(item) => {
                        sqlx::query(
                            "INSERT INTO crypto_item (owner, kind, key, value) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (owner, kind, key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(owner)
                        .bind(&item.kind)
                        .bind(&item.key)
                        .bind(&item.value)
                        .execute(&mut *tx)
                        .await?;
                    }
                    CryptoWrite::Delete { kind, key } => {
                        sqlx::query("DELETE FROM crypto_item WHERE owner = $1 AND kind = $2 AND key = $3")
                            .bind(owner)
                            .bind(kind)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                    CryptoWrite::DeletePrefix { kind, prefix } => {
                        sqlx::query(
                            "DELETE FROM crypto_item WHERE owner = $1 AND kind = $2 \
                             AND substr(key, 1, length($3)) = $3",
                        )
                        .bind(owner)
                        .bind(kind)
                        .bind(prefix)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
