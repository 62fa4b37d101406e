//! Hosting bridges: what Matrix users do in a portal goes to the portal's bridge, in order per
//! portal. When the network cannot take an event now, it waits in the durable outbox and is
//! retried with backoff (surviving restarts) while the portal's newer events queue behind it;
//! the inbox moves on, so a remote outage never holds back the homeserver or other rooms. An
//! event the network can never take is answered in the room with a notice saying why.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::OwnedEventId;
use tokio_util::sync::CancellationToken;

use super::commands::command_set;
use super::from_matrix::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRedaction, MediaRef,
    Mention, PortalEvent,
};
use super::ids::{PortalKey, RemoteChatId};
use super::login::Via;
use super::matrix::TextKind;
use super::matrix::{BridgeMatrix, DOUBLE_PUPPET_MARK, PortalLocks};
use super::media::MatrixMedia;
use super::plugin::PortalRooms;
use super::puppet::PuppetNaming;
use super::remote::{reaction_key, reaction_part};
use super::status::BridgeStatus;
use crate::client::{Backoff, HomeserverClient};
use crate::command::{CommandError, CommandInvocation, CommandReply, CommandSet, may_hold_command};
use crate::commands::{CommandOutcome, CommandSource, plugin_answer, run_command};
use crate::config::OutboxConfig;
use crate::inbox::HandleError;
use crate::metrics::HostMetrics;
use crate::permission::{PermissionLevel, Permissions};
use crate::plugin::{HostError, HostOptions, send_notice_reply};
use crate::store::{MessageRecord, Store};
use crate::template::Template;
use switchboard_api::PluginError;
use switchboard_api::bridge::BridgeCommand;
use switchboard_api::bridge::{Bridge, BridgeContext, HostPort};
use switchboard_api::event::RoomEvent;
use switchboard_api::services::Services;

/// Every bridge of one Switchboard, and which rooms are their portals.
pub(crate) struct BridgeHost {
    bridges: Vec<Arc<HostedBridge>>,
    portal_rooms: PortalRooms,
    permissions: Permissions,
    store: Store,
    /// Management rooms and their users.
    management: std::sync::RwLock<HashMap<ruma::OwnedRoomId, ruma::OwnedUserId>>,
    /// Who was typing in each portal at the last notification.
    typing: Mutex<HashMap<ruma::OwnedRoomId, HashSet<ruma::OwnedUserId>>>,
}

/// A bridge as the host runs it.
pub(crate) struct HostedBridge {
    bridge: Arc<dyn Bridge>,
    /// Who may do what.
    permissions: Permissions,
    /// The text of relayed messages.
    relay_template: Template,
    /// Logins users are in the middle of, by user and room.
    pending: Mutex<HashMap<logins::PendingKey, logins::PendingLogin>>,
    /// How many there are (read without the lock on every message).
    pending_count: AtomicUsize,
    ctx: BridgeContext,
    /// Its Matrix side (the concrete one behind `ctx.matrix()`).
    matrix: Arc<BridgeMatrix>,
    /// Its connection state, login states and outbox signal (behind `ctx`).
    status: Arc<BridgeStatus>,
    /// Its chat commands, built-in ones included.
    commands: CommandSet,
    client: HomeserverClient,
    store: Store,
    policy: OutboxConfig,
    /// Portals with events waiting in the outbox: their new events queue behind them.
    waiting: Mutex<HashSet<PortalKey>>,
    /// One lock per portal for what goes to the network, so a portal's events are handled
    /// one at a time, in order, whether live or from the outbox.
    outbound: PortalLocks,
    /// Turned off by an admin: Matrix events wait in the outbox until it is on again.
    disabled: std::sync::atomic::AtomicBool,
    /// Set once the bridge started: logins are connected from then on.
    started: std::sync::atomic::AtomicBool,
    /// The connection of each login, kept up while it is logged in.
    links: Mutex<HashMap<switchboard_api::ids::LoginId, switchboard_api::connection::Link>>,
}

mod direct;
mod logins;
mod presence;

/// The kind of a portal event, as a metric label.
fn kind_label(event: &PortalEvent) -> &'static str {
    match event {
        PortalEvent::Message { .. } => "message",
        PortalEvent::Media(_) => "media",
        PortalEvent::Membership { .. } => "membership",
        PortalEvent::Edit { .. } => "edit",
        PortalEvent::Reaction { .. } => "reaction",
        PortalEvent::Redaction { .. } => "redaction",
    }
}

