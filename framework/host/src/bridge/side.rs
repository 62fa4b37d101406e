//! [`MatrixSide`] for [`BridgeMatrix`]: what bridges reach through their context, the host's
//! operations failing with [`PluginError`].

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use switchboard_api::PluginError;
use switchboard_api::bridge::{DataOwner, MatrixSide};
use switchboard_api::login::Login;
use switchboard_api::remote::{Applied, RemoteEvent, RemoteMedia};

use super::matrix::{BridgeError, BridgeInfo, BridgeMatrix, Bridged, PuppetProfile, RemoteText};
use crate::bridge::ids::{PortalKey, RemoteMessageId, RemoteUserId};

/// The bridges' view of their Matrix side: the same operations, failing with [`PluginError`].
#[async_trait::async_trait]
impl MatrixSide for BridgeMatrix {
    fn info(&self) -> &BridgeInfo {
        &self.info
    }

    async fn apply(&self, key: &PortalKey, event: &RemoteEvent) -> Result<Applied, PluginError> {
        Ok(BridgeMatrix::apply(self, key, event).await?)
    }

    async fn ensure_puppet(
        &self,
        remote: &RemoteUserId,
        profile: &PuppetProfile,
    ) -> Result<OwnedUserId, PluginError> {
        Ok(BridgeMatrix::ensure_puppet(self, remote, profile).await?)
    }

    async fn ensure_portal(&self, key: &PortalKey) -> Result<OwnedRoomId, PluginError> {
        Ok(BridgeMatrix::ensure_portal(self, key).await?)
    }

    async fn unbridge(&self, key: &PortalKey) -> Result<(), PluginError> {
        Ok(BridgeMatrix::unbridge(self, key).await?)
    }

    async fn bridge_text(
        &self,
        key: &PortalKey,
        message: &RemoteText,
    ) -> Result<Bridged, PluginError> {
        Ok(BridgeMatrix::bridge_text(self, key, message).await?)
    }

    async fn bridge_edit(
        &self,
        key: &PortalKey,
        target: &RemoteMessageId,
        edit: &RemoteText,
    ) -> Result<Option<Bridged>, PluginError> {
        Ok(BridgeMatrix::bridge_edit(self, key, target, edit).await?)
    }

    async fn bridge_deletion(
        &self,
        key: &PortalKey,
        target: &RemoteMessageId,
        part: &str,
    ) -> Result<Option<OwnedEventId>, PluginError> {
        Ok(BridgeMatrix::bridge_deletion(self, key, target, part).await?)
    }

    async fn upload(
        &self,
        data: &switchboard_api::FileData,
        mimetype: &str,
        filename: &str,
    ) -> Result<String, PluginError> {
        Ok(BridgeMatrix::upload(self, data, mimetype, filename).await?)
    }

    async fn bridge_media(
        &self,
        key: &PortalKey,
        media: &RemoteMedia,
    ) -> Result<Bridged, PluginError> {
        Ok(BridgeMatrix::bridge_media(self, key, media).await?)
    }

    async fn power_level(
        &self,
        key: &PortalKey,
        user_id: &ruma::UserId,
    ) -> Result<i64, PluginError> {
        Ok(BridgeMatrix::power_level(self, key, user_id).await?)
    }

    async fn map_matrix_event(
        &self,
        key: &PortalKey,
        remote_id: &RemoteMessageId,
        part: &str,
        room_id: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<(), PluginError> {
        Ok(BridgeMatrix::map_matrix_event(self, key, remote_id, part, room_id, event_id).await?)
    }

    async fn set_portal_login(&self, key: &PortalKey, login: &Login) -> Result<(), PluginError> {
        Ok(self
            .store
            .put_portal_login(
                &self.info().id,
                key,
                login.user_id.as_str(),
                login.id.as_str(),
            )
            .await?)
    }

    async fn matrix_user_of(&self, remote: &RemoteUserId) -> Result<OwnedUserId, PluginError> {
        Ok(BridgeMatrix::matrix_user_of(self, remote).await?)
    }

    async fn pill(&self, remote: &RemoteUserId, label: &str) -> Result<String, PluginError> {
        Ok(BridgeMatrix::pill(self, remote, label).await?)
    }

    async fn mapped_event(
        &self,
        key: &PortalKey,
        id: &RemoteMessageId,
        part: &str,
    ) -> Result<Option<OwnedEventId>, PluginError> {
        Ok(BridgeMatrix::mapped_event(self, key, id, part).await?)
    }

    async fn report_skipped(&self, key: &PortalKey, reason: &'static str, detail: &str) {
        BridgeMatrix::report_skipped(self, key, reason, detail).await;
    }

    async fn settle(&self) -> Result<(), PluginError> {
        Ok(self.messages.settle().await.map_err(BridgeError::from)?)
    }

    async fn load_data(&self, owner: DataOwner<'_>) -> Result<Option<String>, PluginError> {
        Ok(self.stored_data(owner).await?)
    }

    async fn save_data(&self, owner: DataOwner<'_>, json: String) -> Result<(), PluginError> {
        Ok(self.store_data(owner, json).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bridge::PuppetNaming;
    use crate::client::HomeserverClient;
    use crate::store::Store;

    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Seen {
        last: String,
        count: u32,
    }

    #[tokio::test]
    async fn a_bridges_own_data_about_portals_and_puppets_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, 1, switchboard_store::SqliteSync::Normal)
            .await
            .expect("store");
        let server = ruma::server_name!("example.org");
        let bot = OwnedUserId::try_from("@bot:example.org").expect("bot");
        let client = HomeserverClient::new(
            "http://127.0.0.1:9",
            "token",
            bot,
            switchboard_client::ClientConfig::default(),
            switchboard_client::ClientMetrics::default(),
            Arc::new(store.clone()),
        )
        .expect("client");
        let info = BridgeInfo {
            id: "xmpp".into(),
            displayname: "XMPP".into(),
        };
        let naming = PuppetNaming::new("_xmpp_{{id}}", server).expect("naming");
        let side = BridgeMatrix::new(
            info,
            naming,
            client,
            store,
            crate::metrics::HostMetrics::default(),
        );
        // Bridges reach it through the api's `MatrixSide`, which adds the typed forms.
        let side: &dyn MatrixSide = &side;
        let key = PortalKey::shared("room@conf");
        assert_eq!(
            side.portal_data::<Seen>(&key).await.expect("none"),
            Seen::default()
        );
        let seen = Seen {
            last: "m1".into(),
            count: 2,
        };
        side.set_portal_data(&key, &seen).await.expect("set");
        assert_eq!(side.portal_data::<Seen>(&key).await.expect("get"), seen);
        let bob = RemoteUserId::from("bob");
        side.set_puppet_data(&bob, &seen).await.expect("set");
        assert_eq!(side.puppet_data::<Seen>(&bob).await.expect("get"), seen);
        let err = side
            .portal_data::<Vec<u8>>(&key)
            .await
            .expect_err("another type");
        assert!(err.to_string().contains("portal room@conf"), "{err}");
    }
}
