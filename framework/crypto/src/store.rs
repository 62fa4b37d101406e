//! The engine's state in Switchboard's database: matrix-sdk-crypto's in-memory store, with
//! every change written to the `crypto_item` table first (one transaction per change set), and
//! read back into memory at start. The database is the truth; memory is its copy.
//!
//! Not kept: server-side key backup and dehydrated devices (Switchboard uses neither) and the
//! cross-process leases (one Switchboard process serves at a time; see the hot-standby lock).

use std::collections::HashMap;

use matrix_sdk_common::cross_process_lock::CrossProcessLockGeneration;
use matrix_sdk_crypto::olm::{
    InboundGroupSession, OlmMessageHash, OutboundGroupSession, PickledAccount,
    PickledCrossSigningIdentity, PickledInboundGroupSession, PickledOutboundGroupSession,
    PickledSession, PrivateCrossSigningIdentity, SenderDataType, Session,
};
use matrix_sdk_crypto::store::types::{
    BackupKeys, Changes, DehydratedDeviceKey, PendingChanges, RoomKeyCounts, RoomKeyWithheldEntry,
    RoomPendingKeyBundleDetails, RoomSettings, SecretsInboxItem, StoredRoomKeyBundleData,
    TrackedUser,
};
use matrix_sdk_crypto::store::{CryptoStore, CryptoStoreError, MemoryStore};
use matrix_sdk_crypto::vodozemac::Curve25519PublicKey;
use matrix_sdk_crypto::{Account, DeviceData, GossipRequest, SecretInfo, UserIdentityData};
use ruma_crypto::events::secret::request::SecretName;
use ruma_crypto::{DeviceId, OwnedDeviceId, RoomId, TransactionId, UserId};
use switchboard_store::{CryptoItem, CryptoWrite, Store};

/// The item kinds, as stored.
mod kind {
    pub const ACCOUNT: &str = "account";
    pub const IDENTITY: &str = "identity";
    pub const SESSION: &str = "session";
    pub const INBOUND: &str = "inbound_group_session";
    pub const OUTBOUND: &str = "outbound_group_session";
    pub const DEVICE: &str = "device";
    pub const USER_IDENTITY: &str = "user_identity";
    pub const OLM_HASH: &str = "olm_hash";
    pub const KEY_REQUEST: &str = "key_request";
    pub const WITHHELD: &str = "withheld";
    pub const ROOM_SETTINGS: &str = "room_settings";
    pub const SECRET: &str = "secret";
    pub const TRACKED_USER: &str = "tracked_user";
    pub const CUSTOM: &str = "custom";
    pub const NEXT_BATCH: &str = "next_batch";
    pub const KEY_BUNDLE: &str = "room_key_bundle";
    pub const BACKUP_DOWNLOADED: &str = "room_keys_downloaded";
    pub const PENDING_BUNDLE: &str = "pending_key_bundle";
}

/// A device's encryption state: memory in front of the database.
#[derive(Debug)]
pub(crate) struct PersistentStore {
    memory: MemoryStore,
    store: Store,
    /// `<user id>|<device id>`.
    owner: String,
}

/// A failure of the database, as the engine takes it.
fn backend(error: impl std::error::Error + Send + Sync + 'static) -> CryptoStoreError {
    CryptoStoreError::backend(error)
}

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CryptoStoreError> {
    serde_json::to_vec(value).map_err(CryptoStoreError::Serialization)
}

fn put(kind: &str, key: String, value: Vec<u8>) -> CryptoWrite {
    CryptoWrite::Put(CryptoItem {
        kind: kind.to_owned(),
        key,
        value,
    })
}

fn delete(kind: &str, key: String) -> CryptoWrite {
    CryptoWrite::Delete {
        kind: kind.to_owned(),
        key,
    }
}

impl PersistentStore {
    /// The state of `user_id`'s device `device_id` as stored (empty for a new device).
    pub(crate) async fn open(
        store: Store,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Self, CryptoStoreError> {
        let owner = format!("{user_id}|{device_id}");
        let items = store.crypto_items(&owner).await.map_err(backend)?;
        let memory = MemoryStore::new();
        load(&memory, items).await?;
        Ok(Self {
            memory,
            store,
            owner,
        })
    }

    async fn write(&self, writes: &[CryptoWrite]) -> Result<(), CryptoStoreError> {
        self.store
            .write_crypto(&self.owner, writes)
            .await
            .map_err(backend)
    }
}

/// The stored items, by kind.
#[derive(Default)]
struct Loaded {
    by_kind: HashMap<String, Vec<(String, Vec<u8>)>>,
}

impl Loaded {
    fn take(&mut self, kind: &str) -> Vec<(String, Vec<u8>)> {
        self.by_kind.remove(kind).unwrap_or_default()
    }