impl BridgeHost {
    /// Hosts `bridges`, acting through `client`; loads the known portal rooms and which portals
    /// have events waiting in the outbox.
    pub(crate) async fn new(
        bridges: Vec<Arc<dyn Bridge>>,
        client: &HomeserverClient,
        store: &Store,
        metrics: &HostMetrics,
        options: &HostOptions,
        shutdown: &CancellationToken,
    ) -> Result<Self, HostError> {
        let portal_rooms = PortalRooms::default();
        for (bridge, portal) in store.portals_with_rooms().await? {
            if let Some(room_id) = portal
                .room_id
                .and_then(|r| ruma::OwnedRoomId::try_from(r).ok())
            {
                portal_rooms.insert(room_id, &bridge, portal.key);
            }
        }
        let server_name = client.bot_user_id().server_name().to_owned();
        let mut hosted = Vec::with_capacity(bridges.len());
        for bridge in bridges {
            let info = bridge.info();
            let naming =
                PuppetNaming::new(&bridge.puppet_template(), &server_name).map_err(|source| {
                    HostError::PuppetTemplate {
                        id: info.id.clone(),
                        source,
                    }
                })?;
            let waiting = store.outbox_portals(&info.id).await?.into_iter().collect();
            let templates = options
                .puppet_templates
                .get(&info.id)
                .cloned()
                .unwrap_or_default();
            let status = Arc::new(BridgeStatus::new(&info.id, store.clone(), metrics.clone()));
            let matrix =
                BridgeMatrix::new(info, naming, client.clone(), store.clone(), metrics.clone())
                    .with_portal_rooms(portal_rooms.clone())
                    .with_double_puppets(options.double_puppets.clone())
                    .with_media_limit(options.max_media_bytes)
                    .with_puppet_idle(options.puppet_idle)
                    .with_bridge(&bridge, options.backfill_messages)
                    .with_puppet_templates(templates);
            let matrix = Arc::new(matrix);
            hosted.push(Arc::new(HostedBridge {
                commands: command_set(
                    &bridge.command_prefix(),
                    bridge.logins().is_some(),
                    bridge.commands(),
                ),
                permissions: options.permissions.clone(),
                relay_template: options.relay_template.clone(),
                pending: Mutex::default(),
                pending_count: AtomicUsize::new(0),
                bridge,
                ctx: BridgeContext::new(
                    Arc::clone(&matrix) as Arc<dyn switchboard_api::bridge::MatrixSide>,
                    Arc::clone(&status) as Arc<dyn HostPort>,
                    Services {
                        shutdown: shutdown.clone(),
                        tasks: options.tasks.clone(),
                        clock: Arc::clone(&options.clock),
                    },
                ),
                matrix,
                status,
                client: client.clone(),
                store: store.clone(),
                policy: options.outbox.clone(),
                waiting: Mutex::new(waiting),
                outbound: PortalLocks::default(),
                disabled: std::sync::atomic::AtomicBool::new(false),
                started: std::sync::atomic::AtomicBool::new(false),
                links: Mutex::default(),
            }));
        }
        metrics.bridge_outbox_depth.set(store.outbox_depth().await?);
        let management = store
            .management_rooms()
            .await?
            .into_iter()
            .filter_map(|(room, user)| Some((room.try_into().ok()?, user.try_into().ok()?)))
            .collect();
        Ok(Self {
            bridges: hosted,
            portal_rooms,
            permissions: options.permissions.clone(),
            store: store.clone(),
            management: std::sync::RwLock::new(management),
            typing: Mutex::default(),
        })
    }

    /// Whether `room_id` is the management room of `user` (a direct chat they opened with the
    /// bot).
    fn is_management_room(&self, room_id: &ruma::RoomId, user: &ruma::UserId) -> bool {
        self.management
            .read()
            .is_ok_and(|rooms| rooms.get(room_id).is_some_and(|owner| owner == user))
    }

    /// Records `room_id`, a direct chat `user` opened with the bot, as their management room.
    pub(crate) async fn add_management_room(
        &self,
        room_id: &ruma::RoomId,
        user: &ruma::UserId,
    ) -> Result<(), HandleError> {
        if self.bridges.is_empty() {
            return Ok(());
        }
        self.store
            .put_management_room(room_id.as_str(), user.as_str())
            .await?;
        if let Ok(mut rooms) = self.management.write() {
            rooms.insert(room_id.to_owned(), user.to_owned());
        }
        tracing::info!(%room_id, %user, "management room");
        Ok(())
    }

    /// The homeserver asks about an alias: creates the portal it names, if a bridge's alias
    /// namespace holds it and the bridge knows the chat.
    pub(crate) async fn query_alias(&self, alias: &ruma::RoomAliasId) -> bool {
        for hosted in &self.bridges {
            let matrix = &hosted.matrix;
            let (Some(handler), Some(chat)) =
                (hosted.bridge.aliases(), matrix.naming.chat_of_alias(alias))
            else {
                continue;
            };
            let Some(info) = handler.portal_for_alias(&hosted.ctx, &chat).await else {
                return false;
            };
            return match matrix
                .ensure_portal_with_alias(&PortalKey::shared(chat), &info)
                .await
            {
                Ok(room_id) => {
                    tracing::info!(bridge = %hosted.id(), %alias, %room_id, "portal created for its alias");
                    true
                }
                Err(e) => {
                    tracing::warn!(bridge = %hosted.id(), %alias, error = %e, "cannot create the portal for an alias");
                    false
                }
            };
        }
        false
    }

    /// Every hosted bridge.
    pub(crate) fn all(&self) -> &[Arc<HostedBridge>] {
        &self.bridges
    }

