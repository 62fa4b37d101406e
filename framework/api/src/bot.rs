//! The bot plug-in contract: what a bot implements ([`Bot`]) and what it acts with
//! ([`BotContext`]: the homeserver client, its own stored data and audit log, and a view of
//! the Switchboard it runs in).

use std::sync::Arc;
use std::time::Instant;

use ruma::{OwnedEventId, OwnedTransactionId, RoomAliasId, ServerName, UserId};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use switchboard_client::{ClientError, HomeserverClient, Identity, derive_txn_id};
use switchboard_registration::Namespaces;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::PluginError;
use crate::clock::Clock;
use crate::command::{CommandInvocation, CommandReply, CommandSpec};
use crate::config::{PluginSection, ReloadError};
use crate::event::RoomEvent;
use crate::host::{AuditRecord, HostView};
use crate::permission::{PermissionLevel, Permissions};
use crate::services::Services;

/// Where a bot's data and audit log are kept. Implemented by the host; a bot reaches it
/// through [`BotContext`].
#[async_trait::async_trait]
pub trait BotPort: Send + Sync + std::fmt::Debug {
    /// The JSON `bot` stored under `key`, if any.
    async fn load_data(&self, bot: &str, key: &str) -> Result<Option<String>, PluginError>;
    /// Stores JSON for `bot` under `key`, replacing what was there.
    async fn save_data(&self, bot: &str, key: &str, json: &str) -> Result<(), PluginError>;
    /// Adds an entry to `bot`'s audit log.
    async fn add_audit(&self, bot: &str, record: &AuditRecord) -> Result<(), PluginError>;
    /// The latest `limit` entries of `bot`'s audit log, newest first.
    async fn audit_log(&self, bot: &str, limit: i64) -> Result<Vec<AuditRecord>, PluginError>;
}

/// What a bot gets to act with. Made by the framework; cheap to clone.
#[derive(Clone, Debug)]
pub struct BotContext {
    plugin_id: &'static str,
    client: HomeserverClient,
    port: Arc<dyn BotPort>,
    host: Arc<dyn HostView>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    clock: Arc<dyn Clock>,
    started_at: Instant,
}

impl BotContext {
    /// The context of the bot `plugin_id`, acting through `client`, keeping its data in `port`,
    /// seeing Switchboard through `host`, with `services` (the framework makes one per bot).
    #[must_use]
    pub fn new(
        plugin_id: &'static str,
        client: HomeserverClient,
        port: Arc<dyn BotPort>,
        host: Arc<dyn HostView>,
        services: Services,
    ) -> Self {
        Self {
            plugin_id,
            client,
            port,
            host,
            shutdown: services.shutdown,
            tasks: services.tasks,
            clock: services.clock,
            started_at: Instant::now(),
        }
    }

    /// Where the time comes from (never `SystemTime::now`: tests run on a clock they move).
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Fires when Switchboard stops.
    #[must_use]
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `task` in the background, named `name` in logs. Switchboard waits for it at
    /// shutdown before it closes the database, so a task should end soon after
    /// [`BotContext::shutdown`] fires. Use this rather than `tokio::spawn`.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::info_span!("task", bot = self.plugin_id, name);
        self.tasks.spawn(task.instrument(span));
    }

    /// The plug-ins hosted beside this bot: the bots, the bridges' state, portals and
    /// puppets, the health checks and the metrics.
    #[must_use]
    pub fn host(&self) -> &dyn HostView {
        &*self.host
    }

    /// How long Switchboard has been running (since this context was made, at start).
    #[must_use]
    pub fn uptime(&self) -> std::time::Duration {
        self.started_at.elapsed()
    }

    /// The data this bot stored under `key`, if any.
    pub async fn data<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        let Some(stored) = self.port.load_data(self.plugin_id, key).await? else {
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
        self.port.save_data(self.plugin_id, key, &json).await
    }

    /// Writes a command run to this bot's audit log: who ran `command` (secrets left out) in
    /// `event`'s room, and how it ended.
    pub async fn audit(
        &self,
        event: &RoomEvent,
        command: &str,
        outcome: &str,
    ) -> Result<(), PluginError> {
        let record = AuditRecord {
            at_ms: self.clock.now_ms(),
            sender: event.sender.to_string(),
            room_id: event.room_id.to_string(),
            command: command.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.port.add_audit(self.plugin_id, &record).await
    }

    /// The latest `limit` entries of this bot's audit log, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRecord>, PluginError> {
        self.port.audit_log(self.plugin_id, limit).await
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
/// each `plugin_id` and `purpose` however often the event is handled. The framework answers
/// commands with it; a bot uses [`BotContext::reply_notice`].
pub async fn send_notice_reply(
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
    fn reload(&self, _section: &PluginSection) -> Result<(), ReloadError> {
        Err(ReloadError::NeedsRestart(
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
    /// list name (`ephemeral`, `to_device`, `device_lists`, `otk_counts`, `fallback_keys`). Ignored by default.
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
