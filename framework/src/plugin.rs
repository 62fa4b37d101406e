//! The plug-in boundary for bots, and the host that hands them events from the inbox.
//!
//! A bot implements [`Bot`]: an id, the namespaces it needs, and a handler for room events.
//! The host decodes each event once, keeps the membership cache of our users, accepts invites
//! for the bot, never hands a bot what our own users sent (loop guard), and maps handler errors
//! onto the inbox's retry policy.

use std::sync::Arc;

use ruma::{OwnedEventId, OwnedTransactionId, RoomAliasId, ServerName, UserId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard_registration::{NamespaceMatcher, Namespaces};

use tokio_util::sync::CancellationToken;

use crate::appservice::{QueryHandler, list};
use crate::bridge::{Bridge, BridgeHost, PuppetNaming, TextKind};
use crate::client::{ClientError, HomeserverClient, Identity, derive_txn_id};
use crate::command::{
    CommandError, CommandInvocation, CommandReply, CommandSet, CommandSpec, help_command,
    may_hold_command,
};
use crate::config::OutboxConfig;
use crate::inbox::{EventHandler, HandleError, InboxItem};
use crate::metrics::Metrics;
use crate::permission::{PermissionLevel, Permissions};
use crate::store::{Store, StoreError};
use switchboard_api::PluginError;
pub use switchboard_api::event::RoomEvent;

pub use ruma;

/// Whether an invite (`m.room.member`) is for a direct chat.
fn is_direct_invite(event: &RoomEvent) -> bool {
    #[derive(Deserialize)]
    struct Invite {
        #[serde(default)]
        is_direct: bool,
    }
    event.content_as::<Invite>().is_ok_and(|i| i.is_direct)
}

/// What a bot gets to act with.
#[derive(Clone, Debug)]
pub struct BotContext {
    plugin_id: &'static str,
    client: HomeserverClient,
    store: Store,
    metrics: Metrics,
    started_at: std::time::Instant,
    host: crate::bridge::HostView,
}

impl BotContext {
    /// The plug-ins hosted beside this bot: the bots, the bridges' state, portals and puppets.
    #[must_use]
    pub fn host(&self) -> &crate::bridge::HostView {
        &self.host
    }

    /// Switchboard's metrics (as `/metrics` shows them).
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How long Switchboard has been running.
    #[must_use]
    pub fn uptime(&self) -> std::time::Duration {
        self.started_at.elapsed()
    }

    /// The data this bot stored under `key`, if any.
    pub async fn data<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        let Some(stored) = self
            .store
            .bot_data(self.plugin_id, key)
            .await
            .map_err(PluginError::from)?
        else {
            return Ok(None);
        };
        serde_json::from_str(&stored).map(Some).map_err(|e| {
            PluginError::permanent(format!(
                "the stored data `{key}` of bot {} does not read as expected: {e}",
                self.plugin_id
            ))
        })
    }

    /// Stores `data` under `key` for this bot (as JSON), replacing what was there.
    pub async fn set_data<T: serde::Serialize>(
        &self,
        key: &str,
        data: &T,
    ) -> Result<(), PluginError> {
        let json = serde_json::to_string(data)
            .map_err(|e| PluginError::permanent(format!("cannot store `{key}`: {e}")))?;
        self.store
            .put_bot_data(self.plugin_id, key, &json)
            .await
            .map_err(PluginError::from)
    }

    /// Writes a command run to this bot's audit log: who ran `command` (secrets left out) in
    /// `event`'s room, and how it ended.
    pub async fn audit(
        &self,
        event: &RoomEvent,
        command: &str,
        outcome: &str,
    ) -> Result<(), PluginError> {
        let at_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let record = crate::store::AuditRecord {
            at_ms,
            sender: event.sender.to_string(),
            room_id: event.room_id.to_string(),
            command: command.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.store
            .add_audit(self.plugin_id, &record)
            .await
            .map_err(PluginError::from)
    }

    /// The latest `limit` entries of this bot's audit log, newest first.
    pub async fn audit_log(
        &self,
        limit: i64,
    ) -> Result<Vec<crate::store::AuditRecord>, PluginError> {
        self.store
            .audit_log(self.plugin_id, limit)
            .await
            .map_err(PluginError::from)
    }

    /// Redacts `event` as the bot (e.g. a message holding a password), with `reason`. Fails
    /// when the bot's power level does not allow it.
    pub async fn redact(&self, event: &RoomEvent, reason: &str) -> Result<(), ClientError> {
        let mut request = ruma::api::client::redact::redact_event::v3::Request::new(
            event.room_id.clone(),
            event.event_id.clone(),
            self.txn_id_for(event, "redact"),
        );
        request.reason = Some(reason.to_owned());
        self.client.send(request, Identity::bot()).await?;
        Ok(())
    }

    /// The homeserver client (acts as the bot unless told otherwise).
    #[must_use]
    pub fn client(&self) -> &HomeserverClient {
        &self.client
    }

    /// The bot's user id.
    #[must_use]
    pub fn bot_user_id(&self) -> &UserId {
        self.client.bot_user_id()
    }

    /// A transaction id that is the same every time this plug-in answers `event` for
    /// `purpose`, so that handling an event twice (after a crash) posts once.
    #[must_use]
    pub fn txn_id_for(&self, event: &RoomEvent, purpose: &str) -> OwnedTransactionId {
        derive_txn_id(&[self.plugin_id, event.event_id.as_str(), purpose])
    }

    /// Replies to `event` with a notice from the bot (a rich reply), with optional HTML; sent
    /// once for each `purpose` however often the event is handled.
    pub async fn reply_notice(
        &self,
        event: &RoomEvent,
        purpose: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<OwnedEventId, ClientError> {
        send_notice_reply(&self.client, self.plugin_id, event, purpose, text, html).await
    }

    /// Replies to `event` with a plain-text message from the bot (a rich reply, `m.in_reply_to`).
    pub async fn reply_text(
        &self,
        event: &RoomEvent,
        text: &str,
    ) -> Result<OwnedEventId, ClientError> {
        use ruma::events::relation::Reply;
        use ruma::events::room::message::{Relation, RoomMessageEventContent};
        let mut content = RoomMessageEventContent::text_plain(text);
        content.relates_to = Some(Relation::Reply(Reply::with_event_id(
            event.event_id.clone(),
        )));
        self.client
            .send_message(
                &event.room_id,
                self.txn_id_for(event, "reply"),
                &content,
                Identity::bot(),
                None,
            )
            .await
    }
}

/// Sends a notice from the bot answering `event` (a rich reply, with optional HTML), once for
/// each `plugin_id` and `purpose` however often the event is handled.
pub(crate) async fn send_notice_reply(
    client: &HomeserverClient,
    plugin_id: &str,
    event: &RoomEvent,
    purpose: &str,
    text: &str,
    html: Option<&str>,
) -> Result<OwnedEventId, ClientError> {
    use ruma::events::relation::Reply;
    use ruma::events::room::message::{Relation, RoomMessageEventContent};
    let mut content = match html {
        Some(html) => RoomMessageEventContent::notice_html(text, html),
        None => RoomMessageEventContent::notice_plain(text),
    };
    content.relates_to = Some(Relation::Reply(Reply::with_event_id(
        event.event_id.clone(),
    )));
    let txn_id = derive_txn_id(&[plugin_id, event.event_id.as_str(), purpose]);
    client
        .send_message(&event.room_id, txn_id, &content, Identity::bot(), None)
        .await
}

/// A command a Matrix user sent to a bot.
#[derive(Clone, Debug)]
pub struct BotCommand {
    /// The command, its arguments and their raw text.
    pub invocation: CommandInvocation,
    /// The message it came in.
    pub event: RoomEvent,
    /// The sender's permission level (`permissions` in the config).
    pub level: PermissionLevel,
}

/// A bot plug-in: sees the events of the rooms the bot is in.
#[async_trait::async_trait]
pub trait Bot: Send + Sync + 'static {
    /// Stable id: used in the config (`bots.<id>`) and in derived transaction ids.
    fn id(&self) -> &'static str;

    /// The user and alias namespaces this bot needs on `server_name` (none by default).
    fn namespaces(&self, _server_name: &ServerName) -> Namespaces {
        Namespaces::default()
    }

    /// Runs once Switchboard is ready (after the bridges started): set-up such as creating
    /// the bot's rooms. An error stops Switchboard with the reason.
    async fn start(&self, _ctx: &BotContext) -> Result<(), PluginError> {
        Ok(())
    }

    /// Who may run this bot's commands, if not as the `permissions` section says.
    fn permissions(&self) -> Option<Permissions> {
        None
    }

    /// Applies new settings from its config section (`bots.<id>`) without a restart; `Err`
    /// says why not (wrong settings, or ones that take effect at the next restart). By
    /// default a bot reads
    /// its settings at start only.
    fn reload(
        &self,
        _section: &crate::config::PluginSection,
    ) -> Result<(), crate::config::ReloadError> {
        Err(crate::config::ReloadError::NeedsRestart(
            "this bot reads its settings at start only".to_owned(),
        ))
    }

    /// Handles a room event sent by someone other than Switchboard's own users (commands for
    /// this bot excepted: they go to [`Bot::handle_command`]).
    /// Return a transient [`PluginError`] to have it retried (in order) later.
    async fn on_room_event(&self, ctx: &BotContext, event: &RoomEvent) -> Result<(), PluginError>;

    /// The prefix of its chat commands (default `!<id>`, e.g. `!echo help`).
    fn command_prefix(&self) -> String {
        format!("!{}", self.id())
    }

    /// Its chat commands; none by default. The framework adds `help` (generated from these
    /// definitions and the sender's permission level), parses messages starting with the
    /// prefix, and answers unknown commands, missing permissions and wrong arguments itself.
    fn commands(&self) -> Vec<CommandSpec> {
        Vec::new()
    }

    /// Runs one of its commands (already checked: known, permitted, right number of
    /// arguments); what it returns is the bot's answer, sent as a reply. A
    /// permanent [`PluginError`] is shown to the sender.
    async fn handle_command(
        &self,
        _ctx: &BotContext,
        command: &BotCommand,
    ) -> Result<CommandReply, PluginError> {
        Ok(format!("`{}` does nothing yet.", command.invocation.name).into())
    }

    /// Handles anything else the homeserver pushed (ephemeral, to-device, device lists…), by
    /// list name (see [`crate::appservice::list`]). Ignored by default.
    async fn on_other(
        &self,
        _ctx: &BotContext,
        _list: &str,
        _event: &RawValue,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// The homeserver asks whether a user of our namespace exists; create it and say `true`.
    async fn query_user(&self, _ctx: &BotContext, _user_id: &UserId) -> bool {
        false
    }

    /// The homeserver asks whether an alias of our namespace exists; create it and say `true`.
    async fn query_alias(&self, _ctx: &BotContext, _alias: &RoomAliasId) -> bool {
        false
    }
}

/// A bot as the host runs it.
struct HostedBot {
    bot: Arc<dyn Bot>,
    ctx: BotContext,
    /// Off when an admin turned the bot off: it then sees no events.
    enabled: Arc<std::sync::atomic::AtomicBool>,
    /// Its chat commands with `help`, if it has any.
    commands: Option<CommandSet>,
}

impl HostedBot {
    /// Runs a command (or answers why it cannot run) and replies with the result.
    async fn run_command(
        &self,
        commands: &CommandSet,
        parsed: Result<CommandInvocation, CommandError>,
        event: &RoomEvent,
        level: PermissionLevel,
    ) -> Result<(), HandleError> {
        let reply = match parsed {
            Err(error) => CommandReply::from(error.to_string()),
            Ok(invocation) if invocation.name == "help" => CommandReply::html(
                commands.help(level, false),
                commands.help_html(level, false),
            ),
            Ok(invocation) => {
                tracing::info!(bot = %self.bot.id(), sender = %event.sender, command = %invocation.name, "running a command");
                let command = BotCommand {
                    invocation,
                    event: event.clone(),
                    level,
                };
                match self.bot.handle_command(&self.ctx, &command).await {
                    Ok(reply) => reply,
                    Err(error) if !error.is_transient() => format!("⚠️ {error}").into(),
                    Err(transient) => return Err(transient.into()),
                }
            }
        };
        if !reply.text.is_empty() {
            self.ctx
                .reply_notice(event, "command", &reply.text, reply.html.as_deref())
                .await?;
        }
        Ok(())
    }
}

/// Hands inbox events and homeserver queries to the bots.
pub struct PluginHost {
    bots: Vec<HostedBot>,
    bridges: Arc<BridgeHost>,
    client: HomeserverClient,
    namespaces: NamespaceMatcher,
    accept_invites: bool,
}

/// The plug-ins one Switchboard runs.
#[derive(Clone, Default)]
pub struct Plugins {
    /// Bots.
    pub bots: Vec<Arc<dyn Bot>>,
    /// Bridges.
    pub bridges: Vec<Arc<dyn Bridge>>,
}

impl Plugins {
    /// The namespaces every plug-in needs on `server_name` (the registration is their union).
    /// A bridge whose puppet template is invalid contributes nothing; [`PluginHost::new`]
    /// reports it.
    #[must_use]
    pub fn namespaces(&self, server_name: &ServerName) -> Namespaces {
        let mut namespaces = Namespaces::default();
        for bot in &self.bots {
            let ns = bot.namespaces(server_name);
            namespaces.users.extend(ns.users);
            namespaces.aliases.extend(ns.aliases);
            namespaces.rooms.extend(ns.rooms);
        }
        for bridge in &self.bridges {
            if let Ok(naming) = PuppetNaming::new(&bridge.puppet_template(), server_name) {
                namespaces.users.push(naming.namespace());
                if bridge.aliases().is_some() {
                    namespaces.aliases.push(naming.alias_namespace());
                }
            }
        }
        namespaces
    }
}

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
    /// The running config, as loaded (for reloads and health checks).
    pub config: crate::config::Config,
    /// The registration the homeserver has.
    pub registration: switchboard_registration::Registration,
    /// The registration the config implies.
    pub registration_spec: switchboard_registration::RegistrationSpec,
    /// Puppet display-name templates, by bridge id (bridges without one show remote names).
    pub puppet_templates: std::collections::BTreeMap<String, crate::config::PuppetTemplates>,
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
        source: crate::bridge::TemplateError,
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

impl PluginHost {
    /// A host for `plugins`, acting through `client`; `namespaces` are ours (loop guard and
    /// which queries the plug-ins are asked). Loads the known portal rooms and the outbox.
    pub async fn new(
        plugins: Plugins,
        client: HomeserverClient,
        store: Store,
        metrics: Metrics,
        namespaces: NamespaceMatcher,
        options: &HostOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, HostError> {
        let bridges = Arc::new(
            BridgeHost::new(
                plugins.bridges,
                &client,
                &store,
                &metrics,
                options,
                &shutdown,
            )
            .await?,
        );
        let switches: Vec<crate::bridge::BotSwitch> = plugins
            .bots
            .iter()
            .map(|bot| crate::bridge::BotSwitch {
                id: bot.id().to_owned(),
                enabled: Arc::new(std::sync::atomic::AtomicBool::new(true)),
                bot: Arc::downgrade(bot),
            })
            .collect();
        let view = crate::bridge::HostView::new(
            Arc::clone(&bridges),
            store.clone(),
            switches.clone(),
            crate::bridge::Diagnostics {
                client: client.clone(),
                registration: options.registration.clone(),
                spec: options.registration_spec.clone(),
                config: std::sync::RwLock::new(options.config.clone()),
            },
        );
        let bots = plugins
            .bots
            .into_iter()
            .zip(switches)
            .map(|(bot, switch)| {
                let ctx = BotContext {
                    plugin_id: bot.id(),
                    client: client.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    started_at: std::time::Instant::now(),
                    host: view.clone(),
                };
                let own = bot.commands();
                let commands = (!own.is_empty()).then(|| {
                    own.into_iter().fold(
                        CommandSet::new(bot.command_prefix()).with(help_command()),
                        CommandSet::with,
                    )
                });
                HostedBot {
                    bot,
                    ctx,
                    enabled: switch.enabled,
                    commands,
                }
            })
            .collect();
        Ok(Self {
            bots,
            bridges,
            client,
            namespaces,
            accept_invites: options.accept_invites,
        })
    }

    /// The bridges.
    pub(crate) fn bridges(&self) -> &BridgeHost {
        &self.bridges
    }

    /// Starts every bridge (connects them to their networks) and their outboxes, then every
    /// bot.
    pub async fn start_plugins(&self) -> Result<(), HostError> {
        self.bridges.start().await?;
        for hosted in &self.bots {
            hosted
                .bot
                .start(&hosted.ctx)
                .await
                .map_err(|e| HostError::BotStart {
                    id: hosted.bot.id().to_owned(),
                    reason: e.to_string(),
                })?;
            tracing::info!(bot = %hosted.bot.id(), "bot started");
        }
        Ok(())
    }

    fn is_ours(&self, user_id: &str) -> bool {
        user_id == self.client.bot_user_id().as_str() || self.namespaces.is_user(user_id)
    }

    async fn handle_room_event(&self, event: &RoomEvent, raw: &str) -> Result<(), HandleError> {
        if let (Some(state_key), Some(membership)) = (&event.state_key, event.membership())
            && self.is_ours(state_key)
            && let Ok(member) = UserId::parse(state_key.as_str())
        {
            match membership.as_str() {
                "join" => {
                    self.client
                        .remember_membership(&event.room_id, &member, true)
                        .await;
                }
                "leave" | "ban" => {
                    self.client
                        .remember_membership(&event.room_id, &member, false)
                        .await;
                }
                "invite" if self.accept_invites && member == self.client.bot_user_id() => {
                    tracing::info!(room_id = %event.room_id, inviter = %event.sender, "accepting an invite");
                    match self
                        .client
                        .join(
                            <&ruma::RoomOrAliasId>::from(&*event.room_id),
                            Identity::bot(),
                        )
                        .await
                    {
                        Ok(_) => {
                            if is_direct_invite(event) {
                                self.bridges
                                    .add_management_room(&event.room_id, &event.sender)
                                    .await?;
                            }
                        }
                        // The invite was withdrawn or the room is gone: nothing to retry.
                        Err(e) if e.status() == Some(403) || e.status() == Some(404) => {
                            tracing::warn!(room_id = %event.room_id, error = %e, "cannot accept the invite");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {}
            }
        }
        if self.is_ours(event.sender.as_str()) {
            return Ok(());
        }
        if let Some(handled) = self.bridges.handle(event, raw).await {
            return handled;
        }
        tracing::debug!(sender = %event.sender, "handing the event to the bots");
        let command_text = may_hold_command(event.content.get())
            .then(|| event.text_message())
            .flatten()
            .filter(|(kind, _)| matches!(kind, TextKind::Text | TextKind::Notice))
            .map(|(_, body)| body);
        for hosted in &self.bots {
            if !hosted.enabled.load(std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            if let (Some(commands), Some(body)) = (&hosted.commands, &command_text) {
                let level = hosted.bot.permissions().map_or_else(
                    || self.bridges.permissions().level(&event.sender),
                    |own| own.level(&event.sender),
                );
                if let Some(parsed) = commands.parse(body, false, level) {
                    hosted.run_command(commands, parsed, event, level).await?;
                    continue;
                }
            }
            hosted.bot.on_room_event(&hosted.ctx, event).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl EventHandler for PluginHost {
    async fn handle(&self, item: &InboxItem) -> Result<(), HandleError> {
        if &*item.kind == list::PDU {
            let event: RoomEvent = serde_json::from_str(&item.body).map_err(|e| {
                HandleError::Permanent(format!("the event does not decode as a room event: {e}"))
            })?;
            let span = tracing::info_span!(
                "room_event",
                event_id = %event.event_id,
                event_type = %event.event_type
            );
            return tracing::Instrument::instrument(
                self.handle_room_event(&event, &item.body),
                span,
            )
            .await;
        }
        let raw: Box<RawValue> = serde_json::from_str(&item.body)
            .map_err(|e| HandleError::Permanent(format!("the event is not JSON: {e}")))?;
        if &*item.kind == list::EPHEMERAL {
            self.bridges.handle_ephemeral(raw.get()).await;
        }
        for hosted in &self.bots {
            if hosted.enabled.load(std::sync::atomic::Ordering::Relaxed) {
                hosted.bot.on_other(&hosted.ctx, &item.kind, &raw).await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl QueryHandler for PluginHost {
    async fn query_user(&self, user_id: &UserId) -> bool {
        if !self.namespaces.is_user(user_id.as_str()) {
            return false;
        }
        if self.bridges.query_user(user_id).await {
            return true;
        }
        for HostedBot { bot, ctx, .. } in &self.bots {
            if bot.query_user(ctx, user_id).await {
                return true;
            }
        }
        false
    }

    async fn query_alias(&self, alias: &RoomAliasId) -> bool {
        if !self.namespaces.is_alias(alias.as_str()) {
            return false;
        }
        if self.bridges.query_alias(alias).await {
            return true;
        }
        for HostedBot { bot, ctx, .. } in &self.bots {
            if bot.query_alias(ctx, alias).await {
                return true;
            }
        }
        false
    }

    async fn thirdparty_protocol(&self, _protocol: &str) -> Option<Value> {
        None
    }

    async fn thirdparty_users(
        &self,
        _protocol: Option<&str>,
        _query: &[(String, String)],
    ) -> Vec<Value> {
        Vec::new()
    }

    async fn thirdparty_locations(
        &self,
        _protocol: Option<&str>,
        _query: &[(String, String)],
    ) -> Vec<Value> {
        Vec::new()
    }
}
