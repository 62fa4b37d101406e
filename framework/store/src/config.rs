//! The `database` section of the config.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How durably SQLite commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync on every commit: an acknowledged transaction survives power loss.
    Full,
    /// fsync at checkpoints: survives a crash of Switchboard, not a power loss.
    Normal,
}

/// The database section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; empty means `switchboard.db` in `data_dir`.
    pub url: String,
    /// Most connections in the pool (PostgreSQL; SQLite uses one).
    pub max_connections: u32,
    /// SQLite durability (ignored for PostgreSQL).
    pub sqlite_synchronous: SqliteSync,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// The URL with any password replaced, for logs and errors.
#[must_use]
pub fn redact_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one, excluded above.
            let _ = parsed.set_password(Some("<redacted>"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 8,
            sqlite_synchronous: SqliteSync::Normal,
        }
    }
}
