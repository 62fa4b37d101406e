//! The plug-in boundary for bots, and the host that hands them events from the inbox.
//!
//! A bot implements [`Bot`]: an id, the namespaces it needs, and a handler for room events.
//! The host decodes each event once, keeps the membership cache of our users, accepts invites
//! for the bot, never hands a bot what our own users sent (loop guard), and maps handler errors
//! onto the inbox's retry policy.

use std::sync::Arc;

use prometheus::IntCounterVec;
use ruma::{RoomAliasId, ServerName, UserId};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use switchboard_registration::{NamespaceMatcher, Namespaces};

use tokio_util::sync::CancellationToken;

use crate::appservice::{QueryHandler, list};
use crate::bridge::{Bridge, BridgeHost, Lookup, PuppetNaming, TextKind};
use crate::client::{HomeserverClient, Identity};
use crate::command::{CommandError, CommandInvocation, CommandSet, help_command, may_hold_command};
use crate::commands::{CommandSource, plugin_answer, run_command};
use crate::decryption::RoomDecryption;
use crate::inbox::{EventHandler, HandleError, InboxItem};
use crate::isolation::{Handling, catch_panic, retry_panics};
use crate::metrics::HostMetrics;
use crate::permission::PermissionLevel;
use crate::store::Store;
use switchboard_api::PluginError;
pub use switchboard_api::bot::{Bot, BotCommand, BotContext, BotPort, send_notice_reply};
pub use switchboard_api::event::RoomEvent;
use switchboard_api::host::{AuditRecord, HostView};
use switchboard_api::services::Services;

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

/// The bots' data and audit logs, in the store.
#[derive(Debug)]
struct BotStore(Store);

#[async_trait::async_trait]
impl BotPort for BotStore {
    async fn load_data(&self, bot: &str, key: &str) -> Result<Option<String>, PluginError> {
        Ok(self.0.bot_data(bot, key).await?)
    }

    async fn save_data(&self, bot: &str, key: &str, json: &str) -> Result<(), PluginError> {
        Ok(self.0.put_bot_data(bot, key, json).await?)
    }

    async fn add_audit(&self, bot: &str, record: &AuditRecord) -> Result<(), PluginError> {
        Ok(self.0.add_audit(bot, record).await?)
    }

    async fn audit_log(&self, bot: &str, limit: i64) -> Result<Vec<AuditRecord>, PluginError> {
        Ok(self.0.audit_log(bot, limit).await?)
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
        panics: &IntCounterVec,
    ) -> Result<(), HandleError> {
        let source = CommandSource {
            plugin: self.bot.id(),
            client: self.ctx.client(),
            event,
            level,
            in_management_room: false,
        };
        run_command(
            &source,
            commands,
            parsed,
            |_| {},
            |invocation| async move {
                let command = BotCommand {
                    invocation,
                    event: event.clone(),
                    level,
                };
                let answer = catch_panic(
                    panics,
                    self.handling(event),
                    self.bot.handle_command(&self.ctx, &command),
                )
                .await;
                plugin_answer(
                    answer.unwrap_or_else(|panicked| Err(PluginError::permanent(panicked))),
                )
            },
        )
        .await
    }

    /// What the bot handles, for a panic's log line.
    fn handling<'a>(&'a self, event: &'a RoomEvent) -> Handling<'a> {
        Handling {
            plugin: self.bot.id(),
            room_id: event.room_id.as_str(),
            event: event.event_id.as_str(),
        }
    }
}

pub use crate::options::{Downtime, HostError, HostOptions};

/// Hands inbox events and homeserver queries to the bots.
pub struct PluginHost {
    bots: Vec<HostedBot>,
    bridges: Arc<BridgeHost>,
    client: HomeserverClient,
    namespaces: NamespaceMatcher,
    accept_invites: bool,
    /// `switchboard_handler_panics_total`.
    panics: IntCounterVec,
    /// The encryption engine, when encryption is on.
    decryption: Option<Arc<dyn RoomDecryption>>,
    /// `switchboard_decrypt_failures_total`.
    decrypt_failures: IntCounterVec,
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
    /// The third-party protocols the bridges answer lookups for (listed in the registration).
    #[must_use]
    pub fn protocols(&self) -> Vec<String> {
        self.bridges
            .iter()
            .filter_map(|bridge| bridge.third_party().map(|t| t.protocol().id))
            .collect()
    }

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

impl PluginHost {
    /// A host for `plugins`, acting through `client`; `namespaces` are ours (loop guard and
    /// which queries the plug-ins are asked). Loads the known portal rooms and the outbox.
    pub async fn new(
        plugins: Plugins,
        client: HomeserverClient,
        store: Store,
        metrics: HostMetrics,
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
        let view: Arc<dyn HostView> = Arc::new(crate::bridge::PluginsView::new(
            Arc::clone(&bridges),
            store.clone(),
            switches.clone(),
            Arc::clone(&options.diagnostics),
        ));
        let bot_store: Arc<dyn BotPort> = Arc::new(BotStore(store.clone()));
        let bots = plugins
            .bots
            .into_iter()
            .zip(switches)
            .map(|(bot, switch)| {
                let ctx = BotContext::new(
                    bot.id(),
                    client.clone(),
                    Arc::clone(&bot_store),
                    Arc::clone(&view),
                    Services {
                        shutdown: shutdown.clone(),
                        tasks: options.tasks.clone(),
                        clock: Arc::clone(&options.clock),
                    },
                );
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
            panics: metrics.handler_panics,
            decryption: options.decryption.clone(),
            decrypt_failures: metrics.decrypt_failures,
        })
    }

