//! The Matrix side of one bridge: puppets registered and kept in profile, portal rooms created
//! with the bridge's state (MSC2346), and remote messages sent into them once — whatever the
//! network sends twice, and whether Switchboard crashed in between.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use serde_json::json;

use super::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use super::message_map::MessageMap;
use super::plugin::PortalRooms;
use super::puppet::PuppetNaming;
use super::puppet_cache::PuppetCache;
use super::skipped::SkipNotices;
use crate::client::{ClientError, HomeserverClient, Identity, derive_txn_id};
use crate::inbox::HandleError;
use crate::metrics::HostMetrics;
use crate::store::{GroupWrite, MessageRecord, PortalRecord, Store, StoreError};
use switchboard_api::PluginError;
use switchboard_api::bridge::{Bridge, DataOwner};
pub use switchboard_api::event::TextKind;
pub use switchboard_api::remote::{BridgeInfo, Bridged, PortalInfo, PuppetProfile, RemoteText};

/// Why something could not be bridged.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The homeserver refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An id from the remote network cannot be turned into a Matrix id.
    #[error("the remote id {id:?} gives no valid Matrix user id: {reason}")]
    Id {
        /// The remote id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A bridge's stored data does not read as the bridge's type (it changed incompatibly).
    #[error("the bridge's stored data about {what} does not read as expected: {reason}")]
    StoredData {
        /// Which portal or puppet.
        what: String,
        /// Why.
        reason: String,
    },
    /// The bridge failed (e.g. describing a chat whose room is created).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The remote network failed (cannot connect, refused…).
    #[error("the network failed: {0}")]
    Network(String),
    /// A file is larger than the media limit.
    #[error("the file has {size} bytes, more than the {max_bytes} allowed (media.max_bytes)")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// A stored room id is not a room id (the database was edited by hand).
    #[error(
        "the room id {0:?} stored for a portal is not valid; fix or delete that row of the \
         bridge_portal table"
    )]
    StoredRoom(String),
}

impl From<BridgeError> for PluginError {
    fn from(error: BridgeError) -> Self {
        match error {
            BridgeError::Client(e) => e.into(),
            BridgeError::Store(e) => e.into(),
            BridgeError::Network(reason) => PluginError::network_down(reason),
            BridgeError::Plugin(e) => e,
            e @ (BridgeError::Id { .. }
            | BridgeError::StoredData { .. }
            | BridgeError::StoredRoom(_)
            | BridgeError::TooLarge { .. }) => PluginError::permanent(e),
        }
    }
}

impl From<BridgeError> for HandleError {
    fn from(error: BridgeError) -> Self {
        PluginError::from(error).into()
    }
}

/// The Matrix side of one bridge.
#[derive(Clone, Debug)]
pub struct BridgeMatrix {
    pub(super) info: BridgeInfo,
    pub(super) naming: PuppetNaming,
    pub(super) client: HomeserverClient,
    pub(super) store: Store,
    /// Which remote message is which Matrix event (shared by the host's bridges).
    pub(super) messages: MessageMap,
    pub(super) metrics: HostMetrics,
    pub(super) portal_rooms: PortalRooms,
    pub(super) portal_locks: PortalLocks,
    /// Double puppeting: server name → token of the appservice covering its real users.
    pub(super) double_puppets: Arc<BTreeMap<String, String>>,
    /// The largest file bridged either way.
    pub(super) max_media_bytes: u64,
    /// The homeserver's `m.upload.size`, once read (0: not known, no limit of its own).
    pub(super) upload_size: Arc<std::sync::atomic::AtomicU64>,
    /// How puppets are named, if not by the remote name as it is.
    templates: crate::config::PuppetTemplates,
    /// The puppets used lately, with their profiles.
    pub(super) puppets: PuppetCache,
    /// The bridge this is the Matrix side of (held weakly: the bridge owns its Matrix side,
    /// not the other way round), asked how new portal rooms look and for their history.
    pub(super) bridge: Option<Weak<dyn Bridge>>,
    /// How many messages of a chat's history a new portal room shows (0: none).
    pub(super) history_limit: usize,
    /// When portals were last told about bad input from the network.
    pub(super) skip_notices: SkipNotices,
}

/// Who says in Matrix what a remote user said.
#[derive(Clone, Debug)]
pub(super) enum Speaker {
    /// Their puppet.
    Puppet(OwnedUserId),
    /// The Matrix user whose login the remote user is (double puppeting), through the
    /// double-puppeting appservice's token.
    Real {
        /// The Matrix user.
        user: OwnedUserId,
        /// The token acting for them.
        token: String,
    },
}

