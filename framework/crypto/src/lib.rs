//! End-to-bridge encryption: the appservice bot's own device, with matrix-sdk-crypto
//! (vodozemac) as its engine, fed from the homeserver's transactions (to-device events,
//! device-list changes, one-time-key counts: MSC2409, MSC3202, MSC4203) instead of `/sync`.
//!
//! What it does for the rest of Switchboard: decrypts `m.room.encrypted` events before any
//! plug-in sees them ([`Encryption::decrypt`]), and encrypts what the client sends to
//! encrypted rooms (it is the client's [`RoomEncryptor`]). No plug-in sees a key.
//!
//! The device is created without `/login` (MSC4190: `PUT /devices/{id}` by the appservice,
//! `/login` of type `m.login.application_service` where that is not offered), asserted with
//! `?device_id=`, and signed by the bot's own cross-signing keys, so that clients excluding
//! devices their owner did not sign still share room keys with it. Its state lives in
//! Switchboard's database ([`store`]).
//!
//! matrix-sdk-crypto 0.18 speaks ruma 0.16 while Switchboard speaks ruma 0.17: the two meet
//! only as JSON, inside this crate.

mod requests;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use matrix_sdk_crypto::{
    CollectStrategy, DecryptionSettings, EncryptionSettings, EncryptionSyncChanges, MegolmError,
    OlmMachine, TrustRequirement,
};
use ruma_crypto::OneTimeKeyAlgorithm;
use ruma_crypto::api::client::sync::sync_events::DeviceLists;
use ruma_crypto::events::room::encryption::RoomEncryptionEventContent;
use ruma_crypto::events::room::history_visibility::HistoryVisibility;
use ruma_crypto::serde::Raw;
use ruma_crypto::{OwnedRoomId, OwnedUserId, UInt};
use serde::{Deserialize, Serialize};
use switchboard_client::{ClientError, HomeserverClient, Identity, RoomEncryptor};
use switchboard_store::{CryptoItem, CryptoWrite, Store};

use crate::requests::DeviceLink;

/// The `encryption` section of the config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Whether the bots and bridges take part in encrypted rooms (default `false`). Needs a
    /// homeserver that pushes to-device events and key counts to appservices (Synapse:
    /// `experimental_features: {msc2409_to_device_messages_enabled: true,
    /// msc3202_transaction_extensions: true}`).
    pub enabled: bool,
    /// Whose devices get room keys from Switchboard and are believed when they send:
    /// `unverified` (every device), `cross-signed` (devices their owner signed; the default,
    /// as Element does since 2026), `verified` (devices Switchboard verified).
    pub trust: TrustPolicy,
    /// The name of the bot's device, as users see it in their device lists.
    pub device_name: String,
    /// How long an event waits for the room key it was encrypted with before it is given up
    /// as undecryptable (seconds, default 10).
    pub key_wait_secs: u64,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            trust: TrustPolicy::CrossSigned,
            device_name: "Switchboard".to_owned(),
            key_wait_secs: 10,
        }
    }
}

/// Whose devices Switchboard shares room keys with and decrypts events from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustPolicy {
    /// Every device.
    Unverified,
    /// Devices signed by their owner's cross-signing keys.
    CrossSigned,
    /// Devices Switchboard verified (or signed by an identity it verified).
    Verified,
}

impl TrustPolicy {
    fn sharing(self) -> CollectStrategy {
        match self {
            Self::Unverified => CollectStrategy::AllDevices,
            Self::CrossSigned => CollectStrategy::IdentityBasedStrategy,
            Self::Verified => CollectStrategy::OnlyTrustedDevices,
        }
    }

    fn decryption(self) -> DecryptionSettings {
        DecryptionSettings {
            sender_device_trust_requirement: match self {
                Self::Unverified => TrustRequirement::Untrusted,
                Self::CrossSigned => TrustRequirement::CrossSignedOrLegacy,
                Self::Verified => TrustRequirement::CrossSigned,
            },
        }
    }
}

/// What went wrong in the encryption machinery.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The homeserver refused or could not be reached.
    #[error(transparent)]
    Homeserver(#[from] ClientError),
    /// A request or an answer could not be converted.
    #[error("encryption request: {0}")]
    Request(String),
    /// The engine failed (its store, a malformed key…).
    #[error("encryption engine: {0}")]
    Engine(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] switchboard_store::StoreError),
}

