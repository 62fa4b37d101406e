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

use base64::Engine;
use rand::Rng;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::{account, appservice, membership, profile};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{
    AppserviceUserIdentity, IncomingResponseExt, MatrixVersion, OutgoingRequest,
    OutgoingRequestAppserviceExt, SupportedVersions,
};
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId,
    RoomOrAliasId, UserId,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod backoff;
mod config;
mod metrics;
pub mod tls;
mod transport;
mod users;

pub use backoff::Backoff;
pub use config::ClientConfig;
/// The `http` crate, whose types [`HomeserverClient::request_json`] takes.
pub use http;
pub use metrics::{ClientMetrics, register_metric};
pub use users::{ManagedUser, ManagedUsers, MemoryError};

use crate::transport::Transport;

/// Longest pause a homeserver's `Retry-After` / `retry_after_ms` is obeyed for.
const MAX_RETRY_AFTER: Duration = Duration::from_mins(5);

/// Errors of the homeserver client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The homeserver answered with an error.
    #[error("{endpoint}: the homeserver answered {status} {errcode}: {message}")]
    Homeserver {
        /// Endpoint name.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Matrix error code (`M_…`), or `-` when the body had none.
        errcode: String,
        /// Human-readable error from the homeserver.
        message: String,
    },
    /// No answer: connection refused, reset or timed out.
    #[error("{endpoint}: cannot reach the homeserver at {url}: {message}")]
    Unreachable {
        /// Endpoint name.
        endpoint: &'static str,
        /// Base URL tried.
        url: String,
        /// The transport error.
        message: String,
    },
    /// Retries were exhausted; the last error is inside.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: Box<ClientError>,
    },
    /// The request could not be built (a bug or an invalid id).
    #[error("{endpoint}: cannot build the request: {message}")]
    Build {
        /// Endpoint name.
        endpoint: &'static str,
        /// What failed.
        message: String,
    },
    /// A success response that does not decode.
    #[error("{endpoint}: the homeserver's answer does not decode: {message}")]
    Decode {
        /// Endpoint name.
        endpoint: &'static str,
        /// What failed.
        message: String,
    },
}

impl ClientError {
    /// Whether trying again later may succeed (rate limits, server errors, outages).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Homeserver { status, .. } => *status == 429 || *status >= 500,
            ClientError::Unreachable { .. } => true,
            ClientError::GaveUp { last, .. } => last.is_transient(),
            ClientError::Build { .. } | ClientError::Decode { .. } => false,
        }
    }

    /// The Matrix error code, if the homeserver sent one.
    #[must_use]
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Homeserver { errcode, .. } => Some(errcode),
            ClientError::GaveUp { last, .. } => last.errcode(),
            _ => None,
        }
    }

    /// The HTTP status, if the homeserver answered.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Homeserver { status, .. } => Some(*status),
            ClientError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}

/// Who a request acts as.
#[derive(Clone, Copy, Default)]
pub struct Identity<'a> {
    /// The user asserted with `?user_id=`; `None` acts as the appservice bot.
    pub user_id: Option<&'a UserId>,
    /// The device asserted with `?device_id=` (spec v1.17).
    pub device_id: Option<&'a ruma::DeviceId>,
    /// Another appservice's token to act with, instead of ours: double puppeting, where a
    /// registration without a URL covers the real users of a server.
    pub as_token: Option<&'a str>,
}

impl std::fmt::Debug for Identity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("as_token", &self.as_token.map(|_| "<redacted>"))
            .finish()
    }
}

impl<'a> Identity<'a> {
    /// Acting as the appservice's own bot.
    #[must_use]
    pub fn bot() -> Self {
        Self::default()
    }

    fn to_ruma(self) -> AppserviceUserIdentity<'a> {
        let mut identity = AppserviceUserIdentity::default();
        identity.user_id = self.user_id;
        identity.device_id = self.device_id;
        identity
    }

    /// Acting as `user_id` (a user in our namespace).
    #[must_use]
    pub fn user(user_id: &'a UserId) -> Self {
        Self {
            user_id: Some(user_id),
            ..Self::default()
        }
    }

    /// Acting as the real user `user_id` through the double-puppeting appservice whose token is
    /// `as_token`.
    #[must_use]
    pub fn double_puppet(user_id: &'a UserId, as_token: &'a str) -> Self {
        Self {
            user_id: Some(user_id),
            device_id: None,
            as_token: Some(as_token),
        }
    }
}

/// Derives a transaction id from the parts that identify what is being sent (for example the
/// plug-in, the event being answered and the purpose). The same parts always give the same id,
/// so a retried or repeated send is de-duplicated by the homeserver.
#[must_use]
pub fn derive_txn_id(parts: &[&str]) -> OwnedTransactionId {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]);
    OwnedTransactionId::from(format!("sb{encoded}"))
}

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

