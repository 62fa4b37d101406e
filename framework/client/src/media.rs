//! Files to and from the homeserver's media repository, streamed: a download goes to a
//! [`FileData`] (memory, or a temporary file above [`crate::file::IN_MEMORY_MAX`]) as it
//! arrives, an upload is read from one as it goes out. Downloads are retried like any `GET`;
//! an upload creates something, so it is retried only after failures that prove it was not
//! done.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::file::{FileData, Spill};
use crate::transport::TransportError;
use crate::{
    ClientError, HomeserverClient, build_failure, error_answer, path_segment, retry_after_header,
};

/// Endpoint name of media downloads in metrics and errors.
const DOWNLOAD: &str = "authenticated_media::get_content";
/// Endpoint name of uploads in metrics and errors (one of the creating endpoints).
const UPLOAD: &str = "media::create_content";
/// Endpoint name of media URI reservations (one of the creating endpoints).
const CREATE: &str = "media::create_mxc_uri";
/// Endpoint name of uploads to a reserved URI.
const UPLOAD_TO: &str = "media::create_content_async";

impl HomeserverClient {
    /// Downloads `mxc` (`mxc://server/id`) from the authenticated media endpoint; more than
    /// `limit` bytes is [`ClientError::TooLarge`] (the download stops there).
    ///
    /// # Errors
    /// As any request; [`ClientError::Build`] for something that is not an `mxc://` URI.
    pub async fn download_media(&self, mxc: &str, limit: u64) -> Result<FileData, ClientError> {
        let (server, media_id) = split_mxc(mxc, DOWNLOAD)?;
        let path = format!(
            "/_matrix/client/v1/media/download/{}/{}",
            path_segment(server),
            path_segment(media_id)
        );
        let authorization = format!("Bearer {}", self.as_token);
        self.with_retries(DOWNLOAD, true, || async {
            let request = http::Request::get(path.as_str())
                .header(http::header::AUTHORIZATION, authorization.as_str())
                .body(Bytes::new())
                .map_err(|e| build_failure(DOWNLOAD, &e))?;
            let mut spill = Spill::new(limit);
            let started = Instant::now();
            let answer = tokio::time::timeout(
                self.media_timeout(),
                self.http.send_streamed(request, &mut spill),
            )
            .await;
            let (status, headers) = self.media_answer(DOWNLOAD, answer, limit, started)?;
            if status.is_success() {
                return spill.finish().await.map_err(|e| {
                    let message = format!("cannot keep the file: {e}");
                    (self.unreachable(DOWNLOAD, message, true), None)
                });
            }
            let body = spill.in_memory().unwrap_or_default();
            Err(error_answer(
                DOWNLOAD,
                status,
                body,
                retry_after_header(&headers),
            ))
        })
        .await
    }