impl From<matrix_sdk_crypto::CryptoStoreError> for EncryptionError {
    fn from(error: matrix_sdk_crypto::CryptoStoreError) -> Self {
        Self::Engine(error.to_string())
    }
}

impl From<matrix_sdk_crypto::OlmError> for EncryptionError {
    fn from(error: matrix_sdk_crypto::OlmError) -> Self {
        Self::Engine(error.to_string())
    }
}

impl From<MegolmError> for EncryptionError {
    fn from(error: MegolmError) -> Self {
        Self::Engine(error.to_string())
    }
}

impl EncryptionError {
    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Homeserver(e) => e.is_transient(),
            Self::Store(_) => true,
            Self::Request(_) | Self::Engine(_) => false,
        }
    }
}

/// Why an event could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The event is not a valid encrypted event.
    #[error("the encrypted event is malformed: {0}")]
    Malformed(String),
    /// The room key never arrived (within the configured wait).
    #[error("the key of this message never reached Switchboard's device ({0})")]
    MissingKey(String),
    /// The sender's device is not trusted enough under the configured policy.
    #[error("the sender's device is not trusted: {0}")]
    Untrusted(String),
    /// Anything else (a corrupt message, a failing store).
    #[error("{0}")]
    Failed(String),
}

impl DecryptError {
    /// A short label for metrics.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::MissingKey(_) => "missing_key",
            Self::Untrusted(_) => "untrusted",
            Self::Failed(_) => "failed",
        }
    }
}

/// Whether a room is encrypted, once known.
#[derive(Clone)]
enum Known {
    /// It has no `m.room.encryption`.
    Plain,
    /// Its `m.room.encryption` content.
    Encrypted(RoomEncryptionEventContent),
}

impl Known {
    /// A room with this `m.room.encryption` content: encrypted whatever the content holds (a
    /// content that does not parse gets the recommended settings; never plain text).
    fn encrypted(content: serde_json::Value) -> Self {
        Self::Encrypted(
            serde_json::from_value(content)
                .unwrap_or_else(|_| RoomEncryptionEventContent::with_recommended_defaults()),
        )
    }

    fn settings(self) -> Option<RoomEncryptionEventContent> {
        match self {
            Self::Plain => None,
            Self::Encrypted(content) => Some(content),
        }
    }
}

/// What is known of a room, for encrypting to it.
#[derive(Default)]
struct RoomState {
    /// Whether it is encrypted; `None` until looked up or seen.
    encryption: Option<Known>,
    /// Its members, as last read; `None` after a membership change.
    members: Option<Arc<[OwnedUserId]>>,
}

/// The last one-time-key counts the homeserver reported for the device.
#[derive(Default)]
struct KeyCounts {
    one_time: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    unused_fallback: Option<Vec<OneTimeKeyAlgorithm>>,
}

/// The bot's encrypting device.
pub struct Encryption {
    machine: OlmMachine,
    link: DeviceLink,
    config: EncryptionConfig,
    /// Where the device's id and whether the homeserver knows it are kept.
    store: Store,
    /// Whether the device was created on the homeserver.
    device_created: AtomicBool,
    rooms: Mutex<HashMap<String, RoomState>>,
    /// Held while the engine's requests are sent (one at a time: each answer changes what the
    /// next request is) and while room keys are shared.
    sending: tokio::sync::Mutex<()>,
    keys_arrived: tokio::sync::Notify,
    counts: Mutex<KeyCounts>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("user_id", &self.link.user_id)
            .field("device_id", &self.link.device_id)
            .finish_non_exhaustive()
    }
}

/// The owner key under which the bot's device id is stored.
fn device_owner(user_id: &ruma::UserId) -> String {
    format!("{user_id}|device")
}

fn engine_error(e: impl std::fmt::Display) -> EncryptionError {
    EncryptionError::Engine(e.to_string())
}