    /// The hosted bridge `id`, if there is one.
    pub(crate) fn bridge(&self, id: &str) -> Option<&Arc<HostedBridge>> {
        self.bridges.iter().find(|h| h.id() == id)
    }

    /// Who may do what.
    pub(crate) fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Starts every bridge (connects them to their networks) and their outbox workers.
    pub(crate) async fn start(&self) -> Result<(), HostError> {
        for hosted in &self.bridges {
            hosted
                .bridge
                .start(hosted.ctx.clone())
                .await
                .map_err(|source| HostError::Start {
                    id: hosted.id().to_owned(),
                    source,
                })?;
            hosted.started.store(true, Ordering::SeqCst);
            let logins = hosted
                .ctx
                .logins()
                .await
                .map_err(|source| HostError::Start {
                    id: hosted.id().to_owned(),
                    source,
                })?;
            for login in logins {
                hosted.connect_login(login);
            }
            hosted.ctx.spawn("outbox", Arc::clone(hosted).run_outbox());
            hosted
                .ctx
                .spawn("puppet reaper", Arc::clone(hosted).reap_puppets());
            tracing::info!(bridge = %hosted.id(), "bridge started");
        }
        Ok(())
    }

    /// Hands a Matrix event to a bridge: a command to the bridge whose prefix it starts with
    /// (in any room), anything else in a portal to the portal's bridge. `None` when no bridge
    /// takes it. `raw` is the event as the homeserver sent it.
    pub(crate) async fn handle(
        &self,
        event: &RoomEvent,
        raw: &str,
    ) -> Option<Result<(), HandleError>> {
        if self.bridges.is_empty() {
            return None;
        }
        let portal = self.portal_rooms.get(&event.room_id);
        if portal.is_none()
            && let Some(handled) = self.handle_puppet_invite(event).await
        {
            return Some(handled);
        }
        if portal.is_some() && is_double_puppeted(event) {
            // Sent by a bridge for a real user: it came from the network (loop guard).
            return Some(Ok(()));
        }
        if may_hold_command(event.content.get())
            && let Some((TextKind::Text | TextKind::Notice, body)) = event.text_message()
        {
            let level = self.permissions.level(&event.sender);
            for hosted in &self.bridges {
                if let Some(parsed) = hosted.commands.parse(&body, false, level) {
                    let portal = portal
                        .filter(|(bridge, _)| bridge == hosted.id())
                        .map(|(_, key)| key);
                    return Some(
                        hosted
                            .run_command(parsed, event, portal, level, false)
                            .await,
                    );
                }
            }
        }
        if let Some(hosted) = self
            .bridges
            .iter()
            .find(|h| h.has_pending_login(&event.sender, &event.room_id))
            && let Some((_, body)) = event.text_message()
        {
            return Some(hosted.login_input(event, &body).await);
        }
        // In a user's management room, with one bridge, commands need no prefix.
        if let [hosted] = self.bridges.as_slice()
            && self.is_management_room(&event.room_id, &event.sender)
            && let Some((TextKind::Text | TextKind::Notice, body)) = event.text_message()
        {
            let level = self.permissions.level(&event.sender);
            if let Some(parsed) = hosted.commands.parse(&body, true, level) {
                return Some(hosted.run_command(parsed, event, None, level, true).await);
            }
        }
        let (bridge_id, portal) = portal?;
        let hosted = self.bridges.iter().find(|h| h.id() == bridge_id)?;
        if let Some(replacement) = tombstone(event) {
            let moved = hosted
                .matrix
                .follow_upgrade(&portal, &event.room_id, &replacement)
                .await;
            return Some(moved.map_err(HandleError::from));
        }
        if !self
            .permissions
            .allows(&event.sender, PermissionLevel::Relay)
        {
            tracing::debug!(sender = %event.sender, bridge = %bridge_id, "not bridged: the sender's permission level is below relay");
            hosted.count("event", "not_permitted");
            return Some(Ok(()));
        }
        tracing::debug!(sender = %event.sender, bridge = %bridge_id, "handing the event to its bridge");
        Some(hosted.handle(&portal, event, raw).await)
    }
}

impl HostedBridge {
    /// The bridge's id.
    pub(crate) fn id(&self) -> &str {
        &self.matrix.info().id
    }

    fn count(&self, kind: &str, outcome: &str) {
        self.matrix
            .metrics
            .bridge_matrix_events
            .with_label_values(&[self.id(), kind, outcome])
            .inc();
    }

    fn count_outbox(&self, outcome: &str) {
        let metrics = &self.matrix.metrics;
        metrics
            .bridge_outbox
            .with_label_values(&[self.id(), outcome])
            .inc();
        match outcome {
            "queued" => metrics.bridge_outbox_depth.inc(),
            "delivered" | "given_up" => metrics.bridge_outbox_depth.dec(),
            _ => {}
        }
    }

    fn is_waiting(&self, portal: &PortalKey) -> bool {
        self.waiting.lock().is_ok_and(|w| w.contains(portal))
    }

    fn set_waiting(&self, portal: &PortalKey, waiting: bool) {
        if let Ok(mut set) = self.waiting.lock() {
            if waiting {
                set.insert(portal.clone());
            } else {
                set.remove(portal);
            }
        }
    }

