//! Media both ways: files, images, audio and video from Matrix are downloaded by the framework
//! (from the homeserver's authenticated media endpoints, within the size limit) and handed to
//! a bridge that declares [`MediaHandler`]; media from the network is uploaded and sent from
//! the right puppet with [`RemoteEvent::Media`](super::RemoteEvent).

use serde_json::json;

use super::ids::PortalKey;
use super::matrix::{BridgeError, BridgeMatrix, Bridged, Mapped, now_ms};
use crate::client::Identity;
pub use switchboard_api::matrix::{FileData, MatrixMedia};
pub use switchboard_api::remote::{MediaKind, RemoteMedia};

impl BridgeMatrix {
    /// Uploads a file to the homeserver's media repository (streamed); its `mxc://` URI.
    /// Never twice: the file's media URI is reserved and recorded by content first, then the
    /// file is sent to it (a request that may be repeated), so that a lost answer or a crash
    /// resumes the same upload, and the same file sent again (same content, type and name)
    /// reuses its URI. A homeserver
    /// without reservations (spec v1.7 asynchronous uploads) gets one plain upload.
    pub async fn upload(
        &self,
        data: &FileData,
        mimetype: &str,
        filename: &str,
    ) -> Result<String, BridgeError> {
        let key = format!("{}:{mimetype}:{filename}", data.sha256_hex());
        match self.store.media_upload(&key).await? {
            Some((mxc, true)) => return Ok(mxc),
            Some((mxc, false)) => {
                match self
                    .client
                    .upload_media_to(&mxc, data, mimetype, filename)
                    .await
                {
                    Ok(()) => {
                        self.store
                            .put_media_upload(&key, &mxc, true, now_ms())
                            .await?;
                        return Ok(mxc);
                    }
                    // The reservation expired (or was never made): reserve anew.
                    Err(e) if !e.is_transient() => {
                        tracing::info!(bridge = %self.info.id, %mxc, error = %e, "a reserved upload cannot be resumed; reserving a new one");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {}
        }
        let mxc = match self.client.create_mxc().await {
            Ok(mxc) => mxc,
            Err(e)
                if matches!(e.status(), Some(404 | 405))
                    || e.errcode() == Some("M_UNRECOGNIZED") =>
            {
                let mxc = self.client.upload_media(data, mimetype, filename).await?;
                self.store
                    .put_media_upload(&key, &mxc, true, now_ms())
                    .await?;
                return Ok(mxc);
            }
            Err(e) => return Err(e.into()),
        };
        self.store
            .put_media_upload(&key, &mxc, false, now_ms())
            .await?;
        self.client
            .upload_media_to(&mxc, data, mimetype, filename)
            .await?;
        self.store
            .put_media_upload(&key, &mxc, true, now_ms())
            .await?;
        Ok(mxc)
    }

    /// Reads the homeserver's upload limit (`m.upload.size`); files from the network above it
    /// are refused as above `media.max_bytes` are. Without an answer, only `media.max_bytes`
    /// applies.
    pub(crate) async fn read_upload_size(&self) {
        let request = ruma::api::client::authenticated_media::get_media_config::v1::Request::new();
        match self.client.send(request, Identity::bot()).await {
            Ok(config) => {
                let size = u64::from(config.upload_size);
                self.upload_size
                    .store(size, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(bridge = %self.info.id, upload_size = size, "the homeserver's upload limit");
            }
            Err(e) => {
                tracing::warn!(bridge = %self.info.id, error = %e, "cannot read the homeserver's upload limit (m.upload.size); media.max_bytes alone applies");
            }
        }
    }

    /// The largest file bridged into Matrix: `media.max_bytes`, or the homeserver's
    /// `m.upload.size` when that is lower.
    pub(crate) fn upload_limit(&self) -> u64 {
        match self.upload_size.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.max_media_bytes,
            homeserver => homeserver.min(self.max_media_bytes),
        }
    }

    /// Sends a file from the network into its portal from its sender, once (uploaded first).
    /// A file larger than the media limit is refused (nothing is sent).
    pub async fn bridge_media(
        &self,
        key: &PortalKey,
        media: &RemoteMedia,
    ) -> Result<Bridged, BridgeError> {
        let _portal = self.portal_locks.lock(key).await;
        self.bridge_media_locked(key, media).await
    }

    /// [`BridgeMatrix::bridge_media`] with the portal lock held.
    pub(super) async fn bridge_media_locked(
        &self,
        key: &PortalKey,
        media: &RemoteMedia,
    ) -> Result<Bridged, BridgeError> {
        let max_bytes = self.upload_limit();
        if let Some(event_id) = self.mapped_event(key, &media.id, &media.part).await? {
            return Ok(Bridged::AlreadyBridged(event_id));
        }
        if media.data.len() > max_bytes {
            return Err(BridgeError::TooLarge {
                size: media.data.len(),
                max_bytes,
            });
        }
        let room_id = self.ensure_portal_locked(key).await?;
        let speaker = self
            .speaker_in(&room_id, &media.sender, &media.sender_profile)
            .await?;
        let mxc = self
            .upload(&media.data, &media.mimetype, &media.filename)
            .await?;
        let content = json!({
            "msgtype": media.kind.msgtype(),
            "body": media.filename,
            "filename": media.filename,
            "url": mxc,
            "info": { "mimetype": media.mimetype, "size": media.data.len() },
        });
        let sent = Mapped {
            remote_id: &media.id,
            part: &media.part,
            sent_at_ms: media.sent_at_ms,
        };
        let event_id = self
            .send_mapped(&room_id, &speaker, key, "m.room.message", &sent, content)
            .await?;
        Ok(Bridged::Sent(event_id))
    }
}