impl Encryption {
    /// Opens the bot's device from the database (a new device id on first start) and
    /// installs itself as `client`'s encryption; talks to no one. [`Encryption::publish`]
    /// then makes the device known, once the homeserver can push to Switchboard.
    pub async fn open(
        client: &HomeserverClient,
        store: Store,
        config: EncryptionConfig,
    ) -> Result<Arc<Self>, EncryptionError> {
        let user_id = client.bot_user_id().to_owned();
        let (device_id, created) = device_record(&store, &user_id).await?;
        let crypto_user = ruma_crypto::UserId::parse(user_id.as_str()).map_err(engine_error)?;
        let crypto_device: ruma_crypto::OwnedDeviceId = device_id.as_str().into();
        let persistent =
            store::PersistentStore::open(store.clone(), &crypto_user, &crypto_device).await?;
        let machine =
            OlmMachine::with_store(&crypto_user, &crypto_device, persistent, None).await?;
        let encryption = Arc::new(Self {
            machine,
            link: DeviceLink::new(client.clone(), user_id, device_id),
            config,
            store,
            device_created: AtomicBool::new(created),
            rooms: Mutex::default(),
            sending: tokio::sync::Mutex::new(()),
            keys_arrived: tokio::sync::Notify::new(),
            counts: Mutex::default(),
        });
        if !client.set_encryptor(encryption.clone()) {
            return Err(EncryptionError::Engine(
                "the client already has an encryption installed".to_owned(),
            ));
        }
        Ok(encryption)
    }

    /// Makes the device known: creates it on the homeserver on first start, uploads its
    /// keys, and signs it with the bot's cross-signing keys (created on first start). Each of
    /// these makes the homeserver push to Switchboard (device lists, key counts): call it once
    /// the appservice API listens, or the homeserver backs off from an unreachable
    /// Switchboard and delivers nothing for a while.
    pub async fn publish(&self) -> Result<(), EncryptionError> {
        if !self.device_created.load(Ordering::Relaxed) {
            create_device(
                &self.link.client,
                &self.link.device_id,
                &self.config.device_name,
            )
            .await?;
            self.store
                .write_crypto(
                    &device_owner(&self.link.user_id),
                    &[CryptoWrite::Put(CryptoItem {
                        kind: DEVICE_CREATED.to_owned(),
                        key: String::new(),
                        value: Vec::new(),
                    })],
                )
                .await?;
            self.device_created.store(true, Ordering::Relaxed);
            tracing::info!(device_id = %self.link.device_id, "created the bot's device");
        }
        self.send_outgoing().await?;
        self.ensure_cross_signed().await?;
        tracing::info!(device_id = %self.link.device_id, "end-to-bridge encryption is on");
        Ok(())
    }

    /// The bot's device id.
    #[must_use]
    pub fn device_id(&self) -> &ruma::DeviceId {
        &self.link.device_id
    }

    async fn send_outgoing(&self) -> Result<(), EncryptionError> {
        let _sending = self.sending.lock().await;
        self.link.send_outgoing(&self.machine).await
    }

    /// Creates and uploads the bot's cross-signing keys if it has none, signing its device.
    async fn ensure_cross_signed(&self) -> Result<(), EncryptionError> {
        if self.machine.cross_signing_status().await.is_complete() {
            return Ok(());
        }
        let _sending = self.sending.lock().await;
        let requests = self.machine.bootstrap_cross_signing(false).await?;
        if let Some(upload) = &requests.upload_keys_req
            && let matrix_sdk_crypto::types::requests::AnyOutgoingRequest::KeysUpload(keys) =
                upload.request()
        {
            let response = self.link.call("keys::upload_keys", keys.clone()).await?;
            self.machine
                .mark_request_as_sent(upload.request_id(), &response)
                .await?;
        }
        self.link
            .upload_signing_keys(&requests.upload_signing_keys_req)
            .await?;
        self.link
            .call(
                "keys::upload_signatures",
                requests.upload_signatures_req.clone(),
            )
            .await?;
        tracing::info!("the bot's cross-signing keys are uploaded and its device is signed");
        Ok(())
    }

