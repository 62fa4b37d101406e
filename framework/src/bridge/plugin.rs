//! The bridge plug-in boundary: what a bridge implements, what it gets to act with, and the
//! map of portal rooms the host uses to route Matrix events to their bridge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use ruma::{OwnedRoomId, RoomId};
use tokio_util::sync::CancellationToken;

use super::backfill::BackfillHandler;
use super::commands::BridgeCommand;
use super::from_matrix::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRead, MatrixRedaction,
    MatrixTyping,
};
use super::ids::{LoginId, PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};
use super::login::{Login, LoginHandler};
use super::matrix::{BridgeError, BridgeInfo, MatrixSide, PortalInfo, PuppetProfile};
use super::media::MediaHandler;
use crate::command::{CommandReply, CommandSpec};
use switchboard_api::PluginError;

/// A bridge plug-in: connects one remote network to Matrix through portals and puppets.
#[async_trait::async_trait]
pub trait Bridge: Send + Sync + 'static {
    /// Its id (the key of its config section `bridges.<id>` and of its rows in the database)
    /// and the network's name.
    fn info(&self) -> BridgeInfo;

    /// The localpart template of its puppets, holding `{{id}}` once (default `_<id>_{{id}}`).
    fn puppet_template(&self) -> String {
        format!("_{}_{{{{id}}}}", self.info().id)
    }

    /// Connects to the remote network. What the network sends goes to Matrix through
    /// `ctx.matrix()`; long-running work is spawned and stops when `ctx.shutdown()` fires.
    async fn start(&self, ctx: BridgeContext) -> Result<(), BridgeError>;

    /// A message a Matrix user sent in one of this bridge's portals: deliver it to the remote
    /// network and return its id there (the framework records the mapping, for replies, edits,
    /// reactions and redactions). Return a transient [`PluginError`] when the network cannot
    /// take it now: it waits in the outbox and is retried, in order, with backoff; return
    /// a permanent one when it never can: its sender is told why.
    async fn handle_matrix_message(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError>;

    /// The prefix of its chat commands (default `!<id>`, e.g. `!xmpp help`).
    fn command_prefix(&self) -> String {
        format!("!{}", self.info().id)
    }

    /// Its own chat commands, beyond the built-in `help`, `version` and `ping`.
    fn commands(&self) -> Vec<CommandSpec> {
        Vec::new()
    }

    /// Runs one of its own commands (already checked: known, permitted, right number of
    /// arguments); what it returns is the bridge bot's answer. A
    /// permanent [`PluginError`] is shown to the sender.
    async fn handle_command(
        &self,
        _ctx: &BridgeContext,
        command: &BridgeCommand,
    ) -> Result<CommandReply, PluginError> {
        Ok(format!("`{}` does nothing yet.", command.invocation.name).into())
    }

    /// Brings a portal up to date with its remote chat (the `sync` command): name, topic,
    /// members… through [`MatrixSide::apply`]. Returns what the sender is told.
    async fn sync(&self, ctx: &BridgeContext, portal: &PortalKey) -> Result<String, PluginError> {
        let _ = (ctx, portal);
        Ok(format!("{} has nothing to sync.", self.info().displayname))
    }

    /// Whether an admin may bridge an existing Matrix room to the remote chat `chat` (the
    /// `bridge <chat id>` command): `Err` says why not, to the admin. By default a bridge only
    /// has the portals it creates itself.
    async fn allow_bridge(
        &self,
        _ctx: &BridgeContext,
        _chat: &RemoteChatId,
    ) -> Result<(), PluginError> {
        Err(PluginError::permanent(format!(
            "{} does not bridge existing rooms",
            self.info().displayname
        )))
    }

    /// Logins, if users log in to the network with their own accounts.
    fn logins(&self) -> Option<&dyn LoginHandler> {
        None
    }

    /// Portals created on demand when a Matrix user asks for the alias of a remote chat
    /// (`#_<id>_<chat>:server`), if the network lets anyone reach its chats by id.
    fn aliases(&self) -> Option<&dyn AliasHandler> {
        None
    }

    /// Files, if the network can carry them (otherwise the sender is told that files do not
    /// reach it).
    fn media(&self) -> Option<&dyn MediaHandler> {
        None
    }

    /// Typing notifications and read receipts of Matrix users, if the network shows them.
    fn presence(&self) -> Option<&dyn PresenceHandler> {
        None
    }

    /// Edits of Matrix messages, if the network can carry them (otherwise the sender is told
    /// that edits do not reach it).
    fn edits(&self) -> Option<&dyn EditHandler> {
        None
    }

    /// Reactions, if the network can carry them (otherwise they stay on Matrix).
    fn reactions(&self) -> Option<&dyn ReactionHandler> {
        None
    }

    /// Redactions of Matrix messages, if the network can delete messages (otherwise the sender
    /// is told that deletions do not reach it).
    fn redactions(&self) -> Option<&dyn RedactionHandler> {
        None
    }

    /// Applies new settings from its config section (`bridges.<id>`) without a restart;
    /// `Err` says why not (wrong settings, or ones that take effect at the next restart). By
    /// default a
    /// bridge reads its settings at start only.
    fn reload(
        &self,
        _section: &crate::config::PluginSection,
    ) -> Result<(), crate::config::ReloadError> {
        Err(crate::config::ReloadError::NeedsRestart(
            "this bridge reads its settings at start only".to_owned(),
        ))
    }

    /// Chats started from Matrix by inviting a puppet, if the network allows them.
    fn direct_chats(&self) -> Option<&dyn DirectChatHandler> {
        None
    }

    /// Its history capability: past messages shown in new portal rooms.
    fn backfill(&self) -> Option<&dyn BackfillHandler> {
        None
    }
}