    /// A live event of `portal`: delivered now, or queued in the outbox behind earlier ones
    /// or when the network cannot take it now.
    async fn handle(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
    ) -> Result<(), HandleError> {
        let _portal = self.outbound.lock(portal).await;
        if self.is_waiting(portal) {
            return self.queue(portal, event, raw, 0, "").await;
        }
        match self.deliver(portal, event, raw).await {
            Ok(()) => Ok(()),
            Err(HandleError::Transient(reason)) => {
                tracing::info!(bridge = %self.id(), error = %reason, "the network cannot take the event now: it waits in the outbox");
                self.queue(portal, event, raw, 1, &reason).await
            }
            Err(HandleError::Permanent(reason)) => {
                self.tell_undelivered(event, &reason).await?;
                Err(HandleError::Permanent(reason))
            }
        }
    }

    /// Puts an event into the outbox (first tried after `attempts` pauses) and wakes the
    /// worker.
    async fn queue(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
        attempts: u32,
        reason: &str,
    ) -> Result<(), HandleError> {
        let now = self.ctx.clock().now_ms();
        let first_try = now + self.backoff_ms(attempts);
        let queued = self
            .store
            .outbox_queue(
                self.id(),
                portal,
                event.event_id.as_str(),
                raw,
                now,
                i64::from(attempts),
                first_try,
                reason,
            )
            .await?;
        self.set_waiting(portal, true);
        if queued {
            self.count_outbox("queued");
        }
        self.status.outbox().wake.notify_one();
        Ok(())
    }