    /// Waits until what the plug-ins recorded so far is stored (called last at shutdown).
    ///
    /// # Errors
    /// The database failed: what was not stored is lost with the process (the networks
    /// deliver again what they were not told was received).
    pub async fn settle(&self) -> Result<(), crate::store::StoreError> {
        self.bridges.settle().await
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
        let mut given_up = None;
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
                    hosted
                        .run_command(commands, parsed, event, level, &self.panics)
                        .await?;
                    continue;
                }
            }
            let handled = retry_panics(&self.panics, hosted.handling(event), || async {
                Ok(hosted.bot.on_room_event(&hosted.ctx, event).await?)
            })
            .await;
            match handled {
                Ok(()) => {}
                // A bot that gave the event up does not keep it from the bots after it.
                Err(HandleError::Permanent(why)) => {
                    given_up.get_or_insert(why);
                }
                Err(transient) => return Err(transient),
            }
        }
        given_up.map_or(Ok(()), |why| Err(HandleError::Permanent(why)))
    }
}

#[async_trait::async_trait]
impl EventHandler for PluginHost {
    /// Handles one inbox item; a panic the plug-ins' own guards did not catch (in the host's
    /// code) is caught here and gives the event up (not retried: the bots and commands that
    /// ran before it would run again), so it too costs at most this event.
    async fn handle(&self, item: &InboxItem) -> Result<(), HandleError> {
        let handling = Handling {
            plugin: "switchboard",
            room_id: item.room_id.as_deref().unwrap_or(""),
            event: &item.kind,
        };
        catch_panic(&self.panics, handling, Box::pin(self.handle_item(item)))
            .await
            .unwrap_or_else(|panicked| Err(HandleError::Permanent(panicked.to_string())))
    }

    /// Stores the bridges' message-map entries gathered so far.
    async fn settle(&self) -> Result<(), HandleError> {
        Ok(self.bridges.settle().await?)
    }
}

impl PluginHost {
    /// Handles a room event; an encrypted one (not our own) is decrypted first, and plug-ins
    /// see its plain-text form. One that cannot be decrypted is given up, counted and logged.
    async fn handle_pdu(&self, event: RoomEvent, body: &str) -> Result<(), HandleError> {
        let Some(decryption) = &self.decryption else {
            return self.handle_room_event(&event, body).await;
        };
        decryption.observe(
            event.room_id.as_str(),
            &event.event_type,
            event.content.get(),
        );
        if event.event_type != crate::client::ENCRYPTED_EVENT || self.is_ours(event.sender.as_str())
        {
            return self.handle_room_event(&event, body).await;
        }
        match decryption.decrypt(body).await {
            Ok(plain) => {
                let decrypted: RoomEvent = serde_json::from_str(&plain).map_err(|e| {
                    HandleError::Permanent(format!("the decrypted event does not decode: {e}"))
                })?;
                self.handle_room_event(&decrypted, &plain).await
            }
            Err(failure) => {
                self.decrypt_failures
                    .with_label_values(&[failure.reason])
                    .inc();
                tracing::warn!(room_id = %event.room_id, sender = %event.sender, error = %failure, "cannot decrypt an event; no plug-in sees it");
                Err(HandleError::Permanent(failure.to_string()))
            }
        }
    }

    async fn handle_item(&self, item: &InboxItem) -> Result<(), HandleError> {
        if &*item.kind == list::PDU {
            let event: RoomEvent = serde_json::from_str(&item.body).map_err(|e| {
                HandleError::Permanent(format!("the event does not decode as a room event: {e}"))
            })?;
            let span = tracing::info_span!(
                "room_event",
                event_id = %event.event_id,
                event_type = %event.event_type
            );
            return tracing::Instrument::instrument(self.handle_pdu(event, &item.body), span).await;
        }
        if let Some(decryption) = &self.decryption
            && matches!(
                &*item.kind,
                list::TO_DEVICE | list::DEVICE_LISTS | list::OTK_COUNTS | list::FALLBACK_KEYS
            )
        {
            decryption
                .receive(&item.kind, &item.body)
                .await
                .map_err(HandleError::Transient)?;
        }
        let raw: Box<RawValue> = serde_json::from_str(&item.body)
            .map_err(|e| HandleError::Permanent(format!("the event is not JSON: {e}")))?;
        if &*item.kind == list::EPHEMERAL {
            self.bridges.handle_ephemeral(raw.get()).await;
        }
        for hosted in &self.bots {
            if hosted.enabled.load(std::sync::atomic::Ordering::Relaxed) {
                let handling = Handling {
                    plugin: hosted.bot.id(),
                    room_id: item.room_id.as_deref().unwrap_or(""),
                    event: &item.kind,
                };
                retry_panics(&self.panics, handling, || async {
                    Ok(hosted.bot.on_other(&hosted.ctx, &item.kind, &raw).await?)
                })
                .await?;
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

    async fn thirdparty_protocol(&self, protocol: &str) -> Option<Value> {
        self.bridges.thirdparty_protocol(protocol)
    }

    async fn thirdparty_users(
        &self,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value> {
        self.bridges
            .thirdparty_lookup(Lookup::User, protocol, query)
            .await
    }

    async fn thirdparty_locations(
        &self,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value> {
        self.bridges
            .thirdparty_lookup(Lookup::Location, protocol, query)
            .await
    }
}
