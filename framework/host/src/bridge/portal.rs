//! Portal rooms on the Matrix side of a bridge: created once (as the bridge bot, with
//! `m.bridge` state, looking as the bridge's `chat_info` says), adopted from an existing room
//! (the `bridge` command), followed through room upgrades, and unbridged.

use ruma::api::client::room::create_room;
use ruma::events::AnyInitialStateEvent;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomAliasId, RoomId};
use serde_json::json;
use switchboard_api::PluginError;

use super::matrix::{BridgeError, BridgeMatrix, PortalInfo, build_error, now_ms};
use crate::bridge::ids::PortalKey;
use crate::client::Identity;
use crate::store::PortalRecord;

impl BridgeMatrix {
    /// How the room of portal `key` should look, as its bridge says.
    pub(super) async fn chat_info(&self, key: &PortalKey) -> Result<PortalInfo, BridgeError> {
        match (&self.bridge, self.bridge()) {
            (_, Some(bridge)) => Ok(bridge.chat_info(key).await?),
            // A Matrix side made without its bridge (the framework's own tests).
            (None, None) => Ok(PortalInfo::default()),
            (Some(_), None) => Err(PluginError::transient(
                "the bridge is stopping; the portal room is created later",
            )
            .into()),
        }
    }

    /// The room of a portal, created (as the bridge bot, with `m.bridge` state, looking as
    /// the bridge's [`Bridge::chat_info`] says) the first time.
    pub async fn ensure_portal(&self, key: &PortalKey) -> Result<OwnedRoomId, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        self.ensure_portal_locked(key).await
    }

    /// The room of a portal for its `alias` (a Matrix user asked for it, so it does not exist
    /// yet): created the first time with that alias; a portal that has a room already gets the
    /// alias pointed at it, and — when `info` says the chat is public — its room opened to
    /// anyone, so the join by alias succeeds.
    pub(crate) async fn ensure_portal_with_alias(
        &self,
        key: &PortalKey,
        info: &PortalInfo,
        alias: &RoomAliasId,
    ) -> Result<OwnedRoomId, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        if let Some(room_id) = self.known_room(key).await? {
            self.publish_alias(&room_id, alias, info.public).await?;
            return Ok(room_id);
        }
        let localpart = self.naming.alias_localpart(&key.chat);
        self.create_portal_room(key, Some(info), Some(localpart))
            .await
    }

    /// Points `alias` at the existing portal room `room_id`, and makes the room public when
    /// `public` and it is not yet.
    async fn publish_alias(
        &self,
        room_id: &RoomId,
        alias: &RoomAliasId,
        public: bool,
    ) -> Result<(), BridgeError> {
        use ruma::api::client::alias::create_alias;
        use ruma::api::client::state::{get_state_event_for_key, send_state_event};
        let request = create_alias::v3::Request::new(alias.to_owned(), room_id.to_owned());
        match self.client.send(request, Identity::bot()).await {
            // Another request for the alias won the race: it exists now.
            Err(e) if e.status() == Some(409) => {}
            answer => {
                answer?;
            }
        }
        if public {
            let request = get_state_event_for_key::v3::Request::new(
                room_id.to_owned(),
                ruma::events::StateEventType::RoomJoinRules,
                String::new(),
            );
            let rule = self.client.send(request, Identity::bot()).await?;
            let rule: serde_json::Value =
                serde_json::from_str(rule.event_or_content.get()).unwrap_or_default();
            if rule["join_rule"] != "public" {
                let content = serde_json::value::to_raw_value(&json!({ "join_rule": "public" }))
                    .map_err(|e| build_error("state::send_state_event", &e))?;
                let request = send_state_event::v3::Request::new_raw(
                    room_id.to_owned(),
                    ruma::events::StateEventType::RoomJoinRules,
                    String::new(),
                    Raw::from_json(content),
                );
                self.client.send(request, Identity::bot()).await?;
            }
        }
        tracing::info!(bridge = %self.info.id, %alias, %room_id, "alias added to an existing portal");
        Ok(())
    }

    /// [`BridgeMatrix::ensure_portal`] with the portal lock held.
    pub(super) async fn ensure_portal_locked(
        &self,
        key: &PortalKey,
    ) -> Result<OwnedRoomId, BridgeError> {
        self.create_portal_room(key, None, None).await
    }

    /// The room of a portal, created (looking as `info` says, else as the bridge's
    /// [`Bridge::chat_info`] says; with `alias` if given) unless it has one; the portal lock
    /// is held.
    async fn create_portal_room(
        &self,
        key: &PortalKey,
        info: Option<&PortalInfo>,
        alias: Option<String>,
    ) -> Result<OwnedRoomId, BridgeError> {
        if let Some(room_id) = self.portal_rooms.room_of(&self.info.id, key) {
            return Ok(room_id);
        }
        let existing = self.store.portal(&self.info.id, key).await?;
        if let Some(room_id) = stored_room(existing.as_ref())? {
            self.portal_rooms
                .insert(room_id.clone(), &self.info.id, key.clone());
            return Ok(room_id);
        }
        // Recorded before the room is asked for: if the answer is lost or Switchboard dies,
        // the next attempt finds the room by this nonce instead of creating a second one.
        let subject = intent_subject(&self.info.id, key);
        let intent = self
            .store
            .begin_intent(
                PORTAL_ROOM_INTENT,
                &subject,
                &format!("{:032x}", rand::random::<u128>()),
                now_ms(),
            )
            .await?;
        if intent.resumed
            && let Some(room_id) = self.find_created_room(&intent.nonce).await?
        {
            tracing::info!(bridge = %self.info.id, chat = %key.chat, %room_id, "found the portal room an earlier attempt created");
            return self
                .finish_creation(key, &room_id, existing, &subject)
                .await;
        }
        let info = match info {
            Some(info) => info.clone(),
            None => self.chat_info(key).await?,
        };
        let info = &info;
        let mut request = create_room::v3::Request::new();
        request.creation_content = Some(
            serde_json::value::to_raw_value(&json!({ CREATION_NONCE: intent.nonce }))
                .map(Raw::from_json)
                .map_err(|e| build_error("room::create_room", &e))?,
        );
        request.room_alias_name = alias;
        request.name.clone_from(&info.name);
        request.topic.clone_from(&info.topic);
        request.invite.clone_from(&info.invite);
        request.is_direct = info.direct;
        request.preset = Some(if info.direct {
            create_room::v3::RoomPreset::TrustedPrivateChat
        } else if info.public {
            create_room::v3::RoomPreset::PublicChat
        } else {
            create_room::v3::RoomPreset::PrivateChat
        });
        request.initial_state = self.initial_bridge_state(key, info)?;
        if let Some(url) = &info.avatar_url {
            let avatar =
                json!({ "type": "m.room.avatar", "state_key": "", "content": { "url": url } });
            request.initial_state.push(
                serde_json::value::to_raw_value(&avatar)
                    .map(Raw::from_json)
                    .map_err(|e| build_error("room::create_room", &e))?,
            );
        }
        let room_id = match self.client.send(request, Identity::bot()).await {
            Ok(created) => created.room_id,
            Err(e) if e.may_have_been_applied() => {
                match self.find_created_room(&intent.nonce).await {
                    Ok(Some(room_id)) => room_id,
                    // Not there (yet): the intent stays, and the next attempt looks again.
                    Ok(None) | Err(_) => return Err(e.into()),
                }
            }
            Err(e) => {
                self.store.end_intent(PORTAL_ROOM_INTENT, &subject).await?;
                return Err(e.into());
            }
        };
        tracing::info!(bridge = %self.info.id, chat = %key.chat, %room_id, "portal room created");
        self.finish_creation(key, &room_id, existing, &subject)
            .await
    }

    /// Records a portal's new room, forgets the intent that created it, and fills in its
    /// history.
    async fn finish_creation(
        &self,
        key: &PortalKey,
        room_id: &RoomId,
        existing: Option<PortalRecord>,
        subject: &str,
    ) -> Result<OwnedRoomId, BridgeError> {
        self.client
            .remember_membership(room_id, self.client.bot_user_id(), true)
            .await;
        self.record_room(key, room_id, existing).await?;
        self.store.end_intent(PORTAL_ROOM_INTENT, subject).await?;
        self.backfill_locked(key).await;
        Ok(room_id.to_owned())
    }

    /// The room a portal creation carrying `nonce` made, if it exists: among the rooms the
    /// bot is in and no portal has, the one whose `m.room.create` holds the nonce.
    async fn find_created_room(&self, nonce: &str) -> Result<Option<OwnedRoomId>, BridgeError> {
        use ruma::api::client::membership::joined_rooms;
        use ruma::api::client::state::get_state_event_for_key;
        let joined = self
            .client
            .send(joined_rooms::v3::Request::new(), Identity::bot())
            .await?
            .joined_rooms;
        for room_id in joined.into_iter().rev() {
            if self.portal_rooms.get(&room_id).is_some() {
                continue;
            }
            let request = get_state_event_for_key::v3::Request::new(
                room_id.clone(),
                ruma::events::StateEventType::RoomCreate,
                String::new(),
            );
            let create = match self.client.send(request, Identity::bot()).await {
                Ok(answer) => answer.event_or_content,
                Err(e) if e.status() == Some(404) || e.status() == Some(403) => continue,
                Err(e) => return Err(e.into()),
            };
            let content = serde_json::from_str::<serde_json::Value>(create.get()).ok();
            if content.is_some_and(|c| c[CREATION_NONCE] == nonce) {
                return Ok(Some(room_id));
            }
        }
        Ok(None)
    }

    /// Records `room_id` as the room of the portal `key` (keeping the bridge's data of an
    /// `existing` portal) and routes it to this bridge.
    async fn record_room(
        &self,
        key: &PortalKey,
        room_id: &RoomId,
        existing: Option<PortalRecord>,
    ) -> Result<(), BridgeError> {
        self.portal_rooms
            .insert(room_id.to_owned(), &self.info.id, key.clone());
        self.store
            .put_portal(
                &self.info.id,
                &PortalRecord {
                    key: key.clone(),
                    room_id: Some(room_id.to_string()),
                    data: existing.map_or_else(|| "{}".to_owned(), |p| p.data),
                },
            )
            .await?;
        Ok(())
    }

    /// Makes an existing room the portal of `key` (an admin's `bridge` command): recorded,
    /// routed to this bridge, and marked with `m.bridge` state when the bot may set it.
    /// `Err` names the room already bridged to `key`, if one is.
    pub async fn adopt_room(
        &self,
        key: &PortalKey,
        room_id: &RoomId,
    ) -> Result<Result<(), OwnedRoomId>, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        let existing = self.store.portal(&self.info.id, key).await?;
        if let Some(room) = stored_room(existing.as_ref())? {
            return Ok(Err(room));
        }
        let info = self.chat_info(key).await.unwrap_or_else(|e| {
            tracing::warn!(bridge = %self.info.id, chat = %key.chat, error = %e, "the bridge cannot describe the chat; its room is bridged without a channel name");
            PortalInfo::default()
        });
        self.record_room(key, room_id, existing).await?;
        let (types, state_key, content) = self.bridge_state(key, &info);
        let content = serde_json::value::to_raw_value(&content)
            .map_err(|e| build_error("state::send_state_event", &e))?;
        for event_type in types {
            let request = ruma::api::client::state::send_state_event::v3::Request::new_raw(
                room_id.to_owned(),
                event_type.into(),
                state_key.clone(),
                Raw::from_json(content.clone()),
            );
            if let Err(e) = self.client.send(request, Identity::bot()).await {
                tracing::warn!(bridge = %self.info.id, %room_id, error = %e, "cannot mark the room as bridged (m.bridge state); the bot may need a higher power level");
            }
        }
        tracing::info!(bridge = %self.info.id, chat = %key.chat, %room_id, "existing room bridged");
        Ok(Ok(()))
    }

    /// Follows a room upgrade: the portal of `key` moves from `old` to `new` (its replacement,
    /// named by the old room's tombstone), which the bot joins.
    pub(crate) async fn follow_upgrade(
        &self,
        key: &PortalKey,
        old: &RoomId,
        new: &RoomId,
    ) -> Result<(), BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        let via: Vec<ruma::OwnedServerName> = old
            .server_name()
            .map(ToOwned::to_owned)
            .into_iter()
            .collect();
        let mut request = ruma::api::client::membership::join_room_by_id_or_alias::v3::Request::new(
            <&ruma::RoomOrAliasId>::from(new).to_owned(),
        );
        request.via = via;
        self.client.send(request, Identity::bot()).await?;
        self.client
            .remember_membership(new, self.client.bot_user_id(), true)
            .await;
        self.portal_rooms.remove(old);
        let existing = self.store.portal(&self.info.id, key).await?;
        self.record_room(key, new, existing).await?;
        tracing::info!(bridge = %self.info.id, chat = %key.chat, %old, %new, "portal followed its room upgrade");
        Ok(())
    }

    /// Stops bridging the portal of `key` (an admin's `unbridge` command): its room is no
    /// longer routed to the bridge, and the portal and its message map are forgotten. The
    /// room itself stays.
    pub async fn unbridge(&self, key: &PortalKey) -> Result<(), BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        if let Some(room_id) = self.known_room(key).await? {
            self.portal_rooms.remove(&room_id);
        }
        self.messages.forget_portal(&self.info.id, key).await?;
        tracing::info!(bridge = %self.info.id, chat = %key.chat, "portal unbridged");
        Ok(())
    }

    /// The `m.bridge` and `uk.half-shot.bridge` state (MSC2346) of a portal: each event type,
    /// with the state key and content they share.
    fn bridge_state(
        &self,
        key: &PortalKey,
        info: &PortalInfo,
    ) -> ([&'static str; 2], String, serde_json::Value) {
        let bot = self.client.bot_user_id();
        let content = json!({
            "bridgebot": bot,
            "creator": bot,
            "protocol": { "id": self.info.id, "displayname": self.info.displayname },
            "channel": { "id": key.chat, "displayname": info.name },
        });
        let state_key = format!("org.switchboard://{}/{}", self.info.id, key.chat);
        (["m.bridge", "uk.half-shot.bridge"], state_key, content)
    }

    /// The bridge state of a portal as initial state of its room.
    fn initial_bridge_state(
        &self,
        key: &PortalKey,
        info: &PortalInfo,
    ) -> Result<Vec<Raw<AnyInitialStateEvent>>, BridgeError> {
        let (types, state_key, content) = self.bridge_state(key, info);
        types
            .into_iter()
            .map(|event_type| {
                let event =
                    json!({ "type": event_type, "state_key": state_key, "content": content });
                serde_json::value::to_raw_value(&event)
                    .map(Raw::from_json)
                    .map_err(|e| build_error("room::create_room", &e))
            })
            .collect()
    }
}

/// The intent scope of portal room creations.
const PORTAL_ROOM_INTENT: &str = "portal_room";
/// The key of the creation nonce in a portal room's `m.room.create` content.
const CREATION_NONCE: &str = "org.switchboard.creation_nonce";

/// A portal's subject in the intent table: bridge, chat and receiver.
fn intent_subject(bridge: &str, key: &PortalKey) -> String {
    let receiver = key.receiver.as_ref().map_or("", |r| r.as_str());
    format!("{bridge}\n{}\n{receiver}", key.chat)
}

/// The room a stored portal has, if any.
pub(super) fn stored_room(
    portal: Option<&PortalRecord>,
) -> Result<Option<OwnedRoomId>, BridgeError> {
    portal
        .and_then(|p| p.room_id.as_deref())
        .map(|r| RoomId::parse(r).map_err(|_| BridgeError::StoredRoom(r.to_owned())))
        .transpose()
}