/// A bridge whose chats can be joined by alias: asking for `#<alias of chat>:server` creates
/// the portal.
#[async_trait::async_trait]
pub trait AliasHandler: Send + Sync {
    /// How the portal of `chat` looks, if that chat exists and may be joined this way.
    async fn portal_for_alias(
        &self,
        ctx: &BridgeContext,
        chat: &RemoteChatId,
    ) -> Option<PortalInfo>;
}

/// A bridge whose network lets Matrix users start chats: a Matrix user invites a remote
/// user's puppet (`@_<bridge>_<remote id>:server`) to a room, usually a direct chat; the
/// framework asks the bridge to open the chat on the network, the puppet joins, and the room
/// becomes that chat's portal. The sender needs the `user` permission level.
#[async_trait::async_trait]
pub trait DirectChatHandler: Send + Sync {
    /// Whether `remote` is a user of the network, and how their puppet looks if so. Asked
    /// when the homeserver asks about a puppet nobody used yet (someone invites it): `None`
    /// makes the invite fail with "unknown user".
    async fn resolve_user(
        &self,
        ctx: &BridgeContext,
        remote: &RemoteUserId,
    ) -> Result<Option<PuppetProfile>, PluginError>;

    /// Opens a chat between the Matrix user `requester` and `remote` on the network; the
    /// key of its portal (usually per user: `receiver` set). A permanent [`PluginError`]
    /// declines the invite with that reason.
    async fn start_direct_chat(
        &self,
        ctx: &BridgeContext,
        requester: &ruma::UserId,
        remote: &RemoteUserId,
    ) -> Result<PortalKey, PluginError>;
}

/// A bridge whose network shows who is typing and who has read what. Only users with their
/// own login (or any user, for a bridge that needs no login) are passed on; relayed users are
/// not. Delivery is best effort: nothing is queued when the network cannot take it.
#[async_trait::async_trait]
pub trait PresenceHandler: Send + Sync {
    /// A Matrix user started or stopped typing in a portal.
    async fn handle_matrix_typing(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        typing: &MatrixTyping,
    ) -> Result<(), PluginError>;

    /// A Matrix user read a portal up to a bridged message.
    async fn handle_matrix_read(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        read: &MatrixRead,
    ) -> Result<(), PluginError>;

    /// A Matrix user joined or left a portal (ignored by default). Unlike typing, this is
    /// delivered like a message: in order, through the outbox when the network is down.
    async fn handle_matrix_membership(
        &self,
        _ctx: &BridgeContext,
        _portal: &PortalKey,
        _membership: &MatrixMembership,
    ) -> Result<(), PluginError> {
        Ok(())
    }
}

