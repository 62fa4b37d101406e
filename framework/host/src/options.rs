//! What the host is given to run the plug-ins ([`HostOptions`]), and why it may fail to set
//! them up ([`HostError`]).

use std::sync::Arc;

use switchboard_api::PluginError;
use switchboard_api::clock::Clock;
use tokio_util::task::TaskTracker;

use crate::config::OutboxConfig;
use crate::diagnostics::Diagnostics;
use crate::store::StoreError;

/// How the host treats events and plug-ins (from the config).
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// Join rooms the bot is invited to.
    pub accept_invites: bool,
    /// Retrying what bridges could not deliver yet.
    pub outbox: OutboxConfig,
    /// Who may use the bridges, and which of their commands.
    pub permissions: crate::permission::Permissions,
    /// The text of relayed messages.
    pub relay_template: crate::template::Template,
    /// Double puppeting: server name → token of the appservice covering its users.
    pub double_puppets: std::collections::BTreeMap<String, String>,
    /// The largest file bridged either way.
    pub max_media_bytes: u64,
    /// How long a bridge keeps a puppet it used in memory.
    pub puppet_idle: std::time::Duration,
    /// How many messages of history new portal rooms show.
    pub backfill_messages: usize,
    /// The health checks, config reloads and metrics the admin tools show (the runtime's).
    pub diagnostics: Arc<dyn Diagnostics>,
    /// Tracks the plug-ins' background tasks and the host's own (outbox workers, reapers):
    /// the runtime waits for them at shutdown before it closes the database.
    pub tasks: TaskTracker,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// Puppet display-name templates, by bridge id (bridges without one show remote names).
    pub puppet_templates: std::collections::BTreeMap<String, crate::config::PuppetTemplates>,
    /// How long a network connection stays down before its rooms are told (`None`: never).
    pub outage_notices_after: Option<std::time::Duration>,
    /// When Switchboard was last down, if that lasted long enough to tell the rooms whose
    /// messages from then are delivered late.
    pub downtime: Option<Downtime>,
    /// The encryption engine, when end-to-bridge encryption is on.
    pub decryption: Option<Arc<dyn crate::decryption::RoomDecryption>>,
}

/// A time Switchboard was not running (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downtime {
    /// Its last sign of life before.
    pub from_ms: i64,
    /// When it started again.
    pub to_ms: i64,
}

impl Downtime {
    /// Whether a message sent at `at_ms` was sent while Switchboard was down.
    #[must_use]
    pub fn contains(&self, at_ms: i64) -> bool {
        (self.from_ms..=self.to_ms).contains(&at_ms)
    }
}

/// A plug-in cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A bridge's puppet template is unusable.
    #[error("bridge {id}: {source}")]
    PuppetTemplate {
        /// The bridge.
        id: String,
        /// What is wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The portal rooms could not be loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bot failed to start.
    #[error("bot {id} did not start: {reason}")]
    BotStart {
        /// The bot.
        id: String,
        /// Why.
        reason: String,
    },
    /// A bridge failed to start.
    #[error("bridge {id} did not start: {source}")]
    Start {
        /// The bridge.
        id: String,
        /// Why.
        source: PluginError,
    },
}
