//! The homeserver client: the Client-Server API as the appservice bot or any of its users,
//! built on ruma's request/response types and Switchboard's own HTTP/1.1 transport (the private
//! `transport` module; HTTP/1.1 only, no proxy support).
//!
//! Every request asserts an identity ([`Identity`]: `user_id`, and `device_id` from spec v1.17),
//! honours `429` (`retry_after_ms` and `Retry-After`), backs off exponentially with jitter on
//! 5xx and connection errors, and gives up after a bounded number of retries with a clear error.
//! Sends use transaction ids derived from what is being sent ([`derive_txn_id`]), so a retry can
//! never double-post.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{
    IncomingResponseExt, MatrixVersion, OutgoingRequest, OutgoingRequestAppserviceExt,
    SupportedVersions,
};
use ruma::{OwnedRoomId, OwnedUserId, UserId};

mod backoff;
mod config;
mod encryption;
mod error;
pub mod file;
mod identity;
mod media;
mod metrics;
mod operations;
pub mod tls;
mod transport;
mod users;

pub use backoff::Backoff;
pub use config::ClientConfig;
pub use encryption::{ENCRYPTED_EVENT, RoomEncryptor};
pub use error::ClientError;
use error::ErrorBody;
pub use file::FileData;
/// The `http` crate, whose types [`HomeserverClient::request_json`] takes.
pub use http;
pub use identity::{Identity, derive_txn_id};
pub use metrics::{ClientMetrics, register_metric};
pub use users::{ManagedUser, ManagedUsers, MemoryError};

use crate::transport::Transport;

/// Longest pause a homeserver's `Retry-After` / `retry_after_ms` is obeyed for.
const MAX_RETRY_AFTER: Duration = Duration::from_mins(5);

/// Input types for ruma's path builders, so one generic `send` serves every endpoint.
pub trait PathInput<'a> {
    /// Builds the input from the versions the homeserver supports.
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

/// The Client-Server API client of the appservice.
#[derive(Clone)]
pub struct HomeserverClient {
    http: Arc<Transport>,
    base_url: String,
    as_token: String,
    bot_user_id: OwnedUserId,
    config: ClientConfig,
    versions: SupportedVersions,
    metrics: ClientMetrics,
    /// The metrics of successful sends, resolved once (the label lookup cost more than a
    /// small request's parsing).
    sent: (prometheus::IntCounter, prometheus::Histogram),
    users: Arc<dyn ManagedUsers>,
    /// Memberships known to be joined (room, user), shared by the clones: a check the hot
    /// paths make for every message costs no lookup in `users` once seen. Kept in step with
    /// `users` by [`HomeserverClient::remember_membership`].
    joined: Arc<std::sync::Mutex<foldhash::HashSet<(OwnedRoomId, OwnedUserId)>>>,
    /// The privileged creators of rooms (room version 12 and later), by room, shared by the
    /// clones: read once per room, since a room's creation never changes.
    creators: Arc<std::sync::Mutex<foldhash::HashMap<OwnedRoomId, Arc<[OwnedUserId]>>>>,
    /// Encrypts what is sent to encrypted rooms, once installed (shared by the clones).
    encryptor: Arc<std::sync::OnceLock<Arc<dyn RoomEncryptor>>>,
}

/// Rooms whose creators are remembered at most; the memory is cleared when it is full.
const CREATORS_REMEMBERED: usize = 10_000;

impl std::fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeserverClient")
            .field("base_url", &self.base_url)
            .field("bot_user_id", &self.bot_user_id)
            .finish_non_exhaustive()
    }
}

/// A short endpoint name from a ruma request type, e.g. `membership::join_room_by_id`.
fn endpoint_name<R>() -> &'static str {
    let full = std::any::type_name::<R>();
    let trimmed = full
        .strip_prefix("ruma_client_api::")
        .unwrap_or(full)
        .trim_end_matches("::Request");
    trimmed.rsplit_once("::v").map_or(trimmed, |(head, _)| head)
}