/// A bridge whose network can edit messages.
#[async_trait::async_trait]
pub trait EditHandler: Send + Sync {
    /// A Matrix user edited a message bridged to the network.
    async fn handle_matrix_edit(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        edit: &MatrixEdit,
    ) -> Result<(), PluginError>;
}

/// A bridge whose network has reactions.
#[async_trait::async_trait]
pub trait ReactionHandler: Send + Sync {
    /// A Matrix user reacted to a bridged message.
    async fn handle_matrix_reaction(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        reaction: &MatrixReaction,
    ) -> Result<(), PluginError>;

    /// A Matrix user took a reaction back (`removal.reaction` is its key).
    async fn handle_matrix_reaction_removal(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        removal: &MatrixRedaction,
    ) -> Result<(), PluginError>;
}

/// A bridge whose network can delete messages.
#[async_trait::async_trait]
pub trait RedactionHandler: Send + Sync {
    /// A Matrix user redacted a message bridged to the network.
    async fn handle_matrix_redaction(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        redaction: &MatrixRedaction,
    ) -> Result<(), PluginError>;
}

/// What a bridge gets to act with.
#[derive(Clone, Debug)]
pub struct BridgeContext {
    matrix: MatrixSide,
    shutdown: CancellationToken,
    outbox: Arc<OutboxSignal>,
    state: Arc<std::sync::Mutex<BridgeState>>,
    login_states: Arc<std::sync::Mutex<HashMap<LoginId, BridgeState>>>,
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

/// Wakes a bridge's outbox worker: something was queued, or the network is back.
#[derive(Debug, Default)]
pub(crate) struct OutboxSignal {
    pub(crate) wake: tokio::sync::Notify,
    /// Set when the network is back: try what waits now, whatever its backoff says.
    pub(crate) retry_now: AtomicBool,
}

impl BridgeContext {
    /// A context acting through `matrix` until `shutdown`.
    #[must_use]
    pub fn new(matrix: MatrixSide, shutdown: CancellationToken) -> Self {
        let ctx = Self {
            matrix,
            shutdown,
            outbox: Arc::default(),
            state: Arc::default(),
            login_states: Arc::default(),
        };
        ctx.publish_state(&BridgeState::Starting);
        ctx
    }

    /// Records how the connection to the network stands (logged when it changes, and shown in
    /// `/metrics` and the `ping` command).
    pub fn set_state(&self, state: BridgeState) {
        let Ok(mut current) = self.state.lock() else {
            return;
        };
        if *current != state {
            tracing::info!(bridge = %self.matrix.info().id, state = %state, "bridge state");
            self.publish_state(&state);
            *current = state;
        }
    }

    /// Records how one login's connection stands (shown in `list-logins`, the provisioning
    /// API and `/metrics` as `switchboard_bridge_logins`).
    pub fn set_login_state(&self, login: &LoginId, state: BridgeState) {
        let Ok(mut states) = self.login_states.lock() else {
            return;
        };
        if states.get(login) != Some(&state) {
            tracing::info!(bridge = %self.matrix.info().id, %login, state = %state, "login state");
        }
        states.insert(login.clone(), state);
        self.publish_login_states(&states);
    }

    /// How a login's connection stands, if the bridge said.
    #[must_use]
    pub fn login_state(&self, login: &LoginId) -> Option<BridgeState> {
        self.login_states.lock().ok()?.get(login).cloned()
    }

    /// Forgets a login's state (it logged out).
    pub(crate) fn forget_login_state(&self, login: &LoginId) {
        if let Ok(mut states) = self.login_states.lock() {
            states.remove(login);
            self.publish_login_states(&states);
        }
    }

