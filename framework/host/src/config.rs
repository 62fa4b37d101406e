//! The config sections the host reads: the outbox, media, outage notices, puppets, and the
//! compiled puppet templates. The runtime's `Config` composes them with the other parts' sections.

use serde::{Deserialize, Serialize};

/// The outbox section: Matrix events a bridge could not deliver to its network yet wait in the
/// database and are retried with growing pauses, in order per portal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Longest pause between two delivery attempts (the pause starts at 1 s and doubles).
    pub retry_max_interval_secs: u64,
    /// After this long undelivered, a message is given up and its sender told so.
    pub give_up_after_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            retry_max_interval_secs: 300,
            give_up_after_secs: 86_400,
        }
    }
}

/// The media section: files bridged either way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// The largest file bridged, in bytes; a larger one is refused with a notice.
    pub max_bytes: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_bytes: 50 * 1024 * 1024,
        }
    }
}

/// The outage_notices section: when rooms are told that a network (or Switchboard) is down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutageNoticesConfig {
    /// Seconds a connection must stay down (or Switchboard must have been down) before the
    /// rooms affected are told, once, and again when it is back; 0 turns the notices off.
    pub after_secs: u64,
}

impl Default for OutageNoticesConfig {
    fn default() -> Self {
        Self { after_secs: 180 }
    }
}

impl OutageNoticesConfig {
    /// The delay before a notice; `None` when notices are off.
    #[must_use]
    pub fn after(&self) -> Option<std::time::Duration> {
        (self.after_secs > 0).then(|| std::time::Duration::from_secs(self.after_secs))
    }
}

/// The puppets section: how long a bridge keeps a puppet it used in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PuppetsConfig {
    /// Seconds a puppet stays in memory after its last use (its next message after that looks
    /// it up in the store again).
    pub idle_secs: u64,
}

impl Default for PuppetsConfig {
    fn default() -> Self {
        Self { idle_secs: 3600 }
    }
}

/// How a bridge's puppets look, beyond what the network says (compiled templates).
#[derive(Clone, Debug, Default)]
pub struct PuppetTemplates {
    /// The display name (`name`, `id`, `network`); `None`: the network's name.
    pub displayname: Option<std::sync::Arc<switchboard_api::template::Template>>,
    /// The avatar `mxc://` URI (`avatar`, `id`, `network`); `None`: the network's picture.
    pub avatar: Option<std::sync::Arc<switchboard_api::template::Template>>,
}