impl Speaker {
    /// The identity requests are sent with.
    pub(super) fn identity(&self) -> Identity<'_> {
        match self {
            Self::Puppet(puppet) => Identity::user(puppet),
            Self::Real { user, token } => Identity::double_puppet(user, token),
        }
    }
}

/// The content key marking an event sent by double puppeting, so that it is not bridged back.
pub(crate) const DOUBLE_PUPPET_MARK: &str = "org.switchboard.double_puppet";

/// One lock per portal: what is bridged into a portal happens one message at a time, in the
/// order the calls came (tokio's mutex is fair), and a portal's room is created once even when
/// its first messages arrive together.
#[derive(Clone, Debug, Default)]
pub(crate) struct PortalLocks {
    locks: Arc<std::sync::Mutex<HashMap<PortalKey, Arc<tokio::sync::Mutex<()>>>>>,
}

impl PortalLocks {
    pub(crate) async fn lock(&self, key: &PortalKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = match self.locks.lock() {
            Ok(mut locks) => {
                // Forget the locks nobody holds or waits for, so the map stays small.
                locks.retain(|_, lock| Arc::strong_count(lock) > 1);
                Arc::clone(locks.entry(key.clone()).or_default())
            }
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        lock.lock_owned().await
    }
}

impl BridgeMatrix {
    /// The Matrix side of the bridge `info`, naming puppets with `naming`, counting into
    /// `metrics`.
    #[must_use]
    pub fn new(
        info: BridgeInfo,
        naming: PuppetNaming,
        client: HomeserverClient,
        store: Store,
        metrics: HostMetrics,
    ) -> Self {
        Self {
            info,
            naming,
            client,
            messages: MessageMap::standalone(store.clone()),
            store,
            metrics,
            portal_rooms: PortalRooms::default(),
            portal_locks: PortalLocks::default(),
            double_puppets: Arc::default(),
            max_media_bytes: crate::config::MediaConfig::default().max_bytes,
            upload_size: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            templates: crate::config::PuppetTemplates::default(),
            puppets: PuppetCache::new(std::time::Duration::from_secs(
                crate::config::PuppetsConfig::default().idle_secs,
            )),
            bridge: None,
            history_limit: 0,
            skip_notices: SkipNotices::default(),
        }
    }

    /// The Matrix side of `bridge` (held weakly): new portal rooms look as its
    /// [`Bridge::chat_info`] says, and show up to `history_limit` messages of the chat's
    /// history if it has a [`super::BackfillHandler`].
    #[must_use]
    pub fn with_bridge(mut self, bridge: &Arc<dyn Bridge>, history_limit: usize) -> Self {
        self.bridge = Some(Arc::downgrade(bridge));
        self.history_limit = history_limit;
        self
    }

    /// The bridge, unless it is gone (Switchboard is stopping).
    pub(super) fn bridge(&self) -> Option<Arc<dyn Bridge>> {
        self.bridge.as_ref().and_then(Weak::upgrade)
    }

    /// Keeps a puppet in memory for `idle` after its last use.
    #[must_use]
    pub fn with_puppet_idle(mut self, idle: std::time::Duration) -> Self {
        self.puppets = PuppetCache::new(idle);
        self
    }

    /// Shows puppets with `templates` (display name, avatar) instead of as the network does.
    #[must_use]
    pub fn with_puppet_templates(mut self, templates: crate::config::PuppetTemplates) -> Self {
        self.templates = templates;
        self
    }

    /// Bridges files up to `max_bytes` either way.
    #[must_use]
    pub fn with_media_limit(mut self, max_bytes: u64) -> Self {
        self.max_media_bytes = max_bytes;
        self
    }

    /// Speaks as the real Matrix user for remote users who are their logins, on the servers
    /// in `tokens` (server name → token of the appservice covering its users).
    #[must_use]
    pub fn with_double_puppets(mut self, tokens: BTreeMap<String, String>) -> Self {
        self.double_puppets = Arc::new(tokens);
        self
    }