    /// Uploads `data` to the media repository as the bot, read from memory or its temporary
    /// file as it goes out; its `mxc://` URI.
    ///
    /// # Errors
    /// As any request that creates something: not retried after a failure that may have
    /// reached the homeserver.
    pub async fn upload_media(
        &self,
        data: &FileData,
        content_type: &str,
        filename: &str,
    ) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct Uploaded {
            content_uri: String,
        }
        let mut path = "/_matrix/media/v3/upload?filename=".to_owned();
        path.extend(url::form_urlencoded::byte_serialize(filename.as_bytes()));
        let response = self
            .send_file(http::Method::POST, &path, UPLOAD, data, content_type)
            .await?;
        let uploaded: Uploaded =
            serde_json::from_slice(response.body()).map_err(|e| ClientError::Decode {
                endpoint: UPLOAD,
                message: e.to_string(),
            })?;
        Ok(uploaded.content_uri)
    }

    /// Reserves a media URI for a later upload (`POST /_matrix/media/v1/create`, spec v1.7):
    /// the URI an upload goes to with [`HomeserverClient::upload_media_to`], a request that
    /// may be repeated.
    ///
    /// # Errors
    /// As any request; a homeserver without asynchronous uploads answers 404 or 405.
    pub async fn create_mxc(&self) -> Result<String, ClientError> {
        let answer = self
            .request_json(
                CREATE,
                http::Method::POST,
                "/_matrix/media/v1/create",
                Some(&serde_json::json!({})),
                &self.as_token,
            )
            .await?;
        answer["content_uri"]
            .as_str()
            .map(ToOwned::to_owned)
            .ok_or_else(|| ClientError::Decode {
                endpoint: CREATE,
                message: "no content_uri in the answer".to_owned(),
            })
    }

    /// Uploads `data` to the reserved `mxc` (`PUT /_matrix/media/v3/upload/{server}/{id}`);
    /// repeated after a lost answer like any `PUT`: a homeserver that has the file already
    /// answers `M_CANNOT_OVERWRITE_MEDIA`, which counts as done.
    ///
    /// # Errors
    /// As any request; [`ClientError::Build`] for something that is not an `mxc://` URI.
    pub async fn upload_media_to(
        &self,
        mxc: &str,
        data: &FileData,
        content_type: &str,
        filename: &str,
    ) -> Result<(), ClientError> {
        let (server, media_id) = split_mxc(mxc, UPLOAD_TO)?;
        let mut path = format!(
            "/_matrix/media/v3/upload/{}/{}?filename=",
            path_segment(server),
            path_segment(media_id)
        );
        path.extend(url::form_urlencoded::byte_serialize(filename.as_bytes()));
        match self
            .send_file(http::Method::PUT, &path, UPLOAD_TO, data, content_type)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.errcode() == Some("M_CANNOT_OVERWRITE_MEDIA") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `data` as the body of `method path` (retried blindly only when that is a
    /// `PUT`); the whole answer.
    async fn send_file(
        &self,
        method: http::Method,
        path: &str,
        endpoint: &'static str,
        data: &FileData,
        content_type: &str,
    ) -> Result<http::Response<Bytes>, ClientError> {
        let authorization = format!("Bearer {}", self.as_token);
        let repeatable = method == http::Method::PUT;
        self.with_retries(endpoint, repeatable, || async {
            let (parts, ()) = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::AUTHORIZATION, authorization.as_str())
                .header(http::header::CONTENT_TYPE, content_type)
                .body(())
                .map_err(|e| build_failure(endpoint, &e))?
                .into_parts();
            let started = Instant::now();
            let answer =
                tokio::time::timeout(self.media_timeout(), self.http.send_file(parts, data)).await;
            let response = match answer {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(self.transport_error(endpoint, &e, data.len())),
                Err(_) => return Err(self.timed_out(endpoint)),
            };
            self.count(endpoint, response.status(), started);
            if response.status().is_success() {
                Ok(response)
            } else {
                Err(error_answer(
                    endpoint,
                    response.status(),
                    response.body(),
                    retry_after_header(response.headers()),
                ))
            }
        })
        .await
    }

    fn media_timeout(&self) -> Duration {
        Duration::from_secs(self.config.media_timeout_secs.max(1))
    }

    /// The status and headers of a streamed answer, counted; the error otherwise.
    fn media_answer(
        &self,
        endpoint: &'static str,
        answer: Result<
            Result<(http::StatusCode, http::HeaderMap), TransportError>,
            tokio::time::error::Elapsed,
        >,
        limit: u64,
        started: Instant,
    ) -> Result<(http::StatusCode, http::HeaderMap), (ClientError, Option<Duration>)> {
        match answer {
            Ok(Ok((status, headers))) => {
                self.count(endpoint, status, started);
                Ok((status, headers))
            }
            Ok(Err(e)) => Err(self.transport_error(endpoint, &e, limit)),
            Err(_) => Err(self.timed_out(endpoint)),
        }
    }

    /// A transport failure of a media request as the client's error.
    fn transport_error(
        &self,
        endpoint: &'static str,
        error: &TransportError,
        limit: u64,
    ) -> (ClientError, Option<Duration>) {
        if matches!(error, TransportError::TooLarge) {
            return (ClientError::TooLarge { endpoint, limit }, None);
        }
        let sent = error.may_have_been_sent();
        (self.unreachable(endpoint, error.to_string(), sent), None)
    }

    fn timed_out(&self, endpoint: &'static str) -> (ClientError, Option<Duration>) {
        let message = format!("no answer within {:?}", self.media_timeout());
        (self.unreachable(endpoint, message, true), None)
    }
}

/// The server name and media id of an `mxc://` URI.
fn split_mxc<'a>(mxc: &'a str, endpoint: &'static str) -> Result<(&'a str, &'a str), ClientError> {
    mxc.strip_prefix("mxc://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(server, id)| !server.is_empty() && !id.is_empty())
        .ok_or_else(|| ClientError::Build {
            endpoint,
            message: format!("{mxc:?} is not an mxc:// URI"),
        })
}