    /// Takes what the homeserver pushed for the appservice's devices: a to-device event
    /// (`to_device`), device-list changes (`device_lists`), one-time-key counts
    /// (`otk_counts`) or unused fallback key types (`fallback_keys`); anything for another
    /// device is ignored.
    pub async fn receive(&self, list: &str, body: &str) -> Result<(), EncryptionError> {
        let mut to_device = Vec::new();
        let mut device_lists = DeviceLists::default();
        match list {
            "to_device" => {
                #[derive(Deserialize)]
                struct Addressed {
                    to_user_id: Option<String>,
                    to_device_id: Option<String>,
                }
                let addressed: Addressed = serde_json::from_str(body)
                    .map_err(|e| EncryptionError::Request(format!("to-device event: {e}")))?;
                if addressed
                    .to_user_id
                    .is_some_and(|u| u != self.link.user_id.as_str())
                    || addressed
                        .to_device_id
                        .is_some_and(|d| d != self.link.device_id.as_str())
                {
                    return Ok(());
                }
                to_device.push(Raw::from_json(
                    serde_json::value::RawValue::from_string(body.to_owned())
                        .map_err(|e| EncryptionError::Request(e.to_string()))?,
                ));
            }
            "device_lists" => {
                device_lists = serde_json::from_str(body)
                    .map_err(|e| EncryptionError::Request(format!("device lists: {e}")))?;
            }
            "otk_counts" | "fallback_keys" => {
                if !self.remember_counts(list, body)? {
                    return Ok(());
                }
            }
            _ => return Ok(()),
        }
        let (one_time, fallback) = {
            let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            (counts.one_time.clone(), counts.unused_fallback.clone())
        };
        let (_, room_keys) = self
            .machine
            .receive_sync_changes(
                EncryptionSyncChanges {
                    to_device_events: to_device,
                    changed_devices: &device_lists,
                    one_time_keys_counts: &one_time,
                    unused_fallback_keys: fallback.as_deref(),
                    next_batch_token: None,
                },
                &self.config.trust.decryption(),
            )
            .await?;
        if !room_keys.is_empty() {
            self.keys_arrived.notify_waiters();
        }
        self.send_outgoing().await
    }

    /// Keeps the counts reported for this device; returns whether there were any.
    fn remember_counts(&self, list: &str, body: &str) -> Result<bool, EncryptionError> {
        let bad = |e: serde_json::Error| EncryptionError::Request(format!("{list}: {e}"));
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if list == "otk_counts" {
            let mut all: HashMap<String, HashMap<String, BTreeMap<OneTimeKeyAlgorithm, UInt>>> =
                serde_json::from_str(body).map_err(bad)?;
            let Some(ours) = all
                .get_mut(self.link.user_id.as_str())
                .and_then(|devices| devices.remove(self.link.device_id.as_str()))
            else {
                return Ok(false);
            };
            counts.one_time = ours;
        } else {
            let mut all: HashMap<String, HashMap<String, Vec<OneTimeKeyAlgorithm>>> =
                serde_json::from_str(body).map_err(bad)?;
            let Some(ours) = all
                .get_mut(self.link.user_id.as_str())
                .and_then(|devices| devices.remove(self.link.device_id.as_str()))
            else {
                return Ok(false);
            };
            counts.unused_fallback = Some(ours);
        }
        Ok(true)
    }

    /// Learns from a room event what encrypting to the room needs: that it turned
    /// encryption on (`m.room.encryption`), or that its members changed (`m.room.member`).
    pub fn observe(&self, room_id: &str, event_type: &str, content: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        match event_type {
            "m.room.encryption" => {
                let content = serde_json::from_str(content).unwrap_or(serde_json::Value::Null);
                rooms.entry(room_id.to_owned()).or_default().encryption =
                    Some(Known::encrypted(content));
            }
            "m.room.member" => {
                if let Some(room) = rooms.get_mut(room_id) {
                    room.members = None;
                }
            }
            _ => {}
        }
    }

