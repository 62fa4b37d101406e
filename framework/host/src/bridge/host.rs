//! Hosting bridges: what Matrix users do in a portal goes to the portal's bridge, in order per
//! portal. When the network cannot take an event now, it waits in the durable outbox and is
//! retried with backoff (surviving restarts) while the portal's newer events queue behind it;
//! the inbox moves on, so a remote outage never holds back the homeserver or other rooms. An
//! event the network can never take is answered in the room with a notice saying why.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::commands::command_set;
use super::ids::{PortalKey, RemoteChatId};
use super::matrix::TextKind;
use super::matrix::{BridgeMatrix, DOUBLE_PUPPET_MARK, PortalLocks};
use super::message_map::MessageMap;
use super::plugin::PortalRooms;
use super::puppet::PuppetNaming;
use super::status::BridgeStatus;
use crate::client::HomeserverClient;
use crate::command::{CommandSet, may_hold_command};
use crate::config::OutboxConfig;
use crate::group_commit::GroupCommit;
use crate::inbox::HandleError;
use crate::metrics::HostMetrics;
use crate::options::{HostError, HostOptions};
use crate::permission::{PermissionLevel, Permissions};
use crate::store::{Store, StoreError};
use crate::template::Template;
use switchboard_api::PluginError;
use switchboard_api::bot::send_notice_reply;
use switchboard_api::bridge::{Bridge, BridgeContext, HostPort};
use switchboard_api::event::RoomEvent;
use switchboard_api::services::Services;

/// Every bridge of one Switchboard, and which rooms are their portals.
pub(crate) struct BridgeHost {
    bridges: Vec<Arc<HostedBridge>>,
    portal_rooms: PortalRooms,
    permissions: Permissions,
    store: Store,
    /// The bridges' message map, stored by group commit.
    messages: MessageMap,
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
    /// When its rooms are told about outages and downtime.
    notices: notices::NoticePolicy,
}

mod commands;
mod deliver;
mod direct;
mod logins;
mod notices;
mod outbox;
mod presence;
mod thirdparty;

pub(crate) use thirdparty::Lookup;

/// The message map every hosted bridge shares, with its group commit; when `active`, its ticker
/// runs and its known keys load in the background.
fn start_message_map(
    store: &Store,
    active: bool,
    options: &HostOptions,
    shutdown: &CancellationToken,
) -> MessageMap {
    let commit = GroupCommit::new(store.clone());
    let messages = MessageMap::new(store.clone(), commit.clone());
    if active {
        options.tasks.spawn(commit.run_ticker(shutdown.clone()));
        let loading = messages.clone();
        options.tasks.spawn(async move {
            if let Err(e) = loading.load_known().await {
                tracing::warn!(error = %e, "cannot read the message map's keys; every new message is looked up in the database");
            }
        });
    }
    messages
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
        let messages = start_message_map(store, !bridges.is_empty(), options, shutdown);
        let mut hosted = Vec::with_capacity(bridges.len());
        for bridge in bridges {
            let info = bridge.info();
            let naming =
                PuppetNaming::new(&bridge.puppet_template(), &server_name).map_err(|source| {
                    HostError::PuppetTemplate {
                        id: info.id.clone(),
                        source: source.into(),
                    }
                })?;
            let waiting = store.outbox_portals(&info.id).await?.into_iter().collect();
            let templates = options
                .puppet_templates
                .get(&info.id)
                .cloned()
                .unwrap_or_default();
            let status = Arc::new(BridgeStatus::new(
                &info.id,
                store.clone(),
                metrics.clone(),
                Arc::clone(&options.clock),
            ));
            let matrix =
                BridgeMatrix::new(info, naming, client.clone(), store.clone(), metrics.clone())
                    .with_portal_rooms(portal_rooms.clone())
                    .with_message_map(messages.clone())
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
                notices: notices::NoticePolicy {
                    outage_after: options.outage_notices_after,
                    downtime: options.downtime,
                    downtime_told: Mutex::default(),
                },
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
            messages,
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
                .ensure_portal_with_alias(&PortalKey::shared(chat), &info, alias)
                .await
            {
                Ok(room_id) => {
                    tracing::info!(bridge = %hosted.id(), %alias, %room_id, "the alias leads to its portal");
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

    /// Waits until what the bridges recorded so far (their message map) is stored.
    pub(crate) async fn settle(&self) -> Result<(), StoreError> {
        self.messages.settle().await
    }

    /// Starts every bridge (connects them to their networks) and their outbox workers.
    pub(crate) async fn start(&self) -> Result<(), HostError> {
        for hosted in &self.bridges {
            hosted.matrix.read_upload_size().await;
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
            if let Some(after) = hosted.notices.outage_after {
                hosted
                    .ctx
                    .spawn("outage notices", Arc::clone(hosted).watch_outages(after));
            }
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
