//! The bridge plug-in contract: what a bridge implements ([`Bridge`] and the capability traits
//! the framework discovers), and what it acts with ([`BridgeContext`]: the Matrix side of its
//! portals and puppets, and the state of its connection to the network).

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::Clock;
use crate::command::{CommandInvocation, CommandReply, CommandSpec};
use crate::config::{PluginSection, ReloadError};
use crate::connection::{Connector, Link};
use crate::ids::{LoginId, PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};
use crate::login::{Login, LoginFlow, LoginRequest, LoginStep};
use crate::matrix::{
    MatrixEdit, MatrixMedia, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRead,
    MatrixRedaction, MatrixTyping,
};
use crate::permission::PermissionLevel;
use crate::remote::{
    Applied, BridgeInfo, Bridged, PortalInfo, PuppetProfile, RemoteEvent, RemoteMedia, RemoteText,
};
use crate::services::Services;
pub use crate::status::{BridgeState, HostPort};
use crate::thirdparty::{Fields, ThirdPartyProtocol};
use crate::{Backoff, PluginError};

/// What a bridge acts with: the Matrix side of its portals and puppets, the state of its
/// connection to the network, and the shutdown signal. Made by the framework; cheap to clone.
#[derive(Clone, Debug)]
pub struct BridgeContext {
    matrix: Arc<dyn MatrixSide>,
    host: Arc<dyn HostPort>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    clock: Arc<dyn Clock>,
}

impl BridgeContext {
    /// A context acting through `matrix` and `host`, with `services` (the framework makes one
    /// per bridge).
    #[must_use]
    pub fn new(matrix: Arc<dyn MatrixSide>, host: Arc<dyn HostPort>, services: Services) -> Self {
        Self {
            matrix,
            host,
            shutdown: services.shutdown,
            tasks: services.tasks,
            clock: services.clock,
        }
    }

