//! The Client-Server operations Switchboard uses, on top of [`HomeserverClient::send`]:
//! start-up checks, registering and profiling its users, memberships, messages.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use ruma::api::client::{account, appservice, membership, profile};
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId,
    RoomOrAliasId, UserId,
};
use serde::Deserialize;

use crate::{
    ClientError, HomeserverClient, Identity, ManagedUser, SEND_EVENT, derive_txn_id, path_segment,
};

impl HomeserverClient {
    /// `GET /_matrix/client/versions`: the spec versions the homeserver supports.
    pub async fn versions(&self) -> Result<Vec<String>, ClientError> {
        #[derive(Deserialize)]
        struct Versions {
            versions: Vec<String>,
        }
        let endpoint = "discovery::get_supported_versions";
        let request = http::Request::get("/_matrix/client/versions")
            .body(bytes::Bytes::new())
            .map_err(|e| ClientError::Build {
                endpoint,
                message: e.to_string(),
            })?;
        let response = self
            .execute(endpoint, request, &[])
            .await
            .map_err(|(e, _)| e)?;
        serde_json::from_slice::<Versions>(response.body())
            .map(|v| v.versions)
            .map_err(|e| ClientError::Decode {
                endpoint,
                message: e.to_string(),
            })
    }

    /// `GET /account/whoami` as `identity`, without retries (used by start-up checks).
    pub async fn whoami(&self, identity: Identity<'_>) -> Result<OwnedUserId, ClientError> {
        self.attempt(account::whoami::v3::Request::new(), identity, &[])
            .await
            .map(|r| r.user_id)
            .map_err(|(e, _)| e)
    }

    /// `POST /_matrix/client/v1/appservice/{id}/ping`: asks the homeserver to call our
    /// `/ping` (also resets the homeserver's backoff towards us). No retries.
    pub async fn ping(&self, appservice_id: &str) -> Result<Duration, ClientError> {
        let mut request = appservice::request_ping::v1::Request::new(appservice_id.to_owned());
        request.transaction_id = Some(derive_txn_id(&[
            "ping",
            &rand::rng().random::<u64>().to_string(),
        ]));
        self.attempt(request, Identity::bot(), &[])
            .await
            .map(|r| r.duration)
            .map_err(|(e, _)| e)
    }

