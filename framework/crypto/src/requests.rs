//! The engine's requests to the homeserver: built with the engine's ruma (0.16), sent through
//! Switchboard's client as the device they belong to, answers read back with the same ruma.

use std::borrow::Cow;

use matrix_sdk_crypto::OlmMachine;
use matrix_sdk_crypto::types::CrossSigningKey;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, ToDeviceRequest};
use ruma_crypto::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma_crypto::api::client::keys::{claim_keys, get_keys, upload_signing_keys};
use ruma_crypto::api::client::to_device::send_event_to_device;
use ruma_crypto::api::path_builder::PathBuilder;
use ruma_crypto::api::{IncomingResponse, OutgoingRequest, SupportedVersions};
use switchboard_client::{ClientError, HomeserverClient, Identity};

use crate::EncryptionError;

/// Input types of the engine's ruma (0.16) path builders: the client's own `PathInput` is
/// bound to Switchboard's ruma (0.17), whose traits these requests do not implement.
pub(crate) trait PathInput<'a> {
    fn from_versions(versions: &'a SupportedVersions) -> Self;
}

impl PathInput<'_> for () {
    fn from_versions(_: &SupportedVersions) -> Self {}
}

impl<'a> PathInput<'a> for Cow<'a, SupportedVersions> {
    fn from_versions(versions: &'a SupportedVersions) -> Self {
        Cow::Borrowed(versions)
    }
}

impl<'a> PathInput<'a> for &'a SupportedVersions {
    fn from_versions(versions: &'a SupportedVersions) -> Self {
        versions
    }
}

/// A device's way to the homeserver.
pub(crate) struct DeviceLink {
    pub(crate) client: HomeserverClient,
    pub(crate) user_id: ruma::OwnedUserId,
    pub(crate) device_id: ruma::OwnedDeviceId,
    versions: SupportedVersions,
}

impl DeviceLink {
    pub(crate) fn new(
        client: HomeserverClient,
        user_id: ruma::OwnedUserId,
        device_id: ruma::OwnedDeviceId,
    ) -> Self {
        Self {
            client,
            user_id,
            device_id,
            versions: SupportedVersions {
                versions: [ruma_crypto::api::MatrixVersion::V1_11].into(),
                features: std::collections::BTreeSet::new(),
            },
        }
    }