    /// Who says in `room_id` what `sender` said: the Matrix user whose login `sender` is, when
    /// their server has double puppeting; otherwise `sender`'s puppet (registered, in profile
    /// and joined).
    pub(super) async fn speaker_in(
        &self,
        room_id: &RoomId,
        sender: &RemoteUserId,
        profile: &PuppetProfile,
    ) -> Result<Speaker, BridgeError> {
        if !self.double_puppets.is_empty()
            && let Some(login) = self.store.login(&self.info.id, sender.as_str()).await?
            && let Ok(user) = OwnedUserId::try_from(login.user_id)
            && let Some(token) = self.double_puppets.get(user.server_name().as_str())
        {
            return Ok(Speaker::Real {
                user,
                token: token.clone(),
            });
        }
        let puppet = self.ensure_puppet(sender, profile).await?;
        self.client.ensure_joined(room_id, &puppet).await?;
        Ok(Speaker::Puppet(puppet))
    }

    /// Shares the host's message map (and its group commit) instead of one of its own.
    #[must_use]
    pub(crate) fn with_message_map(mut self, messages: MessageMap) -> Self {
        self.messages = messages;
        self
    }

    /// Shares the host's map of portal rooms, so that rooms created here are routed to this
    /// bridge.
    #[must_use]
    pub fn with_portal_rooms(mut self, portal_rooms: PortalRooms) -> Self {
        self.portal_rooms = portal_rooms;
        self
    }

    /// What the bridge says about itself.
    #[must_use]
    pub fn info(&self) -> &BridgeInfo {
        &self.info
    }

    /// The puppet of a remote user: registered once, its profile written when it changed.
    /// A puppet used lately with the same profile costs no request and no store lookup.
    pub async fn ensure_puppet(
        &self,
        remote: &RemoteUserId,
        profile: &PuppetProfile,
    ) -> Result<OwnedUserId, BridgeError> {
        let user_id = self.puppet_id(remote)?;
        let displayname = profile.displayname.as_deref().map(|name| {
            self.templates.displayname.as_ref().map_or_else(
                || name.to_owned(),
                |template| {
                    template.render(&json!({
                        "name": name,
                        "id": remote,
                        "network": self.info.displayname,
                    }))
                },
            )
        });
        let avatar_url = match &self.templates.avatar {
            Some(template) => Some(template.render(&json!({
                "avatar": profile.avatar_url,
                "id": remote,
                "network": self.info.displayname,
            })))
            .filter(|url| url.starts_with("mxc://")),
            None => profile.avatar_url.clone(),
        };
        let avatar_url = avatar_url.as_deref();
        if self
            .puppets
            .is_current(&user_id, displayname.as_deref(), avatar_url)
        {
            return Ok(user_id);
        }
        self.client.ensure_registered(&user_id).await?;
        if self
            .store
            .puppet_data(&self.info.id, remote)
            .await?
            .is_none()
        {
            self.store
                .put_puppet(&self.info.id, remote, user_id.as_str(), "{}")
                .await?;
        }
        self.client
            .ensure_profile(&user_id, displayname.as_deref(), avatar_url)
            .await?;
        let known = self
            .puppets
            .remember(&user_id, displayname.as_deref(), avatar_url);
        self.metrics
            .bridge_puppets_cached
            .with_label_values(&[self.info.id.as_str()])
            .set(i64::try_from(known).unwrap_or(i64::MAX));
        Ok(user_id)
    }

    /// Sends a remote text message into its portal (created if needed) from its sender's
    /// puppet, once: a message bridged before is not sent again, and a send repeated after a
    /// crash reuses the same transaction id, so the homeserver shows it once. Calls for one
    /// portal are handled one at a time, in the order they came.
    pub async fn bridge_text(
        &self,
        key: &PortalKey,
        message: &RemoteText,
    ) -> Result<Bridged, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        self.bridge_text_locked(key, message).await
    }