    fn values<T: serde::de::DeserializeOwned>(
        &mut self,
        kind: &str,
    ) -> Result<Vec<T>, CryptoStoreError> {
        self.take(kind)
            .into_iter()
            .map(|(_, value)| {
                serde_json::from_slice(&value).map_err(CryptoStoreError::Serialization)
            })
            .collect()
    }
}

/// Reads the stored items into `memory`.
async fn load(memory: &MemoryStore, items: Vec<CryptoItem>) -> Result<(), CryptoStoreError> {
    let mut loaded = Loaded::default();
    for item in items {
        loaded
            .by_kind
            .entry(item.kind)
            .or_default()
            .push((item.key, item.value));
    }
    let Some(account) = loaded.values::<PickledAccount>(kind::ACCOUNT)?.pop() else {
        return Ok(());
    };
    let account = Account::from_pickle(account).map_err(backend)?;
    let device_keys = account.device_keys();
    let static_data = account.static_data().clone();
    infallible(
        memory
            .save_pending_changes(PendingChanges {
                account: Some(account),
            })
            .await,
    );

    let mut changes = changes_of(&mut loaded, &device_keys, &static_data)?;
    let inbound = std::mem::take(&mut changes.inbound_group_sessions);
    infallible(memory.save_changes(changes).await);
    infallible(memory.save_inbound_group_sessions(inbound, None).await);
    let tracked: Vec<TrackedUser> = loaded.values(kind::TRACKED_USER)?;
    let tracked: Vec<(&UserId, bool)> = tracked
        .iter()
        .map(|t| (t.user_id.as_ref(), t.dirty))
        .collect();
    infallible(memory.save_tracked_users(&tracked).await);
    for (key, value) in loaded.take(kind::CUSTOM) {
        infallible(memory.set_custom_value(&key, value).await);
    }
    Ok(())
}

/// The engine's objects of the stored items (all but the account, the tracked users and the
/// custom values).
fn changes_of(
    loaded: &mut Loaded,
    device_keys: &matrix_sdk_crypto::types::DeviceKeys,
    static_data: &matrix_sdk_crypto::olm::StaticAccountData,
) -> Result<Changes, CryptoStoreError> {
    let mut changes = Changes::default();
    if let Some(identity) = loaded
        .values::<PickledCrossSigningIdentity>(kind::IDENTITY)?
        .pop()
    {
        changes.private_identity =
            Some(PrivateCrossSigningIdentity::from_pickle(identity).map_err(backend)?);
    }
    for pickle in loaded.values::<PickledSession>(kind::SESSION)? {
        changes
            .sessions
            .push(Session::from_pickle(device_keys.clone(), pickle).map_err(backend)?);
    }
    for pickle in loaded.values::<PickledInboundGroupSession>(kind::INBOUND)? {
        changes
            .inbound_group_sessions
            .push(InboundGroupSession::from_pickle(pickle).map_err(backend)?);
    }
    let identity_keys = static_data.identity_keys.clone();
    for pickle in loaded.values::<PickledOutboundGroupSession>(kind::OUTBOUND)? {
        changes.outbound_group_sessions.push(
            OutboundGroupSession::from_pickle(
                static_data.device_id.clone(),
                identity_keys.clone(),
                pickle,
            )
            .map_err(backend)?,
        );
    }
    changes.devices.new = loaded.values::<DeviceData>(kind::DEVICE)?;
    changes.identities.new = loaded.values::<UserIdentityData>(kind::USER_IDENTITY)?;
    changes.message_hashes = loaded.values::<OlmMessageHash>(kind::OLM_HASH)?;
    changes.key_requests = loaded.values::<GossipRequest>(kind::KEY_REQUEST)?;
    for entry in loaded.values::<RoomKeyWithheldEntry>(kind::WITHHELD)? {
        let (room_id, session_id) = withheld_key(&entry);
        changes
            .withheld_session_info
            .entry(room_id)
            .or_default()
            .insert(session_id, entry);
    }
    for (room, settings) in loaded.take(kind::ROOM_SETTINGS) {
        let room = RoomId::parse(&room).map_err(backend)?;
        let settings: RoomSettings =
            serde_json::from_slice(&settings).map_err(CryptoStoreError::Serialization)?;
        changes.room_settings.insert(room, settings);
    }
    for (name, secret) in loaded.values::<(String, String)>(kind::SECRET)? {
        changes.secrets.push(SecretsInboxItem {
            secret_name: SecretName::from(name),
            secret: secret.into(),
        });
    }
    changes.next_batch_token = loaded.values::<String>(kind::NEXT_BATCH)?.pop();
    changes.received_room_key_bundles =
        loaded.values::<StoredRoomKeyBundleData>(kind::KEY_BUNDLE)?;
    for (room, _) in loaded.take(kind::BACKUP_DOWNLOADED) {
        changes
            .room_key_backups_fully_downloaded
            .insert(RoomId::parse(&room).map_err(backend)?);
    }
    for details in loaded.values::<RoomPendingKeyBundleDetails>(kind::PENDING_BUNDLE)? {
        changes
            .rooms_pending_key_bundle
            .insert(details.room_id.clone(), Some(details));
    }
    Ok(changes)
}

fn withheld_key(entry: &RoomKeyWithheldEntry) -> (ruma_crypto::OwnedRoomId, String) {
    let content = &entry.content;
    (
        content.room_id().map_or_else(
            // Withheld notices without a room (`m.no_olm`) are not stored by the engine.
            || ruma_crypto::owned_room_id!("!unknown:invalid"),
            ToOwned::to_owned,
        ),
        content.megolm_session_id().unwrap_or_default().to_owned(),
    )
}

/// The value of the memory's answers, which cannot fail.
fn infallible<T>(result: Result<T, std::convert::Infallible>) -> T {
    match result {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

/// The writes that store `changes`.
async fn writes_of(changes: &Changes) -> Result<Vec<CryptoWrite>, CryptoStoreError> {
    let mut writes = Vec::new();
    if let Some(identity) = &changes.private_identity {
        writes.push(put(
            kind::IDENTITY,
            String::new(),
            json(&identity.pickle().await)?,
        ));
    }
    for session in &changes.sessions {
        let pickle = session.pickle().await;
        let key = format!("{}|{}", pickle.sender_key.to_base64(), session.session_id());
        writes.push(put(kind::SESSION, key, json(&pickle)?));
    }
    for session in &changes.inbound_group_sessions {
        writes.push(inbound_write(session).await?);
    }
    for session in &changes.outbound_group_sessions {
        writes.push(put(
            kind::OUTBOUND,
            session.room_id().to_string(),
            json(&session.pickle().await)?,
        ));
    }
    for device in changes.devices.new.iter().chain(&changes.devices.changed) {
        writes.push(put(kind::DEVICE, device_key(device), json(device)?));
    }
    for device in &changes.devices.deleted {
        writes.push(delete(kind::DEVICE, device_key(device)));
    }
    for identity in changes
        .identities
        .new
        .iter()
        .chain(&changes.identities.changed)
    {
        writes.push(put(
            kind::USER_IDENTITY,
            identity.user_id().to_string(),
            json(identity)?,
        ));
    }
    for hash in &changes.message_hashes {
        writes.push(put(
            kind::OLM_HASH,
            format!("{}|{}", hash.sender_key, hash.hash),
            json(hash)?,
        ));
    }
    for request in &changes.key_requests {
        writes.push(put(
            kind::KEY_REQUEST,
            request.request_id.to_string(),
            json(request)?,
        ));
    }
    room_writes(changes, &mut writes)?;
    Ok(writes)
}

/// The writes of what `changes` holds about rooms and secrets.
fn room_writes(changes: &Changes, writes: &mut Vec<CryptoWrite>) -> Result<(), CryptoStoreError> {
    for (room_id, sessions) in &changes.withheld_session_info {
        for (session_id, entry) in sessions {
            writes.push(put(
                kind::WITHHELD,
                format!("{room_id}|{session_id}"),
                json(entry)?,
            ));
        }
    }
    for (room_id, settings) in &changes.room_settings {
        writes.push(put(
            kind::ROOM_SETTINGS,
            room_id.to_string(),
            json(settings)?,
        ));
    }
    for (n, secret) in changes.secrets.iter().enumerate() {
        let value = (secret.secret_name.to_string(), secret.secret.as_str());
        let unique = format!(
            "{}|{}-{n}",
            secret.secret_name,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        writes.push(put(kind::SECRET, unique, json(&value)?));
    }
    if let Some(token) = &changes.next_batch_token {
        writes.push(put(kind::NEXT_BATCH, String::new(), json(token)?));
    }
    for bundle in &changes.received_room_key_bundles {
        writes.push(put(
            kind::KEY_BUNDLE,
            format!("{}|{}", bundle.bundle_data.room_id, bundle.sender_user),
            json(bundle)?,
        ));
    }
    for room in &changes.room_key_backups_fully_downloaded {
        writes.push(put(kind::BACKUP_DOWNLOADED, room.to_string(), Vec::new()));
    }
    for (room, details) in &changes.rooms_pending_key_bundle {
        writes.push(match details {
            Some(details) => put(kind::PENDING_BUNDLE, room.to_string(), json(details)?),
            None => delete(kind::PENDING_BUNDLE, room.to_string()),
        });
    }
    Ok(())
}

async fn inbound_write(session: &InboundGroupSession) -> Result<CryptoWrite, CryptoStoreError> {
    Ok(put(
        kind::INBOUND,
        format!("{}|{}", session.room_id(), session.session_id()),
        json(&session.pickle().await)?,
    ))
}

fn device_key(device: &DeviceData) -> String {
    format!("{}|{}", device.user_id(), device.device_id())
}

/// Forwards a read to the memory, whose errors cannot happen.
macro_rules! read {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        $self.memory.$method($($arg),*).await.map_err(|never| match never {})
    };
}

#[async_trait::async_trait]
impl CryptoStore for PersistentStore {
    type Error = CryptoStoreError;

    async fn load_account(&self) -> Result<Option<Account>, Self::Error> {
        read!(self.load_account())
    }

    async fn load_identity(&self) -> Result<Option<PrivateCrossSigningIdentity>, Self::Error> {
        read!(self.load_identity())
    }

    async fn save_changes(&self, changes: Changes) -> Result<(), Self::Error> {
        self.write(&writes_of(&changes).await?).await?;
        read!(self.save_changes(changes))
    }

    async fn save_pending_changes(&self, changes: PendingChanges) -> Result<(), Self::Error> {
        if let Some(account) = &changes.account {
            self.write(&[put(kind::ACCOUNT, String::new(), json(&account.pickle())?)])
                .await?;
        }
        read!(self.save_pending_changes(changes))
    }

    async fn save_inbound_group_sessions(
        &self,
        sessions: Vec<InboundGroupSession>,
        backed_up_to_version: Option<&str>,
    ) -> Result<(), Self::Error> {
        let mut writes = Vec::with_capacity(sessions.len());
        for session in &sessions {
            writes.push(inbound_write(session).await?);
        }
        self.write(&writes).await?;
        read!(self.save_inbound_group_sessions(sessions, backed_up_to_version))
    }

    async fn get_sessions(&self, sender_key: &str) -> Result<Option<Vec<Session>>, Self::Error> {
        read!(self.get_sessions(sender_key))
    }

    async fn get_inbound_group_session(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<InboundGroupSession>, Self::Error> {
        read!(self.get_inbound_group_session(room_id, session_id))
    }

    async fn get_withheld_info(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<RoomKeyWithheldEntry>, Self::Error> {
        read!(self.get_withheld_info(room_id, session_id))
    }

    async fn get_withheld_sessions_by_room_id(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<RoomKeyWithheldEntry>, Self::Error> {
        read!(self.get_withheld_sessions_by_room_id(room_id))
    }

    async fn get_inbound_group_sessions(&self) -> Result<Vec<InboundGroupSession>, Self::Error> {
        read!(self.get_inbound_group_sessions())
    }

    async fn inbound_group_session_counts(
        &self,
        backup_version: Option<&str>,
    ) -> Result<RoomKeyCounts, Self::Error> {
        read!(self.inbound_group_session_counts(backup_version))
    }

    async fn get_inbound_group_sessions_by_room_id(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<InboundGroupSession>, Self::Error> {
        read!(self.get_inbound_group_sessions_by_room_id(room_id))
    }

    async fn get_inbound_group_sessions_for_device_batch(
        &self,
        curve_key: Curve25519PublicKey,
        sender_data_type: SenderDataType,
        after_session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>, Self::Error> {
        read!(self.get_inbound_group_sessions_for_device_batch(
            curve_key,
            sender_data_type,
            after_session_id,
            limit
        ))
    }

    async fn inbound_group_sessions_for_backup(
        &self,
        backup_version: &str,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>, Self::Error> {
        read!(self.inbound_group_sessions_for_backup(backup_version, limit))
    }

    async fn mark_inbound_group_sessions_as_backed_up(
        &self,
        backup_version: &str,
        room_and_session_ids: &[(&RoomId, &str)],
    ) -> Result<(), Self::Error> {
        read!(self.mark_inbound_group_sessions_as_backed_up(backup_version, room_and_session_ids))
    }

    async fn reset_backup_state(&self) -> Result<(), Self::Error> {
        read!(self.reset_backup_state())
    }

    async fn load_backup_keys(&self) -> Result<BackupKeys, Self::Error> {
        read!(self.load_backup_keys())
    }

    async fn load_dehydrated_device_pickle_key(
        &self,
    ) -> Result<Option<DehydratedDeviceKey>, Self::Error> {
        read!(self.load_dehydrated_device_pickle_key())
    }

    async fn delete_dehydrated_device_pickle_key(&self) -> Result<(), Self::Error> {
        read!(self.delete_dehydrated_device_pickle_key())
    }

    async fn get_outbound_group_session(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<OutboundGroupSession>, Self::Error> {
        read!(self.get_outbound_group_session(room_id))
    }

    async fn load_tracked_users(&self) -> Result<Vec<TrackedUser>, Self::Error> {
        read!(self.load_tracked_users())
    }

    async fn save_tracked_users(&self, users: &[(&UserId, bool)]) -> Result<(), Self::Error> {
        let mut writes = Vec::with_capacity(users.len());
        for (user_id, dirty) in users {
            let tracked = TrackedUser {
                user_id: (*user_id).to_owned(),
                dirty: *dirty,
            };
            writes.push(put(
                kind::TRACKED_USER,
                user_id.to_string(),
                json(&tracked)?,
            ));
        }
        self.write(&writes).await?;
        read!(self.save_tracked_users(users))
    }

    async fn get_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Option<DeviceData>, Self::Error> {
        read!(self.get_device(user_id, device_id))
    }

    async fn get_user_devices(
        &self,
        user_id: &UserId,
    ) -> Result<HashMap<OwnedDeviceId, DeviceData>, Self::Error> {
        read!(self.get_user_devices(user_id))
    }

    async fn get_own_device(&self) -> Result<DeviceData, Self::Error> {
        read!(self.get_own_device())
    }

    async fn get_user_identity(
        &self,
        user_id: &UserId,
    ) -> Result<Option<UserIdentityData>, Self::Error> {
        read!(self.get_user_identity(user_id))
    }

    async fn is_message_known(&self, message_hash: &OlmMessageHash) -> Result<bool, Self::Error> {
        read!(self.is_message_known(message_hash))
    }

    async fn get_outgoing_secret_requests(
        &self,
        request_id: &TransactionId,
    ) -> Result<Option<GossipRequest>, Self::Error> {
        read!(self.get_outgoing_secret_requests(request_id))
    }

    async fn get_secret_request_by_info(
        &self,
        secret_info: &SecretInfo,
    ) -> Result<Option<GossipRequest>, Self::Error> {
        read!(self.get_secret_request_by_info(secret_info))
    }

    async fn get_unsent_secret_requests(&self) -> Result<Vec<GossipRequest>, Self::Error> {
        read!(self.get_unsent_secret_requests())
    }

    async fn delete_outgoing_secret_requests(
        &self,
        request_id: &TransactionId,
    ) -> Result<(), Self::Error> {
        self.write(&[delete(kind::KEY_REQUEST, request_id.to_string())])
            .await?;
        read!(self.delete_outgoing_secret_requests(request_id))
    }

    async fn get_secrets_from_inbox(
        &self,
        secret_name: &SecretName,
    ) -> Result<Vec<zeroize::Zeroizing<String>>, Self::Error> {
        read!(self.get_secrets_from_inbox(secret_name))
    }

    async fn delete_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<(), Self::Error> {
        self.write(&[CryptoWrite::DeletePrefix {
            kind: kind::SECRET.to_owned(),
            prefix: format!("{secret_name}|"),
        }])
        .await?;
        read!(self.delete_secrets_from_inbox(secret_name))
    }

    async fn get_room_settings(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomSettings>, Self::Error> {
        read!(self.get_room_settings(room_id))
    }

    async fn get_received_room_key_bundle_data(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<StoredRoomKeyBundleData>, Self::Error> {
        read!(self.get_received_room_key_bundle_data(room_id, user_id))
    }

    async fn get_pending_key_bundle_details_for_room(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomPendingKeyBundleDetails>, Self::Error> {
        read!(self.get_pending_key_bundle_details_for_room(room_id))
    }

    async fn get_all_rooms_pending_key_bundles(
        &self,
    ) -> Result<Vec<RoomPendingKeyBundleDetails>, Self::Error> {
        read!(self.get_all_rooms_pending_key_bundles())
    }

    async fn has_downloaded_all_room_keys(&self, room_id: &RoomId) -> Result<bool, Self::Error> {
        read!(self.has_downloaded_all_room_keys(room_id))
    }

    async fn get_custom_value(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        read!(self.get_custom_value(key))
    }

    async fn set_custom_value(&self, key: &str, value: Vec<u8>) -> Result<(), Self::Error> {
        self.write(&[put(kind::CUSTOM, key.to_owned(), value.clone())])
            .await?;
        read!(self.set_custom_value(key, value))
    }

    async fn remove_custom_value(&self, key: &str) -> Result<(), Self::Error> {
        self.write(&[delete(kind::CUSTOM, key.to_owned())]).await?;
        read!(self.remove_custom_value(key))
    }

    async fn try_take_leased_lock(
        &self,
        lease_duration_ms: u32,
        key: &str,
        holder: &str,
    ) -> Result<Option<CrossProcessLockGeneration>, Self::Error> {
        read!(self.try_take_leased_lock(lease_duration_ms, key, holder))
    }

    async fn next_batch_token(&self) -> Result<Option<String>, Self::Error> {
        read!(self.next_batch_token())
    }

    async fn close(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn reopen(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn get_size(&self) -> Result<Option<usize>, Self::Error> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk_crypto::OlmMachine;
    use ruma_crypto::{device_id, user_id};
    use switchboard_store::{SqliteSync, Store};

    use super::PersistentStore;

    /// A device's account and cross-signing identity come back from the database as they were
    /// (the same keys after a restart), and another device's state is apart.
    #[tokio::test]
    async fn a_device_comes_back_from_the_database_with_its_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("crypto.db").display());
        let db = Store::connect(&url, 2, SqliteSync::Normal)
            .await
            .expect("store");
        let (user, device) = (user_id!("@bot:x"), device_id!("SBDEVICE"));
        let first = OlmMachine::with_store(
            user,
            device,
            PersistentStore::open(db.clone(), user, device)
                .await
                .expect("open"),
            None,
        )
        .await
        .expect("machine");
        let keys = first.identity_keys();
        first
            .bootstrap_cross_signing(false)
            .await
            .expect("cross-signing");
        let master = first
            .export_cross_signing_keys()
            .await
            .expect("export")
            .and_then(|k| k.master_key.clone())
            .expect("master key");
        drop(first);

        let again = OlmMachine::with_store(
            user,
            device,
            PersistentStore::open(db.clone(), user, device)
                .await
                .expect("reopen"),
            None,
        )
        .await
        .expect("machine again");
        assert_eq!(again.identity_keys().curve25519, keys.curve25519);
        assert_eq!(again.identity_keys().ed25519, keys.ed25519);
        let master_again = again
            .export_cross_signing_keys()
            .await
            .expect("export")
            .and_then(|k| k.master_key.clone());
        assert_eq!(master_again.as_deref(), Some(master.as_str()));

        let other = OlmMachine::with_store(
            user,
            device_id!("OTHER"),
            PersistentStore::open(db, user, device_id!("OTHER"))
                .await
                .expect("other"),
            None,
        )
        .await
        .expect("other machine");
        assert_ne!(other.identity_keys().curve25519, keys.curve25519);
    }
}