#[derive(Deserialize)]
struct ErrorBody {
    errcode: Option<String>,
    error: Option<String>,
    retry_after_ms: Option<u64>,
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
}

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
        })
    }

    /// The appservice bot's user id.
    #[must_use]
    pub fn bot_user_id(&self) -> &UserId {
        &self.bot_user_id
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
        self.with_retries(endpoint_name::<R>(), || {
            self.attempt(request.clone(), identity, extra_query)
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails permanently or the retries run out, pausing
    /// as the homeserver asks (429) or with exponential backoff and jitter.
    async fn with_retries<T, F, Fut>(
        &self,
        endpoint: &'static str,
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
            if !error.is_transient() {
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
        let unreachable = |message: String| {
            self.metrics
                .requests
                .with_label_values(&[endpoint, "error"])
                .inc();
            (
                ClientError::Unreachable {
                    endpoint,
                    url: self.base_url.clone(),
                    message,
                },
                None,
            )
        };
        parts.uri = target
            .parse()
            .map_err(|e: http::uri::InvalidUri| unreachable(e.to_string()))?;
        let timeout = Duration::from_secs(self.config.request_timeout_secs);
        let response = match tokio::time::timeout(
            timeout,
            self.http.send(http::Request::from_parts(parts, body)),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {timeout:?}"))),
        };
        let status = response.status();
        let retry_after_header = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.into_body();
        let seconds = started.elapsed().as_secs_f64();
        if endpoint == SEND_EVENT && status == http::StatusCode::OK {
            self.sent.0.inc();
            self.sent.1.observe(seconds);
        } else {
            self.metrics
                .requests
                .with_label_values(&[endpoint, status.as_str()])
                .inc();
            self.metrics
                .request_seconds
                .with_label_values(&[endpoint])
                .observe(seconds);
        }
        if status.is_success() {
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            return Ok(out);
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        let retry_after = parsed
            .as_ref()
            .and_then(|b| b.retry_after_ms)
            .map(Duration::from_millis)
            .or(retry_after_header);
        let (errcode, message) = parsed.map_or_else(
            || {
                (
                    "-".to_owned(),
                    String::from_utf8_lossy(&body).chars().take(200).collect(),
                )
            },
            |b| {
                (
                    b.errcode.unwrap_or_else(|| "-".to_owned()),
                    b.error.unwrap_or_default(),
                )
            },
        );
        Err((
            ClientError::Homeserver {
                endpoint,
                status: status.as_u16(),
                errcode,
                message,
            },
            retry_after,
        ))
    }

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

    /// The power level of `user_id` in `room_id` (`m.room.power_levels`: their entry in
    /// `users`, else `users_default`), read as the bot.
    pub async fn power_level(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<i64, ClientError> {
        use ruma::api::client::state::get_state_event_for_key::v3::Request;
        #[derive(Deserialize)]
        struct PowerLevels {
            #[serde(default)]
            users: std::collections::HashMap<String, serde_json::Value>,
            #[serde(default)]
            users_default: Option<serde_json::Value>,
        }
        let request = Request::new(
            room_id.to_owned(),
            ruma::events::StateEventType::RoomPowerLevels,
            String::new(),
        );
        let response = self.send(request, Identity::bot()).await?;
        let levels: PowerLevels =
            serde_json::from_str(response.event_or_content.get()).map_err(|e| {
                ClientError::Decode {
                    endpoint: "get_state_event",
                    message: format!("m.room.power_levels: {e}"),
                }
            })?;
        // Old rooms may hold levels as strings ("50").
        let level = |value: &serde_json::Value| {
            value
                .as_i64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        };
        Ok(levels
            .users
            .get(user_id.as_str())
            .and_then(level)
            .or_else(|| levels.users_default.as_ref().and_then(level))
            .unwrap_or(0))
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
    /// timestamp (appservices only, e.g. for messages bridged late).
    pub async fn send_message(
        &self,
        room_id: &RoomId,
        txn_id: OwnedTransactionId,
        content: &RoomMessageEventContent,
        identity: Identity<'_>,
        ts: Option<MilliSecondsSinceUnixEpoch>,
    ) -> Result<OwnedEventId, ClientError> {
        let body = serde_json::to_vec(content).map_err(|e| ClientError::Build {
            endpoint: SEND_EVENT,
            message: e.to_string(),
        })?;
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
            .with_retries(SEND_EVENT, || {
                let request = http::Request::put(path.as_str())
                    .header(http::header::AUTHORIZATION, authorization.as_str())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(content.clone());
                async {
                    let request = request.map_err(|e| {
                        let error = ClientError::Build {
                            endpoint: SEND_EVENT,
                            message: e.to_string(),
                        };
                        (error, None)
                    })?;
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

impl HomeserverClient {
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
        let authorization = format!("Bearer {token}");
        let response = self
            .with_retries(endpoint, || {
                let mut request = http::Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header(http::header::AUTHORIZATION, authorization.as_str());
                if !body.is_empty() {
                    request = request.header(http::header::CONTENT_TYPE, "application/json");
                }
                let request = request.body(body.clone());
                async move {
                    let request = request.map_err(|e| {
                        let error = ClientError::Build {
                            endpoint,
                            message: e.to_string(),
                        };
                        (error, None)
                    })?;
                    self.execute(endpoint, request, &[]).await
                }
            })
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

/// Escapes one path segment (a user id, room id…) for [`HomeserverClient::request_json`].
#[must_use]
pub fn escape_path_segment(segment: &str) -> String {
    path_segment(segment).to_string()
}

/// Endpoint name of `PUT /rooms/{roomId}/send/{eventType}/{txnId}` in metrics and errors (as
/// ruma's requests are named).
const SEND_EVENT: &str = "message::send_message_event";

/// Characters escaped in a path segment: everything but the unreserved ones (RFC 3986).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn path_segment(segment: &str) -> percent_encoding::PercentEncode<'_> {
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
            endpoint_name::<membership::join_room_by_id::v3::Request>(),
            "membership::join_room_by_id"
        );
    }
}
