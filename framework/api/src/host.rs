//! What a bot may see and do of the Switchboard it runs in, for admin tools: the plug-ins
//! hosted beside it, each bridge's state, portals and puppets, turning plug-ins off and on,
//! reloading the config, the health checks, and the metrics. Implemented by the host; a bot
//! reaches it through [`BotContext::host`](crate::bot::BotContext::host).

use ruma::RoomId;

use crate::PluginError;
use crate::ids::PortalKey;
use crate::status::BridgeState;

/// The plug-ins hosted beside a bot, and Switchboard's health.
#[async_trait::async_trait]
pub trait HostView: Send + Sync + std::fmt::Debug {
    /// The bots, each with whether it runs.
    fn bots(&self) -> Vec<(String, bool)>;

    /// Turns the plug-in `id` on or off until the next restart. A bot turned off sees no
    /// events; a bridge turned off keeps Matrix events in the outbox until it is on again.
    /// `Err` when there is no such plug-in.
    fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), PluginError>;

    /// The health checks: the registration against the config, the database, and the
    /// homeserver (reachable, accepting our token, reaching us).
    async fn doctor(&self) -> Vec<Finding>;

    /// Reads the config file again. If it is invalid, nothing changes and the finding says
    /// what is wrong (field, value, what is expected). Otherwise each changed plug-in section
    /// is handed to its plug-in to apply; what cannot be applied now is named as taking effect
    /// at the next restart.
    fn reload_config(&self) -> Vec<Finding>;

    /// Every hosted bridge, in the config's order.
    fn bridges(&self) -> Vec<BridgeSummary>;

    /// Every portal that has a room.
    async fn portals(&self) -> Result<Vec<PortalSummary>, PluginError>;

    /// The portal `room_id` is, if it is one.
    fn portal_of(&self, room_id: &RoomId) -> Option<PortalSummary>;

    /// Stops bridging the portal `room_id` (the room stays); what it was, if it was one.
    async fn unbridge(&self, room_id: &RoomId) -> Result<Option<PortalSummary>, PluginError>;

    /// The puppets of one bridge or of all, at most `limit`.
    async fn puppets(
        &self,
        bridge: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PuppetSummary>, PluginError>;

    /// Every metric's values now, as `/metrics` shows them.
    fn metric_samples(&self) -> Vec<Sample>;
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// As it should be.
    Ok,
    /// Works, but something should be fixed.
    Warn,
    /// Broken.
    Fail,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        })
    }
}

/// One finding: how a check came out, and what it found (with the fix, if any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// How it came out.
    pub severity: Severity,
    /// What was found.
    pub text: String,
}

impl Finding {
    /// A finding of `severity` saying `text`.
    pub fn new(severity: Severity, text: impl Into<String>) -> Self {
        Self {
            severity,
            text: text.into(),
        }
    }
}

/// One hosted bridge, as it stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSummary {
    /// Its id.
    pub id: String,
    /// Its network's name.
    pub network: String,
    /// Its connection to the network.
    pub state: BridgeState,
    /// How many portal rooms it has.
    pub portal_rooms: usize,
    /// Whether it runs (an admin may turn it off).
    pub enabled: bool,
}

/// One portal room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalSummary {
    /// The bridge.
    pub bridge: String,
    /// The remote chat (and whose view of it).
    pub key: PortalKey,
    /// The Matrix room.
    pub room_id: String,
}

/// One puppet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PuppetSummary {
    /// The bridge.
    pub bridge: String,
    /// The remote user.
    pub remote: String,
    /// Their Matrix user.
    pub user_id: String,
}

/// One value of a metric now (a histogram gives its count of observations).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric's name, e.g. `switchboard_inbox_depth`.
    pub name: String,
    /// Its labels, e.g. `[("bridge", "loopback")]`.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// One command run, as a bot's audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it ran (ms since the epoch).
    pub at_ms: i64,
    /// Who ran it.
    pub sender: String,
    /// Where.
    pub room_id: String,
    /// What was run (secrets left out).
    pub command: String,
    /// How it ended.
    pub outcome: String,
}
