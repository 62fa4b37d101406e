//! The lease: the right to serve one appservice registration from one database. On PostgreSQL
//! it is a session-level advisory lock held on a connection of its own, so that a second
//! Switchboard on the same database waits as a hot standby and takes over the moment the
//! active one's connection ends (it died, or lost the database). On SQLite it is an exclusive
//! lock on a file beside the database, so that a second process on the same file is refused.

use std::io::{Read, Seek, Write};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use super::{StoreError, StoreResult, redact_url_password};

/// A lease held: dropping it (or the process ending) releases it.
#[derive(Debug)]
pub enum Lease {
    /// The advisory lock, held by this connection's session.
    Postgres(PgConnection),
    /// The locked file (it holds this process's id).
    Sqlite(std::fs::File),
}

/// The outcome of trying to take the lease.
#[derive(Debug)]
pub enum LeaseAttempt {
    /// Taken: this process serves.
    Taken(Lease),
    /// Another process holds it; who, as far as the database tells.
    HeldBy(String),
}

/// The advisory lock key of an appservice (FNV-1a of its id): processes serving different
/// registrations from one database do not block each other.
fn lock_key(appservice_id: &str) -> i64 {
    let hash = format!("switchboard:{appservice_id}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// How this process shows itself to the other one (`pid 1234 on host`); its PostgreSQL
/// connections are named `switchboard <this>` (the pool) and `switchboard lease, <this>`.
pub(crate) fn this_process() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!("pid {} on {}", std::process::id(), host)
}

impl Lease {
    /// Tries once to take the lease of `appservice_id` in the database at `url`.
    pub async fn try_take(url: &str, appservice_id: &str) -> StoreResult<LeaseAttempt> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::try_take_postgres(url, appservice_id).await
        } else {
            Self::try_take_sqlite(url)
        }
    }

    async fn try_take_postgres(url: &str, appservice_id: &str) -> StoreResult<LeaseAttempt> {
        let connect_err = |source| StoreError::Connect {
            url: redact_url_password(url),
            source,
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(connect_err)?
            .application_name(&format!("switchboard lease, {}", this_process()))
            .disable_statement_logging();
        let mut connection = options.connect().await.map_err(connect_err)?;
        let key = lock_key(appservice_id);
        let taken: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut connection)
            .await?
            .try_get(0)?;
        if taken {
            return Ok(LeaseAttempt::Taken(Lease::Postgres(connection)));
        }
        // Advisory locks show their 64-bit key as two 32-bit halves.
        let holder: Option<String> = sqlx::query(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND l.classid::bigint = (($1 >> 32) & 4294967295) \
             AND l.objid::bigint = ($1 & 4294967295)",
        )
        .bind(key)
        .fetch_optional(&mut connection)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
        let _ = connection.close().await;
        Ok(LeaseAttempt::HeldBy(holder.map_or_else(
            || "another Switchboard".to_owned(),
            |name| name.trim_start_matches("switchboard lease, ").to_owned(),
        )))
    }

    fn try_take_sqlite(url: &str) -> StoreResult<LeaseAttempt> {
        let io_err = |e: std::io::Error| StoreError::Connect {
            url: redact_url_password(url),
            source: sqlx::Error::Io(e),
        };
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).map_err(|source| {
            StoreError::Connect {
                url: redact_url_password(url),
                source,
            }
        })?;
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let mut path = options.get_filename().as_os_str().to_owned();
        path.push(".lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io_err)?;
                file.rewind().map_err(io_err)?;
                file.write_all(this_process().as_bytes()).map_err(io_err)?;
                Ok(LeaseAttempt::Taken(Lease::Sqlite(file)))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Ok(LeaseAttempt::HeldBy(if holder.trim().is_empty() {
                    "another Switchboard".to_owned()
                } else {
                    holder.trim().to_owned()
                }))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    /// Ends the database sessions of the process that held the lease before (`holder`, as
    /// [`LeaseAttempt::HeldBy`] named it) and waits until they are gone: a write it had in
    /// flight when it died, or goes on making after it lost the lease, is rolled back instead
    /// of landing after this process read the inbox. The number of sessions ended.
    pub async fn fence(&mut self, holder: &str) -> StoreResult<i64> {
        let Lease::Postgres(connection) = self else {
            return Ok(0);
        };
        let name = format!("switchboard {holder}");
        let ended: i64 = sqlx::query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
        )
        .bind(&name)
        .fetch_one(&mut *connection)
        .await?
        .try_get(0)?;
        for _ in 0..50 {
            let left: i64 = sqlx::query(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = $1",
            )
            .bind(&name)
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(ended)
    }

    /// Whether the lease is still held: on PostgreSQL, whether its connection still answers
    /// (when it does not, the server has released the lock, and another process may have it).
    pub async fn check(&mut self) -> StoreResult<()> {
        match self {
            Lease::Postgres(connection) => {
                sqlx::query("SELECT 1").execute(connection).await?;
                Ok(())
            }
            Lease::Sqlite(_) => Ok(()),
        }
    }

    /// Whether other processes may wait for this lease (PostgreSQL) rather than be refused.
    #[must_use]
    pub fn allows_standby(url: &str) -> bool {
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_per_appservice_and_stay_the_same() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("a"), lock_key("b"));
    }

    #[tokio::test]
    async fn a_second_process_on_an_sqlite_file_is_told_who_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let LeaseAttempt::Taken(first) = Lease::try_take(&url, "x").await.expect("try") else {
            panic!("the first process takes the lease");
        };
        let LeaseAttempt::HeldBy(holder) = Lease::try_take(&url, "x").await.expect("try") else {
            panic!("the second is refused");
        };
        assert!(
            holder.starts_with(&format!("pid {} on ", std::process::id())),
            "{holder}"
        );
        drop(first);
        assert!(matches!(
            Lease::try_take(&url, "x").await.expect("try"),
            LeaseAttempt::Taken(_)
        ));
    }
}