    /// Where the time comes from (never `SystemTime::now`: tests run on a clock they move).
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Runs `task` in the background, named `name` in logs. Switchboard waits for it at
    /// shutdown before it closes the database, so a task should end soon after
    /// [`BridgeContext::shutdown`] fires. Use this rather than `tokio::spawn`.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::info_span!("task", bridge = %self.matrix.info().id, name);
        self.tasks.spawn(task.instrument(span));
    }

    /// Keeps `connector` connected in a tracked task named `name` (the bridge's link to its
    /// network): the bridge's state follows it (`connecting`, `connected`, disconnected with
    /// the reason), a drop reconnects after `backoff` (e.g.
    /// [`crate::connection::RECONNECT`]), and it closes at shutdown. The link returned closes
    /// it earlier.
    #[must_use = "the link closes the connection early; drop it to keep it until shutdown"]
    pub fn keep_connected(
        &self,
        name: &'static str,
        backoff: Backoff,
        connector: Arc<dyn Connector>,
    ) -> Link {
        self.supervise(name, None, backoff, connector)
    }

    /// Keeps the connection of `login` up, as [`BridgeContext::keep_connected`] does, its
    /// state being the login's. The framework does this itself for every login of a bridge
    /// whose [`LoginHandler::connect`] it calls (at start and after each new login) and
    /// closes it at logout.
    #[must_use = "the link closes the connection at logout"]
    pub fn keep_login_connected(
        &self,
        login: LoginId,
        backoff: Backoff,
        connector: Arc<dyn Connector>,
    ) -> Link {
        self.supervise("login", Some(login), backoff, connector)
    }

    fn supervise(
        &self,
        name: &'static str,
        login: Option<LoginId>,
        backoff: Backoff,
        connector: Arc<dyn Connector>,
    ) -> Link {
        let link = Link::new(
            name,
            login,
            Arc::clone(&self.host),
            self.shutdown.child_token(),
        );
        self.spawn(name, link.clone().supervise(connector, backoff));
        link
    }

    /// The Matrix side: portals, puppets, sending what the network said.
    #[must_use]
    pub fn matrix(&self) -> &dyn MatrixSide {
        &*self.matrix
    }

    /// Records how the connection to the network stands (logged when it changes, and shown in
    /// `/metrics` and the `ping` command).
    pub fn set_state(&self, state: BridgeState) {
        self.host.set_state(state);
    }

    /// How the connection to the network stands.
    #[must_use]
    pub fn state(&self) -> BridgeState {
        self.host.state()
    }

    /// Records how one login's connection stands (shown in `list-logins`, the provisioning
    /// API and `/metrics` as `switchboard_bridge_logins`).
    pub fn set_login_state(&self, login: &LoginId, state: BridgeState) {
        self.host.set_login_state(login, state);
    }

    /// How a login's connection stands, if the bridge said.
    #[must_use]
    pub fn login_state(&self, login: &LoginId) -> Option<BridgeState> {
        self.host.login_state(login)
    }

    /// Every login of this bridge (to reconnect them at start), oldest first.
    pub async fn logins(&self) -> Result<Vec<Login>, PluginError> {
        self.host.logins().await
    }

    /// Tells the framework the network is reachable again (after a reconnect): what waits
    /// in the outbox is tried now instead of after its backoff.
    pub fn network_restored(&self) {
        self.host.network_restored();
    }

    /// Fires when Switchboard stops.
    #[must_use]
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Whose data a bridge stores with the framework (as JSON, see [`MatrixSide::portal_data`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOwner<'a> {
    /// A portal.
    Portal(&'a PortalKey),
    /// A remote user's puppet.
    Puppet(&'a RemoteUserId),
    /// The bridge itself, under a key of its choosing.
    Bridge(&'a str),
}

impl std::fmt::Display for DataOwner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Portal(key) => write!(f, "portal {}", key.chat),
            Self::Puppet(remote) => write!(f, "puppet {remote}"),
            Self::Bridge(key) => write!(f, "bridge data {key}"),
        }
    }
}

/// The Matrix side of one bridge: puppets registered and kept in profile, portal rooms created
/// with the bridge's state, and remote messages sent into them once — whatever the network
/// sends twice, and whether Switchboard crashed in between. Implemented by the host; a bridge
/// reaches it through [`BridgeContext::matrix`].
#[async_trait::async_trait]
pub trait MatrixSide: Send + Sync + std::fmt::Debug {
    /// The bridge's id and network name.
    fn info(&self) -> &BridgeInfo;

    /// Applies something that happened in the remote chat of portal `key` (whose room is
    /// created, as [`Bridge::chat_info`] describes it, when a message needs it). Messages,
    /// edits, deletions and reactions of one portal are applied one at a time, in the order the calls came, and
    /// never twice (they are in the message map); typing, read markers, memberships, chat info
    /// and profiles are applied as they come.
    async fn apply(&self, key: &PortalKey, event: &RemoteEvent) -> Result<Applied, PluginError>;

    /// Makes sure the puppet of `remote` exists and looks as `profile` says; its user id.
    async fn ensure_puppet(
        &self,
        remote: &RemoteUserId,
        profile: &PuppetProfile,
    ) -> Result<OwnedUserId, PluginError>;

    /// The room of portal `key`, created as [`Bridge::chat_info`] describes it if it has none
    /// yet.
    async fn ensure_portal(&self, key: &PortalKey) -> Result<OwnedRoomId, PluginError>;

    /// Stops bridging portal `key` (its room stays, without the bridge's state).
    async fn unbridge(&self, key: &PortalKey) -> Result<(), PluginError>;

    /// Sends a remote text message into its portal once (see [`MatrixSide::apply`]).
    async fn bridge_text(
        &self,
        key: &PortalKey,
        message: &RemoteText,
    ) -> Result<Bridged, PluginError>;

    /// Edits the Matrix message of the remote message `target`; `None` when it was never
    /// bridged.
    async fn bridge_edit(
        &self,
        key: &PortalKey,
        target: &RemoteMessageId,
        edit: &RemoteText,
    ) -> Result<Option<Bridged>, PluginError>;

    /// Redacts the Matrix message of the remote message (part) `target`; the redaction's
    /// event, `None` when it was never bridged.
    async fn bridge_deletion(
        &self,
        key: &PortalKey,
        target: &RemoteMessageId,
        part: &str,
    ) -> Result<Option<OwnedEventId>, PluginError>;

    /// Uploads a file to the homeserver (streamed from its temporary file when it is large);
    /// its `mxc://` URI.
    async fn upload(
        &self,
        data: &crate::FileData,
        mimetype: &str,
        filename: &str,
    ) -> Result<String, PluginError>;

    /// Sends a remote file into its portal once.
    async fn bridge_media(
        &self,
        key: &PortalKey,
        media: &RemoteMedia,
    ) -> Result<Bridged, PluginError>;

    /// The power level of `user_id` in the room of portal `key` (0 when it has no room).
    async fn power_level(
        &self,
        key: &PortalKey,
        user_id: &ruma::UserId,
    ) -> Result<i64, PluginError>;

    /// Records that a Matrix message of portal `key` is the remote message `remote_id`
    /// (part). The framework records this itself once a bridge's handler returns; a bridge
    /// whose network echoes a message back, or answers it, before that can record it first,
    /// so that the echo is recognised and an answer can reply to it. Call it only once the
    /// network has accepted the message: an event mapped is never handed to the bridge again.
    async fn map_matrix_event(
        &self,
        key: &PortalKey,
        remote_id: &RemoteMessageId,
        part: &str,
        room_id: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<(), PluginError>;

    /// Records that `login` sees the chat of portal `key` (its connection brought the chat,
    /// or it joined it): its owner's messages in that portal go through it. Without this, a
    /// user with several logins sends through the login whose id is the portal's receiver,
    /// else their oldest; the user can choose with the `use-login` command.
    async fn set_portal_login(&self, key: &PortalKey, login: &Login) -> Result<(), PluginError>;

    /// The Matrix user a remote user is seen as: the Matrix user whose login they are, else
    /// their puppet.
    async fn matrix_user_of(&self, remote: &RemoteUserId) -> Result<OwnedUserId, PluginError>;

    /// An HTML pill mentioning `remote` (as [`MatrixSide::matrix_user_of`]), labelled `label`.
    async fn pill(&self, remote: &RemoteUserId, label: &str) -> Result<String, PluginError>;

    /// The Matrix event a remote message (part) was bridged as, if it was.
    async fn mapped_event(
        &self,
        key: &PortalKey,
        id: &RemoteMessageId,
        part: &str,
    ) -> Result<Option<OwnedEventId>, PluginError>;

    /// Reports something the network sent that cannot be brought into Matrix as sent, in
    /// portal `key`: a log line, `switchboard_bridge_remote_skipped_total{bridge,reason}`, and
    /// a notice `⚠️ <detail>` from the bridge bot, at most once a minute per portal and
    /// `reason` (a short label such as `too_large`).
    async fn report_skipped(&self, key: &PortalKey, reason: &'static str, detail: &str);

    /// Waits until what this bridge recorded so far is stored: the messages it brought into
    /// Matrix (their message-map entries, which the framework stores in groups, at the latest
    /// 20 ms after they were recorded). Call it once per batch before telling the network that
    /// messages were received (an MQTT acknowledgement, an IMAP `\Seen` flag…): a crash after
    /// that never shows them twice.
    async fn settle(&self) -> Result<(), PluginError>;

    /// The bridge's stored data of `owner`, as JSON, if it has any (see
    /// [`MatrixSide::portal_data`] for the typed form).
    async fn load_data(&self, owner: DataOwner<'_>) -> Result<Option<String>, PluginError>;

    /// Stores the bridge's data of `owner` as JSON, replacing what was there (a portal
    /// unknown so far is created without a room).
    async fn save_data(&self, owner: DataOwner<'_>, json: String) -> Result<(), PluginError>;
}

impl dyn MatrixSide + '_ {
    /// The bridge's own data about a portal (its type, stored as JSON); the default when it
    /// has none yet.
    pub async fn portal_data<T: DeserializeOwned + Default>(
        &self,
        key: &PortalKey,
    ) -> Result<T, PluginError> {
        self.typed_data(DataOwner::Portal(key)).await
    }

    /// Stores the bridge's own data about a portal (created, without a room, if unknown).
    pub async fn set_portal_data<T: Serialize>(
        &self,
        key: &PortalKey,
        data: &T,
    ) -> Result<(), PluginError> {
        self.set_typed_data(DataOwner::Portal(key), data).await
    }

    /// The bridge's own data about a remote user's puppet; the default when it has none yet.
    pub async fn puppet_data<T: DeserializeOwned + Default>(
        &self,
        remote: &RemoteUserId,
    ) -> Result<T, PluginError> {
        self.typed_data(DataOwner::Puppet(remote)).await
    }

    /// Stores the bridge's own data about a remote user's puppet.
    pub async fn set_puppet_data<T: Serialize>(
        &self,
        remote: &RemoteUserId,
        data: &T,
    ) -> Result<(), PluginError> {
        self.set_typed_data(DataOwner::Puppet(remote), data).await
    }

    /// The bridge's own data stored under `key`, tied to no portal or puppet (for example
    /// what a network's delivery state needs to survive a crash); the default when it has
    /// none yet.
    pub async fn bridge_data<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<T, PluginError> {
        self.typed_data(DataOwner::Bridge(key)).await
    }

    /// Stores the bridge's own data under `key`, replacing what was there.
    pub async fn set_bridge_data<T: Serialize>(
        &self,
        key: &str,
        data: &T,
    ) -> Result<(), PluginError> {
        self.set_typed_data(DataOwner::Bridge(key), data).await
    }

    async fn typed_data<T: DeserializeOwned + Default>(
        &self,
        owner: DataOwner<'_>,
    ) -> Result<T, PluginError> {
        match self.load_data(owner).await?.as_deref() {
            None | Some("{}" | "") => Ok(T::default()),
            Some(json) => serde_json::from_str(json).map_err(|e| {
                PluginError::permanent(format!(
                    "the bridge's stored data about {owner} does not read as expected: {e}"
                ))
            }),
        }
    }

    async fn set_typed_data<T: Serialize>(
        &self,
        owner: DataOwner<'_>,
        data: &T,
    ) -> Result<(), PluginError> {
        let json = serde_json::to_string(data).map_err(|e| {
            PluginError::permanent(format!(
                "the bridge's data about {owner} cannot be stored: {e}"
            ))
        })?;
        self.save_data(owner, json).await
    }
}

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
    /// `ctx.matrix()`; long-running work runs in tasks started with [`BridgeContext::spawn`]
    /// and ends when `ctx.shutdown()` fires (Switchboard waits for them).
    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError>;

    /// How the room of portal `portal` should look (name, topic, avatar, who is invited,
    /// direct or not), asked when the framework creates it — the first time a message of
    /// that chat is bridged — or bridges an existing room to it. By default a room with no
    /// name, invite or topic. A transient [`PluginError`] retries what needed the room later.
    /// It is asked while the portal is locked: it must not call [`BridgeContext::matrix`]
    /// for the same portal (that would wait for itself); uploading an avatar is fine.
    async fn chat_info(&self, portal: &PortalKey) -> Result<PortalInfo, PluginError> {
        let _ = portal;
        Ok(PortalInfo::default())
    }

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
    fn reload(&self, _section: &PluginSection) -> Result<(), ReloadError> {
        Err(ReloadError::NeedsRestart(
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

    /// Third-party lookups of its users and chats (the room directory, clients' network
    /// search), if the network can name them by fields.
    fn third_party(&self) -> Option<&dyn ThirdPartyHandler> {
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

/// A bridge whose users log in to the network with their own accounts.
#[async_trait::async_trait]
pub trait LoginHandler: Send + Sync {
    /// The ways to log in, the first being the default.
    fn login_flows(&self) -> Vec<LoginFlow>;

    /// Runs a flow one step: returns what the user must do next, or the new login. `Err` is
    /// shown to the user and ends the attempt.
    async fn login_step(
        &self,
        ctx: &BridgeContext,
        request: &LoginRequest,
    ) -> Result<LoginStep, PluginError>;

    /// Connects `login` to the network and serves its connection until it ends (see
    /// [`Connector::run`]: call [`Link::connected`] once the network accepted it; return a
    /// transient error to be reconnected after [`LoginHandler::reconnect_backoff`], a
    /// permanent one when the credentials are refused). The framework calls it for every
    /// stored login once the bridge started and for each new login, shows its state in
    /// `list-logins`, the provisioning API and `/metrics`, and closes it (dropping this
    /// future) at logout and shutdown. By default a login needs no connection of its own: it
    /// counts as connected.
    async fn connect(
        &self,
        _ctx: &BridgeContext,
        _login: &Login,
        link: &Link,
    ) -> Result<(), PluginError> {
        link.connected();
        link.closing().cancelled().await;
        Ok(())
    }

    /// How a login's dropped connection is retried (default [`crate::connection::RECONNECT`]).
    fn reconnect_backoff(&self) -> Backoff {
        crate::connection::RECONNECT
    }

    /// Logs a login out of the network (it is forgotten afterwards whatever this returns).
    async fn logout(&self, _ctx: &BridgeContext, _login: &Login) -> Result<(), PluginError> {
        Ok(())
    }

    /// Whether a message needs a login (own or relay) to be bridged. A network that carries
    /// everything as the bridge itself may say no; logins then speak for their owners.
    fn login_required(&self) -> bool {
        true
    }
}

/// A bridge whose network carries files.
#[async_trait::async_trait]
pub trait MediaHandler: Send + Sync {
    /// A Matrix user sent a file in a portal: deliver it and return its id on the network.
    async fn handle_matrix_media(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        media: &MatrixMedia,
    ) -> Result<RemoteMessageId, PluginError>;
}

/// Capability: a bridge that can fetch a chat's past messages.
#[async_trait::async_trait]
pub trait BackfillHandler: Send + Sync {
    /// Up to `limit` of the latest messages (text or files) of `portal`'s chat, oldest first,
    /// each with its network id and, ideally, `sent_at_ms`. Other kinds of events are skipped.
    async fn fetch_history(
        &self,
        portal: &PortalKey,
        limit: usize,
    ) -> Result<Vec<RemoteEvent>, PluginError>;
}

/// A command a Matrix user sent to a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeCommand {
    /// The command, its arguments and their raw text.
    pub invocation: CommandInvocation,
    /// The command's event.
    pub event_id: OwnedEventId,
    /// The room it was sent in.
    pub room_id: OwnedRoomId,
    /// The portal, when it was sent in one of the bridge's portals.
    pub portal: Option<PortalKey>,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// The sender's permission level.
    pub level: PermissionLevel,
}

/// A bridge whose users and chats can be looked up from Matrix (clients' "find a user / a
/// room on this network", the room directory).
#[async_trait::async_trait]
pub trait ThirdPartyHandler: Send + Sync {
    /// The protocol: fields and instances.
    fn protocol(&self) -> ThirdPartyProtocol;

    /// The remote users `fields` name (none when they name no one). May ask the network.
    async fn find_users(
        &self,
        ctx: &BridgeContext,
        fields: &Fields,
    ) -> Result<Vec<RemoteUserId>, PluginError>;

    /// The fields that name `remote` (for the lookup by Matrix user id).
    fn user_fields(&self, remote: &RemoteUserId) -> Fields;

    /// The remote chats `fields` name (none when they name none). May ask the network.
    async fn find_chats(
        &self,
        ctx: &BridgeContext,
        fields: &Fields,
    ) -> Result<Vec<RemoteChatId>, PluginError>;

    /// The fields that name `chat` (for the lookup by alias).
    fn chat_fields(&self, chat: &RemoteChatId) -> Fields;
}