    /// The plain-text form of an encrypted room event (the same event id, sender, room and
    /// time; the decrypted type and content), as JSON. When its key has not arrived, waits
    /// for it up to `key_wait_secs`.
    pub async fn decrypt(&self, event: &str) -> Result<String, DecryptError> {
        #[derive(Deserialize)]
        struct InRoom {
            room_id: OwnedRoomId,
        }
        let InRoom { room_id } =
            serde_json::from_str(event).map_err(|e| DecryptError::Malformed(e.to_string()))?;
        let raw = Raw::from_json(
            serde_json::value::RawValue::from_string(event.to_owned())
                .map_err(|e| DecryptError::Malformed(e.to_string()))?,
        );
        let settings = self.config.trust.decryption();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.config.key_wait_secs);
        loop {
            let arrived = self.keys_arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            match self
                .machine
                .decrypt_room_event(&raw, &room_id, &settings)
                .await
            {
                Ok(decrypted) => return Ok(decrypted.event.json().get().to_owned()),
                Err(MegolmError::MissingRoomKey(None))
                    if tokio::time::Instant::now() < deadline =>
                {
                    // Tried again when a key arrived, or a last time at the deadline.
                    let _ = tokio::time::timeout_at(deadline, arrived).await;
                }
                Err(MegolmError::MissingRoomKey(withheld)) => {
                    return Err(DecryptError::MissingKey(withheld.map_or_else(
                        || "no key after waiting".to_owned(),
                        |code| format!("the sender withheld it: {code}"),
                    )));
                }
                Err(MegolmError::SenderIdentityNotTrusted(level)) => {
                    return Err(DecryptError::Untrusted(level.to_string()));
                }
                Err(e @ (MegolmError::EventError(_) | MegolmError::JsonError(_))) => {
                    return Err(DecryptError::Malformed(e.to_string()));
                }
                Err(e) => return Err(DecryptError::Failed(e.to_string())),
            }
        }
    }

    /// The room's encryption settings (`None`: not encrypted), read once.
    async fn room_encryption(
        &self,
        room_id: &ruma::RoomId,
        sender: &ruma::UserId,
    ) -> Result<Option<RoomEncryptionEventContent>, ClientError> {
        if let Some(known) = self
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(room_id.as_str())
            .and_then(|room| room.encryption.clone())
        {
            return Ok(known.settings());
        }
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
            switchboard_client::escape_path_segment(room_id.as_str())
        );
        let known = match self
            .link
            .get_json::<serde_json::Value>("state::get_state_event", &path, sender)
            .await
        {
            Ok(content) => Known::encrypted(content),
            Err(e) if e.status() == Some(404) => Known::Plain,
            Err(e) => return Err(e),
        };
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let room = rooms.entry(room_id.as_str().to_owned()).or_default();
        // An `m.room.encryption` seen meanwhile wins.
        Ok(room.encryption.get_or_insert(known).clone().settings())
    }

    /// The room's members (joined and invited), read once per membership change.
    async fn members(
        &self,
        room_id: &ruma::RoomId,
        sender: &ruma::UserId,
    ) -> Result<Arc<[OwnedUserId]>, ClientError> {
        #[derive(Deserialize)]
        struct Members {
            chunk: Vec<Member>,
        }
        #[derive(Deserialize)]
        struct Member {
            state_key: String,
            #[serde(default)]
            content: Membership,
        }
        #[derive(Default, Deserialize)]
        struct Membership {
            #[serde(default)]
            membership: String,
        }
        if let Some(members) = self
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(room_id.as_str())
            .and_then(|room| room.members.clone())
        {
            return Ok(members);
        }
        let path = format!(
            "/_matrix/client/v3/rooms/{}/members",
            switchboard_client::escape_path_segment(room_id.as_str())
        );
        let members: Members = self
            .link
            .get_json("membership::get_member_events", &path, sender)
            .await?;
        let members: Arc<[OwnedUserId]> = members
            .chunk
            .into_iter()
            .filter(|m| matches!(m.content.membership.as_str(), "join" | "invite"))
            // A member whose id is not a user id cannot have devices to share keys with.
            .filter_map(|m| OwnedUserId::try_from(m.state_key).ok())
            .collect();
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(room_id.as_str().to_owned())
            .or_default()
            .members = Some(members.clone());
        Ok(members)
    }

    /// Shares the room's key with its members' devices (as the policy allows), then
    /// encrypts the event.
    async fn encrypt_for(
        &self,
        room_id: &ruma::RoomId,
        sender: &ruma::UserId,
        settings: RoomEncryptionEventContent,
        event_type: &str,
        content: &[u8],
    ) -> Result<bytes::Bytes, EncryptionError> {
        let members = self.members(room_id, sender).await?;
        let room = ruma_crypto::RoomId::parse(room_id.as_str()).map_err(engine_error)?;
        let _sending = self.sending.lock().await;
        self.machine
            .update_tracked_users(members.iter().map(AsRef::as_ref))
            .await?;
        self.link.send_outgoing(&self.machine).await?;
        self.link
            .claim_missing_sessions(&self.machine, &members)
            .await?;
        let encryption_settings = EncryptionSettings::new(
            settings,
            HistoryVisibility::Shared,
            self.config.trust.sharing(),
        );
        for request in self
            .machine
            .share_room_key(
                &room,
                members.iter().map(AsRef::as_ref),
                encryption_settings,
            )
            .await?
        {
            self.link.send_to_device(&self.machine, &request).await?;
        }
        let content = Raw::from_json(
            serde_json::value::RawValue::from_string(
                String::from_utf8(content.to_vec()).map_err(engine_error)?,
            )
            .map_err(engine_error)?,
        );
        let encrypted = self
            .machine
            .encrypt_room_event_raw(&room, event_type, &content)
            .await?;
        Ok(bytes::Bytes::from(
            encrypted.content.json().get().to_owned(),
        ))
    }
}