    /// [`BridgeMatrix::bridge_text`] with the portal lock held.
    pub(super) async fn bridge_text_locked(
        &self,
        key: &PortalKey,
        message: &RemoteText,
    ) -> Result<Bridged, BridgeError> {
        if let Some(event_id) = self.mapped_event(key, &message.id, &message.part).await? {
            return Ok(Bridged::AlreadyBridged(event_id));
        }
        let room_id = self.ensure_portal_locked(key).await?;
        let speaker = self
            .speaker_in(&room_id, &message.sender, &message.sender_profile)
            .await?;
        let mut content = text_content(message);
        content["m.mentions"] = self.mentions_of(message).await?;
        let replied = match &message.reply_to {
            Some(reply_to) => self.mapped_event(key, reply_to, "").await?,
            None => None,
        };
        let root = match &message.thread {
            Some(thread) => self.mapped_event(key, thread, "").await?,
            None => None,
        };
        match (root, replied) {
            (Some(root), replied) => {
                // In a thread; clients without threads see a reply to the thread's last
                // message (or to the one replied to).
                let falling_back = replied.is_none();
                let in_reply_to = replied.unwrap_or_else(|| root.clone());
                content["m.relates_to"] = json!({
                    "rel_type": "m.thread", "event_id": root, "is_falling_back": falling_back,
                    "m.in_reply_to": { "event_id": in_reply_to },
                });
            }
            (None, Some(replied)) => {
                content["m.relates_to"] = json!({ "m.in_reply_to": { "event_id": replied } });
            }
            (None, None) => {}
        }
        let event_id = self
            .send_and_map(&room_id, &speaker, key, message, content)
            .await?;
        Ok(Bridged::Sent(event_id))
    }