impl HomeserverClient {
    /// Creates a client for `base_url`, acting as `bot_user_id` by default, remembering the
    /// users it sets up in `users`.
    pub fn new(
        base_url: &str,
        as_token: &str,
        bot_user_id: OwnedUserId,
        config: ClientConfig,
        metrics: ClientMetrics,
        users: Arc<dyn ManagedUsers>,
    ) -> Result<Self, ClientError> {
        let build_error = |message: String| ClientError::Build {
            endpoint: "client",
            message,
        };
        let extra_roots = if config.tls_ca_file.is_empty() {
            Vec::new()
        } else {
            crate::tls::load_pem_certificates(std::path::Path::new(&config.tls_ca_file))
                .map_err(|reason| build_error(format!("client.tls_ca_file: {reason}")))?
        };
        let http = Transport::new(base_url, extra_roots, Duration::from_secs(10))
            .map_err(|e| build_error(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            as_token: as_token.to_owned(),
            bot_user_id,
            config,
            versions: SupportedVersions {
                versions: [MatrixVersion::V1_11].into(),
                features: std::collections::BTreeSet::new(),
            },
            sent: (
                metrics.requests.with_label_values(&[SEND_EVENT, "200"]),
                metrics.request_seconds.with_label_values(&[SEND_EVENT]),
            ),
            metrics,
            users,
            joined: Arc::default(),
            creators: Arc::default(),
            encryptor: Arc::default(),
        })
    }

    /// Installs the encryption of events sent to encrypted rooms, for this client and every
    /// clone of it; returns `false` (and changes nothing) if one is installed already.
    pub fn set_encryptor(&self, encryptor: Arc<dyn RoomEncryptor>) -> bool {
        self.encryptor.set(encryptor).is_ok()
    }

    /// The appservice bot's user id.
    #[must_use]
    pub fn bot_user_id(&self) -> &UserId {
        &self.bot_user_id
    }

    /// The creators remembered for `room_id`, if read before.
    pub(crate) fn known_creators(&self, room_id: &ruma::RoomId) -> Option<Arc<[OwnedUserId]>> {
        self.creators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(room_id)
            .cloned()
    }

    /// Remembers the creators of `room_id`.
    pub(crate) fn remember_creators(&self, room_id: &ruma::RoomId, creators: Arc<[OwnedUserId]>) {
        let mut known = self
            .creators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= CREATORS_REMEMBERED {
            known.clear();
        }
        known.insert(room_id.to_owned(), creators);
    }

    /// Counts an answer of `endpoint` and its duration.
    pub(crate) fn count(&self, endpoint: &'static str, status: http::StatusCode, started: Instant) {
        self.metrics
            .requests
            .with_label_values(&[endpoint, status.as_str()])
            .inc();
        self.metrics
            .request_seconds
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
    }

    /// A request of `endpoint` that got no answer, counted, as the client's error; `sent`:
    /// whether it may have reached the homeserver.
    pub(crate) fn unreachable(
        &self,
        endpoint: &'static str,
        message: String,
        sent: bool,
    ) -> ClientError {
        self.metrics
            .requests
            .with_label_values(&[endpoint, "error"])
            .inc();
        ClientError::Unreachable {
            endpoint,
            url: self.base_url.clone(),
            message,
            sent,
        }
    }