    fn identity(&self) -> Identity<'_> {
        Identity {
            user_id: Some(&self.user_id),
            device_id: Some(&self.device_id),
            as_token: None,
        }
    }

    /// Sends `request` as this device; every request the engine makes may be repeated.
    pub(crate) async fn call<R>(
        &self,
        endpoint: &'static str,
        request: R,
    ) -> Result<R::IncomingResponse, EncryptionError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> <R::PathBuilder as PathBuilder>::Input<'a>: PathInput<'a>,
    {
        let http = request
            .try_into_http_request::<Vec<u8>>(
                self.client.base_url(),
                // Replaced by the client with the appservice's token.
                SendAccessToken::Appservice("-"),
                PathInput::from_versions(&self.versions),
            )
            .map_err(|e| EncryptionError::Request(format!("{endpoint}: {e}")))?;
        let response = self
            .client
            .send_http(
                endpoint,
                http.map(bytes::Bytes::from),
                self.identity(),
                true,
            )
            .await?;
        R::IncomingResponse::try_from_http_response(response.map(|body| body.to_vec()))
            .map_err(|e| EncryptionError::Request(format!("{endpoint}: {e}")))
    }

    /// GETs `path` (escaped) as `user` and decodes the answer.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        user: &ruma::UserId,
    ) -> Result<T, ClientError> {
        let request = http::Request::get(path)
            .body(bytes::Bytes::new())
            .map_err(|e| ClientError::Build {
                endpoint,
                message: e.to_string(),
            })?;
        let response = self
            .client
            .send_http(endpoint, request, Identity::user(user), true)
            .await?;
        serde_json::from_slice(response.body()).map_err(|e| ClientError::Decode {
            endpoint,
            message: e.to_string(),
        })
    }

    /// Sends one of the engine's to-device requests (room keys, key requests…).
    pub(crate) async fn send_to_device(
        &self,
        machine: &OlmMachine,
        request: &ToDeviceRequest,
    ) -> Result<(), EncryptionError> {
        let outgoing = send_event_to_device::v3::Request::new_raw(
            request.event_type.clone(),
            request.txn_id.clone(),
            request.messages.clone(),
        );
        let response = self
            .call("to_device::send_event_to_device", outgoing)
            .await?;
        machine
            .mark_request_as_sent(&request.txn_id, &response)
            .await?;
        Ok(())
    }

    /// Sends every request the engine has waiting (key uploads, key queries, to-device
    /// messages, signatures) and hands it the answers.
    pub(crate) async fn send_outgoing(&self, machine: &OlmMachine) -> Result<(), EncryptionError> {
        for request in machine.outgoing_requests().await? {
            let id = request.request_id();
            match request.request() {
                AnyOutgoingRequest::KeysUpload(upload) => {
                    let response = self.call("keys::upload_keys", upload.clone()).await?;
                    machine.mark_request_as_sent(id, &response).await?;
                }
                AnyOutgoingRequest::KeysQuery(query) => {
                    let mut outgoing = get_keys::v3::Request::new();
                    outgoing.device_keys = query.device_keys.clone();
                    outgoing.timeout = query.timeout;
                    let response = self.call("keys::get_keys", outgoing).await?;
                    machine.mark_request_as_sent(id, &response).await?;
                }
                AnyOutgoingRequest::KeysClaim(claim) => {
                    let response = self.call("keys::claim_keys", claim.clone()).await?;
                    machine.mark_request_as_sent(id, &response).await?;
                }
                AnyOutgoingRequest::ToDeviceRequest(to_device) => {
                    self.send_to_device(machine, to_device).await?;
                }
                AnyOutgoingRequest::SignatureUpload(signatures) => {
                    let response = self
                        .call("keys::upload_signatures", signatures.clone())
                        .await?;
                    machine.mark_request_as_sent(id, &response).await?;
                }
                AnyOutgoingRequest::RoomMessage(message) => {
                    // In-room verification: not offered; say so rather than leave it hanging.
                    tracing::info!(room_id = %message.room_id, "an in-room verification message was not sent: Switchboard's devices are verified by cross-signing");
                }
            }
        }
        Ok(())
    }

    /// Claims one-time keys of the devices that have no Olm session with this one yet.
    pub(crate) async fn claim_missing_sessions(
        &self,
        machine: &OlmMachine,
        users: &[ruma_crypto::OwnedUserId],
    ) -> Result<(), EncryptionError> {
        if let Some((id, claim)) = machine
            .get_missing_sessions(users.iter().map(AsRef::as_ref))
            .await?
        {
            let outgoing: claim_keys::v3::Request = claim;
            let response = self.call("keys::claim_keys", outgoing).await?;
            machine.mark_request_as_sent(&id, &response).await?;
        }
        Ok(())
    }

    /// Uploads new cross-signing keys (appservices need no interactive authentication for
    /// it, spec v1.17).
    pub(crate) async fn upload_signing_keys(
        &self,
        keys: &matrix_sdk_crypto::types::requests::UploadSigningKeysRequest,
    ) -> Result<(), EncryptionError> {
        let mut outgoing = upload_signing_keys::v3::Request::new();
        outgoing.master_key = keys.master_key.as_ref().map(CrossSigningKey::to_raw);
        outgoing.self_signing_key = keys.self_signing_key.as_ref().map(CrossSigningKey::to_raw);
        outgoing.user_signing_key = keys.user_signing_key.as_ref().map(CrossSigningKey::to_raw);
        self.call("keys::upload_signing_keys", outgoing).await?;
        Ok(())
    }
}
