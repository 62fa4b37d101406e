//! How a bridge's connection to its network stands ([`BridgeState`]), and the port through
//! which the framework keeps that state, each login's, the stored logins and the outbox
//! signal for a bridge ([`HostPort`]).

use crate::PluginError;
use crate::ids::LoginId;
use crate::login::Login;

/// What the framework keeps for a bridge besides its Matrix side: the state of its connection
/// and of each login, its stored logins, and its outbox. Implemented by the host; a bridge
/// reaches it through [`BridgeContext`](crate::bridge::BridgeContext). Its setters are called
/// while a connection's link holds its own lock: they must be quick and must not call back
/// into a [`crate::connection::Link`].
#[async_trait::async_trait]
pub trait HostPort: Send + Sync + std::fmt::Debug {
    /// Records the connection's state.
    fn set_state(&self, state: BridgeState);
    /// The connection's state.
    fn state(&self) -> BridgeState;
    /// Records one login's state.
    fn set_login_state(&self, login: &LoginId, state: BridgeState);
    /// One login's state, if the bridge said.
    fn login_state(&self, login: &LoginId) -> Option<BridgeState>;
    /// The bridge's logins, oldest first.
    async fn logins(&self) -> Result<Vec<Login>, PluginError>;
    /// The network is back: try what waits in the outbox now.
    fn network_restored(&self);
}

/// How a bridge's connection to its network stands, as operators and users see it (in
/// `/metrics` as `switchboard_bridge_state` and in the `ping` command).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BridgeState {
    /// Starting; not connected yet.
    #[default]
    Starting,
    /// Connecting (or reconnecting) to the network.
    Connecting,
    /// Connected: messages flow.
    Connected,
    /// Lost the connection for a passing reason; messages wait in the outbox.
    TransientDisconnect(String),
    /// The network refused the credentials: an operator or user must act.
    BadCredentials(String),
}

impl BridgeState {
    /// Every state's metric label.
    pub const LABELS: [&'static str; 5] = [
        "starting",
        "connecting",
        "connected",
        "transient_disconnect",
        "bad_credentials",
    ];

    /// The metric label (`connected`, `transient_disconnect`…).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::Starting => Self::LABELS[0],
            Self::Connecting => Self::LABELS[1],
            Self::Connected => Self::LABELS[2],
            Self::TransientDisconnect(_) => Self::LABELS[3],
            Self::BadCredentials(_) => Self::LABELS[4],
        }
    }
}

impl std::fmt::Display for BridgeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Starting => f.write_str("starting"),
            Self::Connecting => f.write_str("connecting"),
            Self::Connected => f.write_str("connected"),
            Self::TransientDisconnect(why) => write!(f, "disconnected for now ({why})"),
            Self::BadCredentials(why) => write!(f, "refused its credentials ({why})"),
        }
    }
}