    /// Sends an edit of a bridged message: `edit` (its own remote id, the new text) replaces
    /// the message `target` (`m.replace`). `None` when `target` was never bridged (nothing is
    /// sent); an edit bridged before is not sent again.
    pub async fn bridge_edit(
        &self,
        key: &PortalKey,
        target: &RemoteMessageId,
        edit: &RemoteText,
    ) -> Result<Option<Bridged>, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        if let Some(event_id) = self.mapped_event(key, &edit.id, &edit.part).await? {
            return Ok(Some(Bridged::AlreadyBridged(event_id)));
        }
        let Some(original) = self.mapped_event(key, target, &edit.part).await? else {
            return Ok(None);
        };
        let Some(room_id) = self.known_room(key).await? else {
            return Ok(None);
        };
        let speaker = self
            .speaker_in(&room_id, &edit.sender, &edit.sender_profile)
            .await?;
        let mut new_content = text_content(edit);
        new_content["m.mentions"] = self.mentions_of(edit).await?;
        let mut content = new_content.clone();
        // The edit itself mentions no one: those the new text mentions were notified by the
        // original (spec v1.17, "mentions in edits").
        content["m.mentions"] = json!({});
        content["body"] = format!("* {}", edit.body).into();
        if let Some(formatted) = new_content.get("formatted_body").and_then(|v| v.as_str()) {
            content["formatted_body"] = format!("* {formatted}").into();
        }
        content["m.new_content"] = new_content;
        content["m.relates_to"] = json!({ "rel_type": "m.replace", "event_id": original });
        let event_id = self
            .send_and_map(&room_id, &speaker, key, edit, content)
            .await?;
        Ok(Some(Bridged::Sent(event_id)))
    }

    /// `m.mentions` of a remote message: the Matrix users of the remote users it mentions
    /// (`{}` when none — every message carries it, as spec v1.17 asks).
    async fn mentions_of(&self, message: &RemoteText) -> Result<serde_json::Value, BridgeError> {
        let mut user_ids = Vec::with_capacity(message.mentions.len());
        for remote in &message.mentions {
            user_ids.push(self.matrix_user_of(remote).await?);
        }
        Ok(if user_ids.is_empty() {
            json!({})
        } else {
            json!({ "user_ids": user_ids })
        })
    }

    /// Removes a bridged message (part) that was deleted on the remote network: redacted by
    /// the bot (which has the power to in every portal it created), once. `None` when it was
    /// never bridged.
    pub async fn bridge_deletion(
        &self,
        key: &PortalKey,
        target: &RemoteMessageId,
        part: &str,
    ) -> Result<Option<OwnedEventId>, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        let Some(event_id) = self.mapped_event(key, target, part).await? else {
            return Ok(None);
        };
        let Some(room_id) = self.known_room(key).await? else {
            return Ok(None);
        };
        let txn_id = derive_txn_id(&["bridge-redact", &self.info.id, event_id.as_str()]);
        let request =
            ruma::api::client::redact::redact_event::v3::Request::new(room_id, event_id, txn_id);
        let redaction = self.client.send(request, Identity::bot()).await?.event_id;
        Ok(Some(redaction))
    }

    /// The bridge's stored data of `owner`, as JSON, if it has any.
    pub(super) async fn stored_data(
        &self,
        owner: DataOwner<'_>,
    ) -> Result<Option<String>, BridgeError> {
        Ok(match owner {
            DataOwner::Portal(key) => self.store.portal(&self.info.id, key).await?.map(|p| p.data),
            DataOwner::Puppet(remote) => self.store.puppet_data(&self.info.id, remote).await?,
            DataOwner::Bridge(key) => self.store.bot_data(&self.data_owner(), key).await?,
        })
    }

    /// Stores the bridge's data of `owner` (a portal unknown so far is created without a room).
    pub(super) async fn store_data(
        &self,
        owner: DataOwner<'_>,
        json: String,
    ) -> Result<(), BridgeError> {
        match owner {
            DataOwner::Portal(key) => {
                let _portal = self.portal_locks.lock(key).await;
                let existing = self.store.portal(&self.info.id, key).await?;
                let record = PortalRecord {
                    key: key.clone(),
                    room_id: existing.and_then(|p| p.room_id),
                    data: json,
                };
                self.store.put_portal(&self.info.id, &record).await?;
            }
            DataOwner::Puppet(remote) => {
                let user_id = self.puppet_id(remote)?;
                self.store
                    .put_puppet(&self.info.id, remote, user_id.as_str(), &json)
                    .await?;
            }
            DataOwner::Bridge(key) => {
                // Through the group commit: what a bridge records for several messages at
                // once (their delivery state) is stored in one write.
                let commit = self.messages.commit();
                commit.submit(GroupWrite::Data {
                    owner: self.data_owner(),
                    key: key.to_owned(),
                    json,
                });
                commit.settle().await?;
            }
        }
        Ok(())
    }

    /// The power level of `user_id` in the room of the portal `key`, as the room's
    /// `m.room.power_levels` says now (for a bridge that lets only moderators act); 0 when
    /// the portal has no room.
    pub async fn power_level(
        &self,
        key: &PortalKey,
        user_id: &ruma::UserId,
    ) -> Result<i64, BridgeError> {
        match self.known_room(key).await? {
            Some(room_id) => Ok(self.client.power_level(&room_id, user_id).await?),
            None => Ok(0),
        }
    }

    /// Whose rows the bridge's own data are in the plug-in data table, which bots share under
    /// their plain ids.
    fn data_owner(&self) -> String {
        format!("bridge:{}", self.info.id)
    }

    /// The room of a portal, if it has one.
    pub(super) async fn known_room(
        &self,
        key: &PortalKey,
    ) -> Result<Option<OwnedRoomId>, BridgeError> {
        super::portal::stored_room(self.store.portal(&self.info.id, key).await?.as_ref())
    }

    /// Sends a remote message's `content` as `speaker`, once (see [`BridgeMatrix::send_mapped`]).
    async fn send_and_map(
        &self,
        room_id: &RoomId,
        speaker: &Speaker,
        key: &PortalKey,
        message: &RemoteText,
        content: serde_json::Value,
    ) -> Result<OwnedEventId, BridgeError> {
        let sent = Mapped {
            remote_id: &message.id,
            part: &message.part,
            sent_at_ms: message.sent_at_ms,
        };
        self.send_mapped(room_id, speaker, key, "m.room.message", &sent, content)
            .await
    }

    /// Sends an event of `event_type` as `puppet` for a remote message (part), with the
    /// transaction id derived from it (so a resend after a crash is shown once), and records
    /// the mapping.
    pub(super) async fn send_mapped(
        &self,
        room_id: &RoomId,
        speaker: &Speaker,
        key: &PortalKey,
        event_type: &str,
        sent: &Mapped<'_>,
        mut content: serde_json::Value,
    ) -> Result<OwnedEventId, BridgeError> {
        let receiver = key.receiver.as_ref().map_or("", RemoteUserId::as_str);
        let txn_id = derive_txn_id(&[
            "bridge",
            &self.info.id,
            key.chat.as_str(),
            receiver,
            sent.remote_id.as_str(),
            sent.part,
        ]);
        if matches!(speaker, Speaker::Real { .. }) {
            content[DOUBLE_PUPPET_MARK] = self.info.id.clone().into();
        }
        if event_type == "m.room.message"
            && let Some(fields) = content.as_object_mut()
        {
            fields.entry("m.mentions").or_insert_with(|| json!({}));
        }
        let body = bytes::Bytes::from(content.to_string());
        let ts = sent
            .sent_at_ms
            .and_then(|ms| ruma::UInt::new(ms).map(ruma::MilliSecondsSinceUnixEpoch));
        let attempt = || {
            self.client.send_event_json(
                room_id,
                event_type,
                &txn_id,
                body.clone(),
                speaker.identity(),
                ts,
            )
        };
        let event_id = match attempt().await {
            // A real user not in the portal yet joins it (they are invited to portals).
            Err(e) if e.status() == Some(403) && matches!(speaker, Speaker::Real { .. }) => {
                self.client
                    .join(<&ruma::RoomOrAliasId>::from(room_id), speaker.identity())
                    .await?;
                attempt().await?
            }
            sent => sent?,
        };
        self.messages
            .record(
                &self.info.id,
                MessageRecord {
                    portal: key.clone(),
                    remote_message_id: sent.remote_id.clone(),
                    part: sent.part.to_owned(),
                    room_id: room_id.to_string(),
                    event_id: event_id.to_string(),
                },
            )
            .await?;
        Ok(event_id)
    }

    /// Records that a Matrix message of portal `key` is the remote message `remote_id` (part);
    /// see [`MatrixSide::map_matrix_event`].
    pub async fn map_matrix_event(
        &self,
        key: &PortalKey,
        remote_id: &RemoteMessageId,
        part: &str,
        room_id: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<(), BridgeError> {
        self.messages
            .record(
                &self.info.id,
                MessageRecord {
                    portal: key.clone(),
                    remote_message_id: remote_id.clone(),
                    part: part.to_owned(),
                    room_id: room_id.to_string(),
                    event_id: event_id.to_string(),
                },
            )
            .await?;
        Ok(())
    }

    /// The Matrix user who stands for a remote user: the Matrix user whose login they are, or
    /// their puppet.
    pub async fn matrix_user_of(&self, remote: &RemoteUserId) -> Result<OwnedUserId, BridgeError> {
        if let Some(login) = self.store.login(&self.info.id, remote.as_str()).await?
            && let Ok(user) = OwnedUserId::try_from(login.user_id)
        {
            return Ok(user);
        }
        self.puppet_id(remote)
    }

    /// The user id of a remote user's puppet.
    fn puppet_id(&self, remote: &RemoteUserId) -> Result<OwnedUserId, BridgeError> {
        self.naming.user_id(remote).map_err(|e| BridgeError::Id {
            id: remote.to_string(),
            reason: e.to_string(),
        })
    }

    /// A mention pill for `remote` showing `label`, to put in a message's HTML.
    pub async fn pill(&self, remote: &RemoteUserId, label: &str) -> Result<String, BridgeError> {
        let user = self.matrix_user_of(remote).await?;
        Ok(format!(
            "<a href=\"{}\">{}</a>",
            user.matrix_to_uri(),
            super::format::clean_text(label)
        ))
    }

    /// The Matrix event a remote message (part) was bridged as, if it was.
    pub async fn mapped_event(
        &self,
        key: &PortalKey,
        id: &RemoteMessageId,
        part: &str,
    ) -> Result<Option<OwnedEventId>, BridgeError> {
        Ok(self
            .messages
            .event_of(&self.info.id, key, id, part)
            .await?
            .and_then(|e| OwnedEventId::try_from(e).ok()))
    }
}