    fn publish_login_states(&self, states: &HashMap<LoginId, BridgeState>) {
        let gauge = &self.matrix.metrics.bridge_logins;
        let id = &self.matrix.info().id;
        for label in BridgeState::LABELS {
            let count = states.values().filter(|s| s.label() == label).count();
            gauge
                .with_label_values(&[id.as_str(), label])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Every login of this bridge (to reconnect them at start), oldest first.
    pub async fn logins(&self) -> Result<Vec<Login>, BridgeError> {
        let records = self.matrix.store.logins(&self.matrix.info().id).await?;
        Ok(records.into_iter().filter_map(login_from_record).collect())
    }

    /// How the connection to the network stands.
    #[must_use]
    pub fn state(&self) -> BridgeState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn publish_state(&self, state: &BridgeState) {
        let gauge = &self.matrix.metrics.bridge_state;
        let id = &self.matrix.info().id;
        for label in BridgeState::LABELS {
            gauge
                .with_label_values(&[id.as_str(), label])
                .set(i64::from(label == state.label()));
        }
    }

    pub(crate) fn outbox_signal(&self) -> &OutboxSignal {
        &self.outbox
    }

    /// Tells the framework the network is reachable again (after a reconnect): what waits
    /// in the outbox is tried now instead of after its backoff.
    pub fn network_restored(&self) {
        self.outbox.retry_now.store(true, Ordering::Relaxed);
        self.outbox.wake.notify_one();
    }

    /// The Matrix side: portals, puppets, sending what the network said.
    #[must_use]
    pub fn matrix(&self) -> &MatrixSide {
        &self.matrix
    }

    /// Fires when Switchboard stops.
    #[must_use]
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// A stored login as handed to a bridge (`None` if the stored row is unusable: a bad user
/// id, which only a hand edit of the database makes).
pub(crate) fn login_from_record(record: crate::store::LoginRecord) -> Option<Login> {
    Some(Login {
        id: LoginId(record.login_id),
        user_id: ruma::OwnedUserId::try_from(record.user_id).ok()?,
        remote_name: record.remote_name,
        data: serde_json::from_str(&record.data).unwrap_or_default(),
    })
}

/// Which rooms are portals, of which bridge: kept in memory (loaded at start, added to when a
/// portal room is created) so that routing an event, or finding a portal's room, costs no
/// database query.
#[derive(Clone, Debug, Default)]
pub struct PortalRooms {
    rooms: Arc<RwLock<RoomIndex>>,
}

/// Portal rooms both ways: room → (bridge, portal), and (bridge, portal) → room.
#[derive(Debug, Default)]
struct RoomIndex {
    by_room: HashMap<OwnedRoomId, (String, PortalKey)>,
    by_portal: HashMap<(String, PortalKey), OwnedRoomId>,
}

impl PortalRooms {
    /// Records that `room_id` is the portal `key` of `bridge`.
    pub fn insert(&self, room_id: OwnedRoomId, bridge: &str, key: PortalKey) {
        if let Ok(mut rooms) = self.rooms.write() {
            let portal = (bridge.to_owned(), key);
            rooms.by_portal.insert(portal.clone(), room_id.clone());
            if let Some(old) = rooms.by_room.insert(room_id, portal.clone())
                && old != portal
            {
                rooms.by_portal.remove(&old);
            }
        }
    }

    /// The bridge and portal of `room_id`, if it is a portal.
    #[must_use]
    pub fn get(&self, room_id: &RoomId) -> Option<(String, PortalKey)> {
        self.rooms.read().ok()?.by_room.get(room_id).cloned()
    }

    /// The room of `bridge`'s portal `key`, if it is known here.
    #[must_use]
    pub fn room_of(&self, bridge: &str, key: &PortalKey) -> Option<OwnedRoomId> {
        self.rooms
            .read()
            .ok()?
            .by_portal
            .get(&(bridge.to_owned(), key.clone()))
            .cloned()
    }

    /// Forgets that `room_id` is a portal.
    pub fn remove(&self, room_id: &RoomId) {
        if let Ok(mut rooms) = self.rooms.write()
            && let Some(portal) = rooms.by_room.remove(room_id)
        {
            rooms.by_portal.remove(&portal);
        }
    }

    /// How many portal rooms `bridge` has.
    #[must_use]
    pub fn count(&self, bridge: &str) -> usize {
        self.rooms.read().map_or(0, |rooms| {
            rooms.by_room.values().filter(|(b, _)| b == bridge).count()
        })
    }

    /// Whether no room is a portal (then routing can skip the lookup).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rooms
            .read()
            .map_or(true, |rooms| rooms.by_room.is_empty())
    }
}