    /// The homeserver's base URL.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(
            Duration::from_millis(self.config.initial_backoff_ms),
            Duration::from_millis(self.config.max_backoff_ms),
        )
        .with_jitter()
        .delay(attempt)
    }

    /// Sends a ruma request as `identity`, with retries; see the module docs.
    pub async fn send<R>(
        &self,
        request: R,
        identity: Identity<'_>,
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> <R::PathBuilder as PathBuilder>::Input<'a>: PathInput<'a>,
    {
        self.send_with_query(request, identity, &[]).await
    }

    /// Like [`HomeserverClient::send`], appending extra query parameters (e.g. `ts`).
    pub async fn send_with_query<R>(
        &self,
        request: R,
        identity: Identity<'_>,
        extra_query: &[(&str, String)],
    ) -> Result<R::IncomingResponse, ClientError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> <R::PathBuilder as PathBuilder>::Input<'a>: PathInput<'a>,
    {
        let endpoint = endpoint_name::<R>();
        let repeatable = !CREATING_ENDPOINTS.contains(&endpoint);
        self.with_retries(endpoint, repeatable, || {
            self.attempt(request.clone(), identity, extra_query)
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails permanently or the retries run out, pausing
    /// as the homeserver asks (429) or with exponential backoff and jitter. A request that is
    /// not `repeatable` (it creates something) is retried only after failures that prove it
    /// was not done (429, no connection); after any other, the error is returned at once, so
    /// that the caller looks up what it may have created.
    async fn with_retries<T, F, Fut>(
        &self,
        endpoint: &'static str,
        repeatable: bool,
        mut attempt: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, (ClientError, Option<Duration>)>>,
    {
        let mut tries = 0u32;
        loop {
            let (error, retry_after) = match attempt().await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            if !error.is_transient() || (!repeatable && error.may_have_been_applied()) {
                return Err(error);
            }
            if tries >= self.config.max_retries {
                return Err(ClientError::GaveUp {
                    attempts: tries + 1,
                    last: Box::new(error),
                });
            }
            let reason = match error.status() {
                Some(429) => "rate_limited",
                Some(_) => "server_error",
                None => "unreachable",
            };
            self.metrics
                .retries
                .with_label_values(&[endpoint, reason])
                .inc();
            let pause = retry_after.map_or_else(|| self.backoff(tries), |d| d.min(MAX_RETRY_AFTER));
            tracing::warn!(endpoint, attempt = tries, ?pause, error = %error, "homeserver request failed, retrying");
            tokio::time::sleep(pause).await;
            tries += 1;
        }
    }

    /// One try of a ruma request: build, exchange, decode. On failure returns the error and
    /// the pause the homeserver asked for, if any.
    async fn attempt<R>(
        &self,
        request: R,
        identity: Identity<'_>,
        extra_query: &[(&str, String)],
    ) -> Result<R::IncomingResponse, (ClientError, Option<Duration>)>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> <R::PathBuilder as PathBuilder>::Input<'a>: PathInput<'a>,
    {
        let endpoint = endpoint_name::<R>();
        let http_request = request
            .try_into_http_request_with_identity::<Vec<u8>>(
                &self.base_url,
                SendAccessToken::Appservice(identity.as_token.unwrap_or(&self.as_token)),
                identity.to_ruma(),
                PathInput::from_versions(&self.versions),
            )
            .map_err(|e| {
                let error = ClientError::Build {
                    endpoint,
                    message: e.to_string(),
                };
                (error, None)
            })?;
        let response = self
            .execute(endpoint, http_request.map(bytes::Bytes::from), extra_query)
            .await?;
        R::IncomingResponse::try_from_http_response(borrow_body(&response)).map_err(|e| {
            let error = ClientError::Decode {
                endpoint,
                message: e.to_string(),
            };
            (error, None)
        })
    }

    /// Performs one HTTP exchange. On failure returns the error and the pause the homeserver
    /// asked for, if any.
    async fn execute(
        &self,
        endpoint: &'static str,
        request: http::Request<bytes::Bytes>,
        extra_query: &[(&str, String)],
    ) -> Result<http::Response<bytes::Bytes>, (ClientError, Option<Duration>)> {
        let (mut parts, body) = request.into_parts();
        let started = Instant::now();
        let mut target = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        for (key, value) in extra_query {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.extend(url::form_urlencoded::byte_serialize(key.as_bytes()));
            target.push('=');
            target.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        }
        let unreachable =
            |message: String, sent: bool| (self.unreachable(endpoint, message, sent), None);
        parts.uri = target
            .parse()
            .map_err(|e: http::uri::InvalidUri| unreachable(e.to_string(), false))?;
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        let response = match tokio::time::timeout(
            timeout,
            self.http.send(http::Request::from_parts(parts, body)),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let sent = e.may_have_been_sent();
                return Err(unreachable(e.to_string(), sent));
            }
            Err(_) => return Err(unreachable(format!("no answer within {timeout:?}"), true)),
        };
        let status = response.status();
        let retry_after_header = retry_after_header(response.headers());
        let body = response.into_body();
        let seconds = started.elapsed().as_secs_f64();
        if endpoint == SEND_EVENT && status == http::StatusCode::OK {
            self.sent.0.inc();
            self.sent.1.observe(seconds);
        } else {
            self.count(endpoint, status, started);
        }
        if status.is_success() {
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            return Ok(out);
        }
        Err(error_answer(endpoint, status, &body, retry_after_header))
    }
}

impl HomeserverClient {
    /// Sends a request built elsewhere (e.g. by another version of ruma) as `identity`, with
    /// the usual retries (`repeatable`: whether it may be sent again after a failure that may
    /// have reached the homeserver): its method, path, query and body are kept, the
    /// authorization is the appservice's (or the identity's own token), `user_id` /
    /// `device_id` assert the identity. Error answers come back as
    /// [`ClientError::Homeserver`].
    pub async fn send_http(
        &self,
        endpoint: &'static str,
        request: http::Request<bytes::Bytes>,
        identity: Identity<'_>,
        repeatable: bool,
    ) -> Result<http::Response<bytes::Bytes>, ClientError> {
        let (parts, body) = request.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        let mut query: Vec<(&str, String)> = Vec::with_capacity(2);
        if let Some(user_id) = identity.user_id {
            query.push(("user_id", user_id.to_string()));
        }
        if let Some(device_id) = identity.device_id {
            query.push(("device_id", device_id.to_string()));
        }
        let authorization = format!("Bearer {}", identity.as_token.unwrap_or(&self.as_token));
        self.with_retries(endpoint, repeatable, || {
            let mut request = http::Request::builder()
                .method(parts.method.clone())
                .uri(target.as_str())
                .header(http::header::AUTHORIZATION, authorization.as_str());
            if !body.is_empty() {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
            }
            let request = request.body(body.clone());
            let query = &query;
            async move {
                let request = request.map_err(|e| build_failure(endpoint, &e))?;
                self.execute(endpoint, request, query).await
            }
        })
        .await
    }

    /// Sends a JSON request to any endpoint of the homeserver, such as Synapse's Admin API,
    /// authenticated with `token` instead of the appservice's, with the usual retries; returns
    /// the answer's JSON (`null` for an empty body). `path` is the path and query, its
    /// segments already escaped (see [`escape_path_segment`]); `endpoint` names the request in
    /// metrics and errors. Error answers come back as [`ClientError::Homeserver`].
    pub async fn request_json(
        &self,
        endpoint: &'static str,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        token: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let body = match body {
            Some(json) => {
                bytes::Bytes::from(serde_json::to_vec(json).map_err(|e| ClientError::Build {
                    endpoint,
                    message: e.to_string(),
                })?)
            }
            None => bytes::Bytes::new(),
        };
        let request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .body(body)
            .map_err(|e| ClientError::Build {
                endpoint,
                message: e.to_string(),
            })?;
        let identity = Identity {
            as_token: Some(token),
            ..Identity::bot()
        };
        let response = self
            .send_http(endpoint, request, identity, method != http::Method::POST)
            .await?;
        if response.body().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(response.body()).map_err(|e| ClientError::Decode {
            endpoint,
            message: e.to_string(),
        })
    }
}

/// An error answer as a [`ClientError`], with the pause the homeserver asked for (its body's
/// `retry_after_ms`, else the `Retry-After` header).
pub(crate) fn error_answer(
    endpoint: &'static str,
    status: http::StatusCode,
    body: &[u8],
    retry_after_header: Option<Duration>,
) -> (ClientError, Option<Duration>) {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let retry_after = parsed
        .as_ref()
        .and_then(|b| b.retry_after_ms)
        .map(Duration::from_millis)
        .or(retry_after_header);
    let (errcode, message) = parsed.map_or_else(
        || {
            (
                "-".to_owned(),
                String::from_utf8_lossy(body).chars().take(200).collect(),
            )
        },
        |b| {
            (
                b.errcode.unwrap_or_else(|| "-".to_owned()),
                b.error.unwrap_or_default(),
            )
        },
    );
    (
        ClientError::Homeserver {
            endpoint,
            status: status.as_u16(),
            errcode,
            message,
        },
        retry_after,
    )
}

/// A request that could not be built, as the retry loop takes failures.
pub(crate) fn build_failure(
    endpoint: &'static str,
    error: &http::Error,
) -> (ClientError, Option<Duration>) {
    let error = ClientError::Build {
        endpoint,
        message: error.to_string(),
    };
    (error, None)
}

/// The pause a `Retry-After` header (in seconds) asks for.
pub(crate) fn retry_after_header(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Escapes one path segment (a user id, room id…) for [`HomeserverClient::request_json`].
#[must_use]
pub fn escape_path_segment(segment: &str) -> String {
    path_segment(segment).to_string()
}

/// Requests that create something each time they are done, so that a blind retry after a lost
/// answer would create it twice (a second room, a second upload).
const CREATING_ENDPOINTS: &[&str] = &["room::create_room", "room::upgrade_room"];

/// Endpoint name of `PUT /rooms/{roomId}/send/{eventType}/{txnId}` in metrics and errors (as
/// ruma's requests are named).
pub(crate) const SEND_EVENT: &str = "message::send_message_event";

/// Characters escaped in a path segment: everything but the unreserved ones (RFC 3986).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn path_segment(segment: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT)
}

/// The response with its body borrowed, as ruma's decoders take it.
fn borrow_body(response: &http::Response<bytes::Bytes>) -> http::Response<&[u8]> {
    let mut out = http::Response::new(response.body().as_ref());
    *out.status_mut() = response.status();
    out.headers_mut().clone_from(response.headers());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_txn_ids_are_stable_and_distinct() {
        let a = derive_txn_id(&["echo", "$event", "reply"]);
        assert_eq!(a, derive_txn_id(&["echo", "$event", "reply"]));
        assert_ne!(a, derive_txn_id(&["echo", "$event", "reply2"]));
        assert_ne!(derive_txn_id(&["ab", "c"]), derive_txn_id(&["a", "bc"]));
        assert!(a.as_str().len() <= 32);
    }

    #[test]
    fn path_segments_escape_everything_but_unreserved_characters() {
        assert_eq!(
            path_segment("!room/../x:example.org").to_string(),
            "%21room%2F..%2Fx%3Aexample.org"
        );
        assert_eq!(path_segment("m.room.message").to_string(), "m.room.message");
        assert_eq!(
            path_segment("a-b_c~d é?#").to_string(),
            "a-b_c~d%20%C3%A9%3F%23"
        );
    }

    #[test]
    fn endpoint_names_are_short() {
        assert_eq!(
            endpoint_name::<ruma::api::client::membership::join_room_by_id::v3::Request>(),
            "membership::join_room_by_id"
        );
        assert_eq!(
            endpoint_name::<ruma::api::client::room::create_room::v3::Request>(),
            CREATING_ENDPOINTS[0]
        );
        assert_eq!(
            endpoint_name::<ruma::api::client::room::upgrade_room::v3::Request>(),
            CREATING_ENDPOINTS[1]
        );
    }
}