/// Which remote message (part) an event is sent for.
pub(super) struct Mapped<'a> {
    /// The remote message.
    pub(super) remote_id: &'a RemoteMessageId,
    /// The part of it (or the reaction recorded under it).
    pub(super) part: &'a str,
    /// When it happened on the network (ms since the epoch).
    pub(super) sent_at_ms: Option<u64>,
}

/// The `m.room.message` content of a remote text (HTML sanitised), or of a location.
fn text_content(message: &RemoteText) -> serde_json::Value {
    if let Some(geo_uri) = &message.geo_uri {
        return json!({ "msgtype": "m.location", "body": message.body, "geo_uri": geo_uri });
    }
    let msgtype = match message.kind {
        TextKind::Text => "m.text",
        TextKind::Notice => "m.notice",
        TextKind::Emote => "m.emote",
    };
    match &message.html {
        Some(html) => json!({
            "msgtype": msgtype,
            "body": message.body,
            "format": "org.matrix.custom.html",
            "formatted_body": super::format::sanitize_html(html),
        }),
        None => json!({ "msgtype": msgtype, "body": message.body }),
    }
}

/// A request that could not be built.
pub(super) fn build_error(endpoint: &'static str, error: &serde_json::Error) -> BridgeError {
    BridgeError::Client(ClientError::Build {
        endpoint,
        message: error.to_string(),
    })
}

/// Milliseconds since the Unix epoch, for what the store records when it happened (intents,
/// uploads); shown to no one.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