    /// Registers `localpart` with `m.login.application_service` and `inhibit_login: true`
    /// (works behind next-gen auth, no access token is created). `M_USER_IN_USE` counts as done.
    pub async fn register(&self, localpart: &str) -> Result<(), ClientError> {
        let mut request = account::register::v3::Request::new();
        request.username = Some(localpart.to_owned());
        request.login_type = Some(account::register::LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.send(request, Identity::bot()).await {
            Ok(_) => Ok(()),
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes sure a user of our namespace exists (registering it once; remembered in its
    /// [`ManagedUsers`]).
    pub async fn ensure_registered(&self, user_id: &UserId) -> Result<(), ClientError> {
        if user_id == self.bot_user_id {
            return Ok(());
        }
        if self
            .users
            .managed_user(user_id)
            .await
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(());
        }
        self.register(user_id.localpart()).await?;
        if let Err(e) = self
            .users
            .put_managed_user(user_id, &ManagedUser::default())
            .await
        {
            tracing::warn!(%user_id, error = %e, "cannot remember registered user");
        }
        Ok(())
    }

    /// The profile Switchboard last set for one of its users, if it set one.
    pub async fn managed_profile(&self, user_id: &UserId) -> Option<ManagedUser> {
        self.users.managed_user(user_id).await.ok().flatten()
    }

    /// Sets the display name and avatar of one of our users, only where they changed since
    /// we last set them.
    pub async fn ensure_profile(
        &self,
        user_id: &UserId,
        displayname: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<(), ClientError> {
        let known = self
            .users
            .managed_user(user_id)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut updated = known.clone();
        if let Some(name) = displayname
            && known.displayname.as_deref() != Some(name)
        {
            let request = profile::set_profile_field::v3::Request::new(
                user_id.to_owned(),
                profile::ProfileFieldValue::DisplayName(name.to_owned()),
            );
            self.send(request, Identity::user(user_id)).await?;
            updated.displayname = Some(name.to_owned());
        }
        if let Some(avatar) = avatar_url
            && known.avatar_url.as_deref() != Some(avatar)
        {
            let request = profile::set_profile_field::v3::Request::new(
                user_id.to_owned(),
                profile::ProfileFieldValue::AvatarUrl(avatar.into()),
            );
            self.send(request, Identity::user(user_id)).await?;
            updated.avatar_url = Some(avatar.to_owned());
        }
        if updated != known
            && let Err(e) = self.users.put_managed_user(user_id, &updated).await
        {
            tracing::warn!(%user_id, error = %e, "cannot remember profile");
        }
        Ok(())
    }

    /// The user an OpenID token (from `/openid/request_token`) belongs to, asked of the
    /// homeserver; `None` when it does not know the token. Only users of this homeserver can
    /// be checked this way.
    pub async fn openid_user(&self, token: &str) -> Result<Option<OwnedUserId>, ClientError> {
        const ENDPOINT: &str = "federation::openid_userinfo";
        #[derive(Deserialize)]
        struct UserInfo {
            sub: OwnedUserId,
        }
        let mut target = "/_matrix/federation/v1/openid/userinfo?access_token=".to_owned();
        target.extend(url::form_urlencoded::byte_serialize(token.as_bytes()));
        let request = http::Request::get(target)
            .body(bytes::Bytes::new())
            .map_err(|e| ClientError::Build {
                endpoint: ENDPOINT,
                message: e.to_string(),
            })?;
        match self.execute(ENDPOINT, request, &[]).await {
            Ok(response) => Ok(serde_json::from_slice::<UserInfo>(response.body())
                .ok()
                .map(|info| info.sub)),
            Err((e, _)) if matches!(e.status(), Some(401 | 403 | 404)) => Ok(None),
            Err((e, _)) => Err(e),
        }
    }

    /// How `user_id` is called in `room_id`: their room display name, else their localpart.
    pub async fn displayname_in(&self, room_id: &RoomId, user_id: &UserId) -> String {
        use ruma::api::client::state::get_state_event_for_key::v3::Request;
        #[derive(Deserialize)]
        struct Member {
            displayname: Option<String>,
        }
        let request = Request::new(
            room_id.to_owned(),
            ruma::events::StateEventType::RoomMember,
            user_id.to_string(),
        );
        self.send(request, Identity::bot())
            .await
            .ok()
            .and_then(|response| {
                serde_json::from_str::<Member>(response.event_or_content.get()).ok()
            })
            .and_then(|member| member.displayname)
            .unwrap_or_else(|| user_id.localpart().to_owned())
    }

    /// The power level of `user_id` in `room_id` (as the bot reads the room's power levels).
    /// A room's creators have unlimited power from room version 12 on (they are not listed in
    /// the power levels): `i64::MAX` for them.
    pub async fn power_level(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<i64, ClientError> {
        if self
            .privileged_creators(room_id)
            .await?
            .iter()
            .any(|c| c == user_id)
        {
            return Ok(i64::MAX);
        }
        Ok(self.power_levels(room_id).await?.of(user_id))
    }

    /// Whether `user_id` may redact other users' messages in `room_id`.
    pub async fn may_redact(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<bool, ClientError> {
        if self
            .privileged_creators(room_id)
            .await?
            .iter()
            .any(|c| c == user_id)
        {
            return Ok(true);
        }
        let levels = self.power_levels(room_id).await?;
        Ok(levels.of(user_id) >= levels.redact.as_ref().and_then(level).unwrap_or(50))
    }

    /// The creators of `room_id` when its version gives them unlimited power (12 and later,
    /// MSC4289): the sender of `m.room.create` and its `additional_creators`; none for older
    /// versions. Read once per room (a room's creation never changes).
    async fn privileged_creators(
        &self,
        room_id: &RoomId,
    ) -> Result<Arc<[OwnedUserId]>, ClientError> {
        use ruma::api::client::state::get_state_event_for_key::v3::{Request, StateEventFormat};
        #[derive(Deserialize)]
        struct Create {
            sender: Option<OwnedUserId>,
            content: CreateContent,
        }
        #[derive(Deserialize)]
        struct CreateContent {
            #[serde(default)]
            room_version: Option<String>,
            #[serde(default)]
            additional_creators: Vec<OwnedUserId>,
        }
        if let Some(known) = self.known_creators(room_id) {
            return Ok(known);
        }
        let mut request = Request::new(
            room_id.to_owned(),
            ruma::events::StateEventType::RoomCreate,
            String::new(),
        );
        request.format = StateEventFormat::Event;
        let response = self.send(request, Identity::bot()).await?;
        let Ok(create) = serde_json::from_str::<Create>(response.event_or_content.get()) else {
            // Not remembered: the next check reads it again.
            return Ok(Arc::from([]));
        };
        let creators: Arc<[OwnedUserId]> =
            if creators_are_privileged(create.content.room_version.as_deref()) {
                create
                    .sender
                    .into_iter()
                    .chain(create.content.additional_creators)
                    .collect()
            } else {
                Arc::from([])
            };
        self.remember_creators(room_id, Arc::clone(&creators));
        Ok(creators)
    }

    /// The room's `m.room.power_levels`, as the bot reads them.
    async fn power_levels(&self, room_id: &RoomId) -> Result<PowerLevels, ClientError> {
        use ruma::api::client::state::get_state_event_for_key::v3::Request;
        let request = Request::new(
            room_id.to_owned(),
            ruma::events::StateEventType::RoomPowerLevels,
            String::new(),
        );
        let response = self.send(request, Identity::bot()).await?;
        serde_json::from_str(response.event_or_content.get()).map_err(|e| ClientError::Decode {
            endpoint: "get_state_event",
            message: format!("m.room.power_levels: {e}"),
        })
    }

    /// Joins `room` as `user_id`. If the homeserver refuses (not invited), the bot invites the
    /// user and the join is tried once more. Remembered in its [`ManagedUsers`].
    pub async fn ensure_joined(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<(), ClientError> {
        let key = (room_id.to_owned(), user_id.to_owned());
        if self
            .joined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        if self
            .users
            .is_member(room_id, user_id)
            .await
            .unwrap_or(false)
        {
            self.joined
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key);
            return Ok(());
        }
        self.ensure_registered(user_id).await?;
        let join = || {
            self.send(
                membership::join_room_by_id::v3::Request::new(room_id.to_owned()),
                Identity::user(user_id),
            )
        };
        match join().await {
            Ok(_) => {}
            Err(e) if e.status() == Some(403) && user_id != self.bot_user_id => {
                self.send(
                    membership::invite_user::v3::Request::new(
                        room_id.to_owned(),
                        membership::invite_user::v3::InviteUserId::new(user_id.to_owned()).into(),
                    ),
                    Identity::bot(),
                )
                .await?;
                join().await?;
            }
            Err(e) => return Err(e),
        }
        self.remember_membership(room_id, user_id, true).await;
        Ok(())
    }

    /// Joins a room by id or alias as `identity`; returns the room id.
    pub async fn join(
        &self,
        room: &RoomOrAliasId,
        identity: Identity<'_>,
    ) -> Result<OwnedRoomId, ClientError> {
        let response = self
            .send(
                membership::join_room_by_id_or_alias::v3::Request::new(room.to_owned()),
                identity,
            )
            .await?;
        let user = identity.user_id.unwrap_or(&self.bot_user_id);
        self.remember_membership(&response.room_id, user, true)
            .await;
        Ok(response.room_id)
    }

    /// Updates the membership cache (failures are logged: the cache only saves requests).
    pub async fn remember_membership(&self, room_id: &RoomId, user_id: &UserId, joined: bool) {
        {
            let mut known = self
                .joined
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (room_id.to_owned(), user_id.to_owned());
            if joined {
                known.insert(key);
            } else {
                known.remove(&key);
            }
        }
        if let Err(e) = self.users.set_member(room_id, user_id, joined).await {
            tracing::warn!(%room_id, %user_id, error = %e, "cannot remember membership");
        }
    }

    /// Sends a message as `identity` with the given transaction id; `ts` sets the event's
    /// timestamp (appservices only, e.g. for messages bridged late). A message without
    /// `m.mentions` is sent with an empty one (it mentions no one).
    pub async fn send_message(
        &self,
        room_id: &RoomId,
        txn_id: OwnedTransactionId,
        content: &RoomMessageEventContent,
        identity: Identity<'_>,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, ClientError> {
        let mut body = serde_json::to_vec(content).map_err(|e| ClientError::Build {
            endpoint: SEND_EVENT,
            message: e.to_string(),
        })?;
        // Every message says whom it mentions (spec v1.17 dropped body-based mentions): one
        // without is sent with an empty `m.mentions`, spliced in before the object's closing
        // brace (cheaper than copying the content on this path every bot reply takes).
        if content.mentions.is_none() && body.last() == Some(&b'}') {
            body.pop();
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(br#""m.mentions":{}}"#);
        }
        self.send_event_json(
            room_id,
            "m.room.message",
            &txn_id,
            body.into(),
            identity,
            ts,
        )
        .await
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` with content already serialised to JSON:
    /// the request every bot and bridge sends most, built directly rather than through ruma's
    /// generic request machinery (which cost more than the rest of the send).
    pub async fn send_event_json(
        &self,
        room_id: &RoomId,
        event_type: &str,
        txn_id: &ruma::TransactionId,
        content: bytes::Bytes,
        identity: Identity<'_>,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, ClientError> {
        #[derive(Deserialize)]
        struct Sent {
            event_id: OwnedEventId,
        }
        // In an encrypted room, what is sent is the encrypted event (under the same
        // transaction id: a repeat is still recognised by the homeserver).
        let (event_type, content) = match self.encryptor.get() {
            Some(encryptor) if event_type != crate::ENCRYPTED_EVENT => {
                let sender = identity.user_id.unwrap_or(&self.bot_user_id);
                match encryptor
                    .encrypt(room_id, sender, event_type, &content)
                    .await?
                {
                    Some(encrypted) => (crate::ENCRYPTED_EVENT, encrypted),
                    None => (event_type, content),
                }
            }
            _ => (event_type, content),
        };
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{}",
            path_segment(room_id.as_str()),
            path_segment(event_type),
            path_segment(txn_id.as_str()),
        );
        let mut query: Vec<(&str, String)> = Vec::with_capacity(3);
        if let Some(user_id) = identity.user_id {
            query.push(("user_id", user_id.to_string()));
        }
        if let Some(device_id) = identity.device_id {
            query.push(("device_id", device_id.to_string()));
        }
        if let Some(ts) = ts {
            query.push(("ts", ts.get().to_string()));
        }
        let authorization = format!("Bearer {}", identity.as_token.unwrap_or(&self.as_token));
        let response = self
            .with_retries(SEND_EVENT, true, || {
                let request = http::Request::put(path.as_str())
                    .header(http::header::AUTHORIZATION, authorization.as_str())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(content.clone());
                async {
                    let request = request.map_err(|e| crate::build_failure(SEND_EVENT, &e))?;
                    self.execute(SEND_EVENT, request, &query).await
                }
            })
            .await?;
        let sent: Sent =
            serde_json::from_slice(response.body()).map_err(|e| ClientError::Decode {
                endpoint: SEND_EVENT,
                message: e.to_string(),
            })?;
        Ok(sent.event_id)
    }
}

/// The parts of `m.room.power_levels` the client reads.
#[derive(Deserialize)]
struct PowerLevels {
    #[serde(default)]
    users: std::collections::HashMap<String, serde_json::Value>,
    #[serde(default)]
    users_default: Option<serde_json::Value>,
    #[serde(default)]
    redact: Option<serde_json::Value>,
}

impl PowerLevels {
    /// The level of `user_id` (its own, else the default, else 0).
    fn of(&self, user_id: &UserId) -> i64 {
        self.users
            .get(user_id.as_str())
            .and_then(level)
            .or_else(|| self.users_default.as_ref().and_then(level))
            .unwrap_or(0)
    }
}

/// A power level; old rooms may hold levels as strings ("50").
fn level(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Whether a room version gives its creators unlimited power (MSC4289: version 12 and later,
/// and its unstable `org.matrix.hydra.11`). An absent version is 1.
fn creators_are_privileged(room_version: Option<&str>) -> bool {
    room_version.is_some_and(|version| {
        version.contains("hydra") || version.parse::<u32>().is_ok_and(|v| v >= 12)
    })
}

#[cfg(test)]
mod tests {
    use super::creators_are_privileged;

    #[test]
    fn creators_are_privileged_from_room_version_12() {
        for (version, privileged) in [
            (None, false),
            (Some("1"), false),
            (Some("10"), false),
            (Some("11"), false),
            (Some("org.matrix.hydra.11"), true),
            (Some("12"), true),
            (Some("13"), true),
            (Some("com.example.custom"), false),
        ] {
            assert_eq!(creators_are_privileged(version), privileged, "{version:?}");
        }
    }
}