    /// The pause after `attempts` failed attempts: 0, then 1 s doubling up to the maximum.
    fn backoff_ms(&self, attempts: u32) -> i64 {
        let Some(retry) = attempts.checked_sub(1) else {
            return 0;
        };
        let policy = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(self.policy.retry_max_interval_secs),
        );
        i64::try_from(policy.delay(retry).as_millis()).unwrap_or(i64::MAX)
    }

    /// Hands one event to the bridge and records what it created on the network. An event
    /// delivered before (a crash came between) is not delivered again.
    async fn deliver(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
    ) -> Result<(), HandleError> {
        let Some(read) = PortalEvent::read(event, raw) else {
            return Ok(());
        };
        let kind = kind_label(&read);
        if self
            .store
            .message_by_event(event.event_id.as_str())
            .await?
            .is_some()
        {
            return Ok(());
        }
        let referenced = match read.referenced_event() {
            Some(id) => self.mapped(portal, id).await?,
            None => None,
        }
        // Only a redaction may refer to a reaction; anything else refers to a message.
        .filter(|r| {
            matches!(read, PortalEvent::Redaction { .. }) || reaction_key(&r.part).is_none()
        });
        // A membership change is not sent with anyone's login: it is news about the room.
        let via = if matches!(read, PortalEvent::Membership { .. }) {
            Via::Bridge
        } else if let Some(via) = self.route(portal, event).await? {
            via
        } else {
            self.count(kind, "no_login");
            return Ok(());
        };
        let outcome = self.dispatch(portal, event, read, referenced, via).await;
        self.count(
            kind,
            match &outcome {
                Ok(Delivered::Yes) => "delivered",
                Ok(Delivered::Unmapped) => "unmapped",
                Ok(Delivered::Unsupported) => "unsupported",
                Err(HandleError::Transient(_)) => "retry",
                Err(HandleError::Permanent(_)) => "refused",
            },
        );
        match outcome? {
            Delivered::Unsupported if kind != "reaction" => {
                let what = match kind {
                    "edit" => "Edits",
                    "media" => "Files",
                    "membership" => return Ok(()),
                    _ => "Deletions",
                };
                let reason = format!("{what} are not carried to this network.");
                self.tell_undelivered(event, &reason).await
            }
            _ => Ok(()),
        }
    }

    /// The remote message (and part) a Matrix event of this portal was bridged as.
    async fn mapped(
        &self,
        portal: &PortalKey,
        event_id: &OwnedEventId,
    ) -> Result<Option<MessageRecord>, HandleError> {
        Ok(self
            .store
            .message_by_event(event_id.as_str())
            .await?
            .filter(|(bridge, record)| bridge == self.id() && record.portal == *portal)
            .map(|(_, record)| record))
    }

    async fn dispatch(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        read: PortalEvent,
        referenced: Option<MessageRecord>,
        via: Via,
    ) -> Result<Delivered, HandleError> {
        if self.is_disabled() {
            return Err(HandleError::Transient(format!(
                "the {} bridge is turned off by an admin",
                self.info().displayname
            )));
        }
        let ctx = &self.ctx;
        let event_id = event.event_id.clone();
        let sender = event.sender.clone();
        match read {
            message @ PortalEvent::Message { .. } => {
                let reply_to = referenced.map(|r| r.remote_message_id);
                return self
                    .deliver_message(portal, event, message, reply_to, via)
                    .await;
            }
            PortalEvent::Media(media) => {
                return self.deliver_media(portal, event, media, via).await;
            }
            PortalEvent::Membership { user, joined } => {
                let membership = MatrixMembership {
                    user_id: user,
                    joined,
                };
                return self.deliver_membership(portal, &membership).await;
            }
            PortalEvent::Edit { body, html, .. } => {
                let Some(target) = referenced else {
                    return Ok(Delivered::Unmapped);
                };
                let Some(handler) = self.bridge.edits() else {
                    return Ok(Delivered::Unsupported);
                };
                let edit = MatrixEdit {
                    via: via.clone(),
                    event_id,
                    sender,
                    target: target.remote_message_id,
                    body,
                    html,
                };
                handler.handle_matrix_edit(ctx, portal, &edit).await?;
            }
            PortalEvent::Reaction { key, .. } => {
                let Some(target) = referenced else {
                    return Ok(Delivered::Unmapped);
                };
                let Some(handler) = self.bridge.reactions() else {
                    return Ok(Delivered::Unsupported);
                };
                let part = reaction_part(sender.as_str(), &key);
                let reaction = MatrixReaction {
                    via: via.clone(),
                    event_id,
                    sender,
                    target: target.remote_message_id.clone(),
                    key,
                };
                handler
                    .handle_matrix_reaction(ctx, portal, &reaction)
                    .await?;
                self.record(portal, event, target.remote_message_id, part)
                    .await?;
            }
            PortalEvent::Redaction { .. } => {
                let Some(target) = referenced else {
                    return Ok(Delivered::Unmapped);
                };
                let redaction = MatrixRedaction {
                    via,
                    event_id,
                    sender,
                    reaction: reaction_key(&target.part).map(str::to_owned),
                    target: target.remote_message_id,
                };
                return self.deliver_redaction(portal, &redaction).await;
            }
        }
        Ok(Delivered::Yes)
    }

    /// Who the mentioned Matrix users are on the network: a puppet's remote user, or a real
    /// user's own (first) login.
    async fn mentions(&self, users: Vec<ruma::OwnedUserId>) -> Result<Vec<Mention>, HandleError> {
        let mut mentions = Vec::with_capacity(users.len());
        for user_id in users {
            let remote = match self.matrix.naming.remote_user(&user_id) {
                Some(remote) => Some(remote),
                None => self
                    .logins_of(&user_id)
                    .await?
                    .into_iter()
                    .next()
                    .map(|login| super::RemoteUserId(login.id.0)),
            };
            mentions.push(Mention { user_id, remote });
        }
        Ok(mentions)
    }

    /// Hands a Matrix message to the bridge (relayed text when it goes through the relay)
    /// and records what it became on the network.
    async fn deliver_message(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        message: PortalEvent,
        reply_to: Option<super::RemoteMessageId>,
        via: Via,
    ) -> Result<Delivered, HandleError> {
        let PortalEvent::Message {
            kind,
            body,
            html,
            mentions,
            thread,
            geo_uri,
            ..
        } = message
        else {
            return Ok(Delivered::Unmapped);
        };
        let mentions = self.mentions(mentions).await?;
        let thread = match thread {
            Some(root) => self
                .mapped(portal, &root)
                .await?
                .map(|r| r.remote_message_id),
            None => None,
        };
        let (body, html) = match &via {
            Via::Relay(_) => self.relayed(event, &body, html.as_deref()).await?,
            _ => (body, html),
        };
        let message = MatrixMessage {
            via,
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            kind,
            body,
            html,
            reply_to,
            mentions,
            thread,
            geo_uri,
        };
        let remote_id = self
            .bridge
            .handle_matrix_message(&self.ctx, portal, &message)
            .await?;
        self.record(portal, event, remote_id, String::new()).await?;
        Ok(Delivered::Yes)
    }

    /// Tells the bridge a Matrix user joined or left a portal.
    async fn deliver_membership(
        &self,
        portal: &PortalKey,
        membership: &MatrixMembership,
    ) -> Result<Delivered, HandleError> {
        let Some(handler) = self.bridge.presence() else {
            return Ok(Delivered::Unsupported);
        };
        handler
            .handle_matrix_membership(&self.ctx, portal, membership)
            .await?;
        Ok(Delivered::Yes)
    }

    /// Hands a redaction to the bridge: of a reaction, or of a message.
    async fn deliver_redaction(
        &self,
        portal: &PortalKey,
        redaction: &MatrixRedaction,
    ) -> Result<Delivered, HandleError> {
        if redaction.reaction.is_some() {
            let Some(handler) = self.bridge.reactions() else {
                return Ok(Delivered::Unsupported);
            };
            handler
                .handle_matrix_reaction_removal(&self.ctx, portal, redaction)
                .await?;
        } else {
            let Some(handler) = self.bridge.redactions() else {
                return Ok(Delivered::Unsupported);
            };
            handler
                .handle_matrix_redaction(&self.ctx, portal, redaction)
                .await?;
        }
        Ok(Delivered::Yes)
    }

    /// Downloads a Matrix user's file (within the size limit) and hands it to the bridge.
    async fn deliver_media(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        media: MediaRef,
        via: Via,
    ) -> Result<Delivered, HandleError> {
        let Some(handler) = self.bridge.media() else {
            return Ok(Delivered::Unsupported);
        };
        let max = self.matrix.max_media_bytes;
        let too_large = |size: u64| {
            HandleError::Permanent(format!(
                "the file has {size} bytes, more than the {max} allowed"
            ))
        };
        if let Some(size) = media.size.filter(|s| *s > max) {
            return Err(too_large(size));
        }
        let data = super::media::download(&self.client, &media.url).await?;
        let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
        if length > max {
            return Err(too_large(length));
        }
        let (filename, caption) = match media.filename {
            Some(name) if name != media.body => (name, Some(media.body)),
            _ => (media.body, None),
        };
        let file = MatrixMedia {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            via,
            kind: media.kind,
            filename,
            caption,
            mimetype: media.mimetype,
            data,
        };
        let remote_id = handler
            .handle_matrix_media(&self.ctx, portal, &file)
            .await?;
        self.record(portal, event, remote_id, String::new()).await?;
        Ok(Delivered::Yes)
    }

    /// Records that the Matrix event and the remote message (part) are the same.
    async fn record(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        remote_message_id: super::RemoteMessageId,
        part: String,
    ) -> Result<(), HandleError> {
        self.store
            .put_message(
                self.id(),
                &MessageRecord {
                    portal: portal.clone(),
                    remote_message_id,
                    part,
                    room_id: event.room_id.to_string(),
                    event_id: event.event_id.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    /// Runs a command (or answers why it cannot run) and replies with the result.
    async fn run_command(
        &self,
        parsed: Result<CommandInvocation, CommandError>,
        event: &RoomEvent,
        portal: Option<PortalKey>,
        level: PermissionLevel,
        in_management_room: bool,
    ) -> Result<(), HandleError> {
        let source = CommandSource {
            plugin: self.id(),
            client: &self.client,
            event,
            level,
            in_management_room,
        };
        let counted = |outcome: CommandOutcome| self.count("command", outcome.label());
        run_command(&source, &self.commands, parsed, counted, |invocation| {
            self.run_own_command(invocation, event, portal, level)
        })
        .await
    }

    /// Runs a parsed command other than `help`: a built-in one, a login command, or the
    /// bridge's own.
    async fn run_own_command(
        &self,
        invocation: CommandInvocation,
        event: &RoomEvent,
        portal: Option<PortalKey>,
        level: PermissionLevel,
    ) -> Result<CommandReply, HandleError> {
        let info = self.matrix.info();
        let not_bridged = || format!("This room is not bridged to {}.", info.displayname);
        Ok(match invocation.name.as_str() {
            "version" => format!(
                "{} bridge on Switchboard {}",
                info.displayname,
                env!("CARGO_PKG_VERSION")
            )
            .into(),
            "ping" => {
                let waiting = self.store.outbox_count(self.id()).await?;
                format!(
                    "{} is {}: {} portal room(s), {waiting} message(s) waiting in the outbox \
                     for the network.",
                    info.displayname,
                    self.ctx.state(),
                    self.matrix.portal_rooms.count(self.id()),
                )
                .into()
            }
            "bridge" => self.bridge_room(&invocation, event, portal).await?.into(),
            "sync" => match &portal {
                Some(key) => self.bridge.sync(&self.ctx, key).await?.into(),
                None => not_bridged().into(),
            },
            "unbridge" => match portal {
                Some(key) => {
                    self.matrix.unbridge(&key).await?;
                    format!(
                        "This room is no longer bridged to {} on {}.",
                        key.chat, info.displayname
                    )
                    .into()
                }
                None => not_bridged().into(),
            },
            name => {
                if let Some(answer) = self
                    .login_command(name, &invocation, event, portal.as_ref())
                    .await
                {
                    return Ok(answer?.into());
                }
                let command = BridgeCommand {
                    invocation,
                    event_id: event.event_id.clone(),
                    room_id: event.room_id.clone(),
                    portal,
                    sender: event.sender.clone(),
                    level,
                };
                return plugin_answer(self.bridge.handle_command(&self.ctx, &command).await);
            }
        })
    }

    /// Forgets the puppets unused for the idle time, a few times per idle time, until
    /// shutdown; keeps `switchboard_bridge_puppets_cached` up to date.
    async fn reap_puppets(self: Arc<Self>) {
        let puppets = self.matrix.puppets.clone();
        let every = (puppets.idle() / 4).clamp(Duration::from_secs(1), Duration::from_mins(5));
        let gauge = self
            .matrix
            .metrics
            .bridge_puppets_cached
            .with_label_values(&[self.id()]);
        let shutdown = self.ctx.shutdown().clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let left = puppets.reap(std::time::Instant::now());
            gauge.set(i64::try_from(left).unwrap_or(i64::MAX));
        }
    }

    /// The `bridge <chat id>` command: makes the room the portal of that chat, if the bridge
    /// allows it; returns the answer.
    async fn bridge_room(
        &self,
        invocation: &CommandInvocation,
        event: &RoomEvent,
        portal: Option<PortalKey>,
    ) -> Result<String, HandleError> {
        let network = &self.matrix.info().displayname;
        if let Some(key) = portal {
            return Ok(format!(
                "This room is bridged to {} on {network} already; `unbridge` it first.",
                key.chat
            ));
        }
        let Some(chat) = invocation.args.first().map(|c| RemoteChatId(c.clone())) else {
            return Ok("Say which chat to bridge.".to_owned());
        };
        Ok(
            match self.bridge_existing(&event.room_id, chat.clone()).await? {
                Ok(()) => format!("This room is now bridged to {chat} on {network}."),
                Err(why) => why,
            },
        )
    }

    /// Makes `room_id` the portal of `chat`, if the bridge allows it and the chat has no room
    /// yet; `Err` says why not.
    pub(crate) async fn bridge_existing(
        &self,
        room_id: &ruma::RoomId,
        chat: RemoteChatId,
    ) -> Result<Result<(), String>, HandleError> {
        if let Some((_, key)) = self.matrix.portal_rooms.get(room_id) {
            return Ok(Err(format!(
                "This room is bridged to {} already; `unbridge` it first.",
                key.chat
            )));
        }
        if let Err(why) = self.bridge.allow_bridge(&self.ctx, &chat).await {
            return Ok(Err(format!("Cannot bridge {chat}: {why}.")));
        }
        let key = PortalKey::shared(chat.clone());
        Ok(match self.matrix.adopt_room(&key, room_id).await? {
            Ok(()) => Ok(()),
            Err(room) => Err(format!(
                "{chat} is bridged to another room already ({room})."
            )),
        })
    }

    /// The portal a room is, of this bridge.
    pub(crate) fn portal_of(&self, room_id: &ruma::RoomId) -> Option<PortalKey> {
        self.matrix
            .portal_rooms
            .get(room_id)
            .filter(|(bridge, _)| bridge == self.id())
            .map(|(_, key)| key)
    }

    /// Stops bridging a portal.
    pub(crate) async fn unbridge(&self, portal: &PortalKey) -> Result<(), PluginError> {
        Ok(self.matrix.unbridge(portal).await?)
    }

    /// This bridge's portals that have rooms.
    pub(crate) async fn portals(&self) -> Result<Vec<(PortalKey, String)>, HandleError> {
        Ok(self
            .store
            .portals_with_rooms()
            .await?
            .into_iter()
            .filter(|(bridge, _)| bridge == self.id())
            .filter_map(|(_, portal)| Some((portal.key, portal.room_id?)))
            .collect())
    }

    /// Hands the bridge new settings of its config section.
    pub(crate) fn reload(
        &self,
        section: &switchboard_api::config::PluginSection,
    ) -> Result<(), switchboard_api::config::ReloadError> {
        self.bridge.reload(section)
    }

    /// Whether an admin turned it off.
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Turns it on or off; turned on, what waited in the outbox is delivered at once.
    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.disabled.store(!enabled, Ordering::Relaxed);
        if enabled {
            self.ctx.network_restored();
        }
    }

    /// How many portal rooms it has.
    pub(crate) fn portal_room_count(&self) -> usize {
        self.matrix.portal_rooms.count(self.id())
    }

    /// What the bridge says about itself.
    pub(crate) fn info(&self) -> &super::BridgeInfo {
        self.matrix.info()
    }

    /// How its connection stands.
    pub(crate) fn state(&self) -> super::BridgeState {
        self.ctx.state()
    }

    /// How a login's connection stands, if the bridge said.
    pub(crate) fn login_state(&self, login: &super::LoginId) -> Option<super::BridgeState> {
        self.ctx.login_state(login)
    }

    /// Its login flows (none without logins).
    pub(crate) fn login_flows(&self) -> Vec<super::LoginFlow> {
        self.bridge
            .logins()
            .map(super::LoginHandler::login_flows)
            .unwrap_or_default()
    }

    /// Answers `event` with a notice from the bridge bot (a reply, sent once for each
    /// `purpose`).
    async fn reply(
        &self,
        event: &RoomEvent,
        purpose: &str,
        text: &str,
        html: Option<&str>,
    ) -> Result<(), HandleError> {
        send_notice_reply(&self.client, self.id(), event, purpose, text, html).await?;
        Ok(())
    }

    /// Replies to an event its bridge cannot deliver with a notice from the bridge bot saying
    /// why (sent once, whatever happens after).
    async fn tell_undelivered(&self, event: &RoomEvent, reason: &str) -> Result<(), HandleError> {
        let text = format!(
            "⚠️ Not delivered to {}: {reason}",
            self.matrix.info().displayname
        );
        self.reply(event, "undelivered", &text, None).await
    }

    /// Delivers what waits in the outbox, portal by portal, each in order, until shutdown.
    async fn run_outbox(self: Arc<Self>) {
        let shutdown = self.ctx.shutdown().clone();
        let signal = self.status.outbox();
        loop {
            let retry_now = signal.retry_now.swap(false, Ordering::Relaxed);
            let next = match self.store.outbox_portals(self.id()).await {
                Ok(portals) => {
                    let mut next: Option<i64> = None;
                    for portal in portals {
                        if let Some(at) = self.drain(&portal, retry_now).await {
                            next = Some(next.map_or(at, |n| n.min(at)));
                        }
                    }
                    next
                }
                Err(e) => {
                    tracing::warn!(bridge = %self.id(), error = %e, "cannot read the outbox");
                    Some(self.ctx.clock().now_ms() + 5000)
                }
            };
            let pause = next.map_or(Duration::from_mins(1), |at| {
                Duration::from_millis(u64::try_from(at - self.ctx.clock().now_ms()).unwrap_or(0))
            });
            tokio::select! {
                () = signal.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Delivers the events of one portal that are due (all of them, once, when the network
    /// is back: `retry_now`), in order; returns when the next attempt is due if some are left.
    async fn drain(&self, portal: &PortalKey, mut retry_now: bool) -> Option<i64> {
        let _portal = self.outbound.lock(portal).await;
        loop {
            let entry = match self.store.outbox_head(self.id(), portal).await {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    self.set_waiting(portal, false);
                    return None;
                }
                Err(e) => {
                    tracing::warn!(bridge = %self.id(), error = %e, "cannot read the outbox");
                    return Some(self.ctx.clock().now_ms() + 5000);
                }
            };
            let now = self.ctx.clock().now_ms();
            if entry.next_attempt_at > now && !std::mem::take(&mut retry_now) {
                return Some(entry.next_attempt_at);
            }
            let Ok(event) = serde_json::from_str::<RoomEvent>(&entry.event) else {
                // Only events that decoded are queued; anything else cannot be delivered.
                tracing::error!(bridge = %self.id(), event_id = %entry.event_id, "an outbox entry does not decode; dropped");
                self.remove(entry.seq, "given_up").await;
                continue;
            };
            let outcome = self.deliver(portal, &event, &entry.event).await;
            let reason = match outcome {
                Ok(()) => {
                    tracing::info!(bridge = %self.id(), event_id = %entry.event_id, attempts = entry.attempts + 1, "delivered from the outbox");
                    self.remove(entry.seq, "delivered").await;
                    continue;
                }
                Err(HandleError::Permanent(reason)) => Some(reason),
                Err(HandleError::Transient(reason)) => {
                    let give_up_ms = i64::try_from(self.policy.give_up_after_secs)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1000);
                    if now.saturating_sub(entry.queued_at) < give_up_ms {
                        let attempts = u32::try_from(entry.attempts + 1).unwrap_or(u32::MAX);
                        let next = now + self.backoff_ms(attempts);
                        tracing::info!(bridge = %self.id(), event_id = %entry.event_id, attempts, error = %reason, "still undeliverable; retrying later");
                        self.count_outbox("retry");
                        if let Err(e) = self
                            .store
                            .outbox_retry_later(entry.seq, next, &reason)
                            .await
                        {
                            tracing::warn!(bridge = %self.id(), error = %e, "cannot record an outbox attempt");
                        }
                        return Some(next);
                    }
                    Some(format!(
                        "gave up after trying for {} s; the last error was: {reason}",
                        self.policy.give_up_after_secs
                    ))
                }
            };
            if let Some(reason) = reason {
                tracing::warn!(bridge = %self.id(), event_id = %entry.event_id, error = %reason, "giving up an outbox entry");
                if let Err(e) = self.tell_undelivered(&event, &reason).await {
                    tracing::warn!(bridge = %self.id(), error = ?e, "cannot tell the sender; retrying later");
                    return Some(now + 5000);
                }
                self.remove(entry.seq, "given_up").await;
            }
        }
    }

    async fn remove(&self, seq: i64, outcome: &str) {
        match self.store.outbox_remove(seq).await {
            Ok(()) => self.count_outbox(outcome),
            Err(e) => {
                tracing::warn!(bridge = %self.id(), error = %e, "cannot remove an outbox entry");
            }
        }
    }
}

/// The replacement room an `m.room.tombstone` state event names (the room was upgraded).
fn tombstone(event: &RoomEvent) -> Option<ruma::OwnedRoomId> {
    #[derive(serde::Deserialize)]
    struct Tombstone {
        replacement_room: ruma::OwnedRoomId,
    }
    (event.event_type == "m.room.tombstone" && event.state_key.as_deref() == Some(""))
        .then(|| event.content_as::<Tombstone>().ok())
        .flatten()
        .map(|t| t.replacement_room)
}

/// Whether a bridge sent `event` by double puppeting (its content has the mark).
fn is_double_puppeted(event: &RoomEvent) -> bool {
    let content = event.content.get();
    content.contains(DOUBLE_PUPPET_MARK)
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(content)
            .is_ok_and(|map| map.contains_key(DOUBLE_PUPPET_MARK))
}

/// What became of an event handed to a bridge.
enum Delivered {
    /// The bridge took it.
    Yes,
    /// It refers to an event never bridged (nothing to do).
    Unmapped,
    /// The bridge's network cannot carry this kind of event.
    Unsupported,
}