#[async_trait::async_trait]
impl RoomEncryptor for Encryption {
    async fn encrypt(
        &self,
        room_id: &ruma::RoomId,
        sender: &ruma::UserId,
        event_type: &str,
        content: &[u8],
    ) -> Result<Option<bytes::Bytes>, ClientError> {
        let Some(settings) = self.room_encryption(room_id, sender).await? else {
            return Ok(None);
        };
        match self
            .encrypt_for(room_id, sender, settings, event_type, content)
            .await
        {
            Ok(encrypted) => Ok(Some(encrypted)),
            Err(EncryptionError::Homeserver(e)) => Err(e),
            Err(e) => Err(ClientError::Encryption {
                transient: e.is_transient(),
                message: e.to_string(),
            }),
        }
    }
}

/// Item kinds of the bot's device record.
const DEVICE_ID: &str = "device_id";
const DEVICE_CREATED: &str = "device_created";

/// The bot's device id and whether the homeserver knows the device: as stored, or a new id
/// (stored at once, so that a crash before the device is created reuses it).
async fn device_record(
    store: &Store,
    user_id: &ruma::UserId,
) -> Result<(ruma::OwnedDeviceId, bool), EncryptionError> {
    let owner = device_owner(user_id);
    let items = store.crypto_items(&owner).await?;
    let created = items.iter().any(|item| item.kind == DEVICE_CREATED);
    if let Some(item) = items.into_iter().find(|item| item.kind == DEVICE_ID) {
        let id = String::from_utf8(item.value).map_err(engine_error)?;
        return Ok((id.into(), created));
    }
    let device_id: ruma::OwnedDeviceId = format!("SB{}", random_letters(10)).into();
    store
        .write_crypto(
            &owner,
            &[CryptoWrite::Put(CryptoItem {
                kind: DEVICE_ID.to_owned(),
                key: String::new(),
                value: device_id.as_str().as_bytes().to_vec(),
            })],
        )
        .await?;
    Ok((device_id, false))
}

/// Creates the device on the homeserver: `PUT /devices/{id}` as the appservice (MSC4190),
/// else a `/login` of type `m.login.application_service` naming the device.
async fn create_device(
    client: &HomeserverClient,
    device_id: &ruma::DeviceId,
    name: &str,
) -> Result<(), EncryptionError> {
    let put = http::Request::put(format!(
        "/_matrix/client/v3/devices/{}",
        switchboard_client::escape_path_segment(device_id.as_str())
    ))
    .body(bytes::Bytes::from(
        serde_json::json!({ "display_name": name }).to_string(),
    ))
    .map_err(engine_error)?;
    let bot = Identity::user(client.bot_user_id());
    match client
        .send_http("device::update_device", put, bot, true)
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if matches!(e.status(), Some(400 | 404 | 405)) => {
            tracing::info!(error = %e, "the homeserver does not create devices for appservices (MSC4190); logging the device in instead");
        }
        Err(e) => return Err(e.into()),
    }
    let login = serde_json::json!({
        "type": "m.login.application_service",
        "identifier": { "type": "m.id.user", "user": client.bot_user_id().localpart() },
        "device_id": device_id.as_str(),
        "initial_device_display_name": name,
    });
    let request = http::Request::post("/_matrix/client/v3/login")
        .body(bytes::Bytes::from(login.to_string()))
        .map_err(engine_error)?;
    client
        .send_http("session::login", request, Identity::bot(), false)
        .await?;
    Ok(())
}

fn random_letters(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}
