//! The [Application Service API](https://spec.matrix.org/v1.19/application-service-api/) server.
//!
//! Routes (each also under the legacy unprefixed path where the spec had one):
//! - `PUT /_matrix/app/v1/transactions/{txnId}`: events, `ephemeral` (and the MSC2409 spelling),
//!   to-device (MSC4203), device lists and one-time-key counts (MSC3202), stored durably before
//!   `200 {}` is sent.
//! - `GET /_matrix/app/v1/users/{userId}`, `GET /_matrix/app/v1/rooms/{roomAlias}`: asks the
//!   plug-ins whether to create the user / room.
//! - the five `GET /_matrix/app/v1/thirdparty/…` endpoints (and `/_matrix/app/unstable/thirdparty/…`).
//! - `POST /_matrix/app/v1/ping`.
//!
//! Authentication: the `hs_token` as `Authorization: Bearer` or the legacy `access_token` query
//! parameter (both must match when both are given), compared in constant time; `401
//! M_UNAUTHORIZED` without a token, `403 M_FORBIDDEN` with a wrong one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ruma::{OwnedRoomAliasId, OwnedUserId};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::inbox::{AcceptError, Accepted, Inbox};
use crate::metrics::InboxMetrics;
use switchboard_store::NewInboxEvent;

/// Answers the homeserver's queries on behalf of the plug-ins.
#[async_trait::async_trait]
pub trait QueryHandler: Send + Sync + 'static {
    /// `GET /users/{userId}`: whether the user now exists (a plug-in created it).
    async fn query_user(&self, user_id: &ruma::UserId) -> bool;
    /// `GET /rooms/{roomAlias}`: whether the room now exists (a plug-in created it).
    async fn query_alias(&self, alias: &ruma::RoomAliasId) -> bool;
    /// The third-party protocols served, with their metadata (`GET /thirdparty/protocol/…`).
    async fn thirdparty_protocol(&self, protocol: &str) -> Option<Value>;
    /// Third-party users matching the fields, or by Matrix id.
    async fn thirdparty_users(
        &self,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value>;
    /// Third-party locations matching the fields, or by alias.
    async fn thirdparty_locations(
        &self,
        protocol: Option<&str>,
        query: &[(String, String)],
    ) -> Vec<Value>;
}

#[derive(Clone)]
struct AppState {
    hs_token: Arc<str>,
    inbox: Inbox,
    queries: Arc<dyn QueryHandler>,
    metrics: InboxMetrics,
}

/// A Matrix error response.
struct MatrixError {
    status: StatusCode,
    errcode: &'static str,
    message: String,
}

impl MatrixError {
    fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            message: message.into(),
        }
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "errcode": self.errcode, "error": self.message })),
        )
            .into_response()
    }
}

/// Builds the router. `max_body_bytes` bounds a request body (413 `M_TOO_LARGE` above it).
pub fn router(
    hs_token: &str,
    inbox: Inbox,
    queries: Arc<dyn QueryHandler>,
    metrics: InboxMetrics,
    max_body_bytes: usize,
) -> Router {
    let state = AppState {
        hs_token: hs_token.into(),
        inbox,
        queries,
        metrics,
    };
    let thirdparty = Router::new()
        .route("/protocol/{protocol}", get(thirdparty_protocol))
        .route("/user/{protocol}", get(thirdparty_user_by_protocol))
        .route("/user", get(thirdparty_user_by_id))
        .route("/location/{protocol}", get(thirdparty_location_by_protocol))
        .route("/location", get(thirdparty_location_by_alias));
    let v1 = Router::new()
        .route("/transactions/{txn_id}", put(push_transaction))
        .route("/users/{user_id}", get(query_user))
        .route("/rooms/{room_alias}", get(query_alias))
        .route("/ping", post(ping))
        .nest("/thirdparty", thirdparty.clone());
    let legacy = Router::new()
        .route("/transactions/{txn_id}", put(push_transaction))
        .route("/users/{user_id}", get(query_user))
        .route("/rooms/{room_alias}", get(query_alias));
    Router::new()
        .nest("/_matrix/app/v1", v1)
        .nest("/_matrix/app/unstable/thirdparty", thirdparty)
        .merge(legacy)
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state.hs_token),
            authenticate,
        ))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::map_response(matrix_error_for_rejections))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(
            tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
            ]),
        )
        .with_state(state)
}

/// Serves the router on `listener` until `shutdown`, finishing requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Turns axum's plain-text rejections (body too large) into Matrix error JSON.
async fn matrix_error_for_rejections(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return MatrixError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "M_TOO_LARGE",
            "The transaction is larger than appservice.max_body_bytes",
        )
        .into_response();
    }
    response
}

async fn unrecognized() -> MatrixError {
    MatrixError::new(
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
        "Unrecognized request",
    )
}

async fn method_not_allowed() -> MatrixError {
    MatrixError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
        "Method not allowed for this endpoint",
    )
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn token_matches(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// A router that answers only `POST /_matrix/app/v1/ping` (used by `doctor` when Switchboard
/// is not running, so the homeserver's ping has someone to reach).
pub fn ping_router(hs_token: &str) -> Router {
    Router::new()
        .route("/_matrix/app/v1/ping", post(ping))
        .route_layer(middleware::from_fn_with_state(
            Arc::<str>::from(hs_token),
            authenticate,
        ))
        .fallback(unrecognized)
}

async fn authenticate(State(hs_token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let header = bearer_token(request.headers()).map(str::to_owned);
    let query = query_token(request.uri().query());
    let tokens: Vec<&str> = header
        .iter()
        .chain(query.iter())
        .map(String::as_str)
        .collect();
    if tokens.is_empty() {
        return MatrixError::new(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "No hs_token was given",
        )
        .into_response();
    }
    // Check every given token, so a mismatch between header and query is refused too.
    let all_match = tokens
        .iter()
        .fold(true, |ok, t| ok & token_matches(t, &hs_token));
    if !all_match {
        tracing::warn!(path = %request.uri().path(), "request with a wrong hs_token refused");
        return MatrixError::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Invalid hs_token")
            .into_response();
    }
    next.run(request).await
}

/// The body of a transaction. Lists are kept as raw JSON so that one bad event cannot fail
/// the others. Each field is read under its stable name and every unstable one homeservers
/// have used (see the `*_NAMES` constants), the first present winning: Synapse, for one,
/// sends the one-time-key counts under two names at once.
struct TransactionBody<'a> {
    events: Vec<&'a RawValue>,
    ephemeral: Option<Vec<&'a RawValue>>,
    to_device: Option<Vec<&'a RawValue>>,
    device_lists: Option<&'a RawValue>,
    otk_counts: Option<&'a RawValue>,
    fallback_keys: Option<&'a RawValue>,
}

/// Names of the ephemeral list: stable, MSC2409.
const EPHEMERAL_NAMES: &[&str] = &["ephemeral", "de.sorunome.msc2409.ephemeral"];
/// Names of the to-device list: stable, MSC4203, MSC2409.
const TO_DEVICE_NAMES: &[&str] = &[
    "to_device",
    "org.matrix.msc4203.to_device",
    "de.sorunome.msc2409.to_device",
];
/// Names of the device list changes: stable, MSC3202 (both prefixes).
const DEVICE_LISTS_NAMES: &[&str] = &[
    "device_lists",
    "org.matrix.msc3202.device_lists",
    "de.sorunome.msc3202.device_lists",
];
/// Names of the one-time-key counts: stable, MSC3202 (both prefixes, and Synapse's older
/// misspelling).
const OTK_COUNTS_NAMES: &[&str] = &[
    "device_one_time_keys_count",
    "org.matrix.msc3202.device_one_time_keys_count",
    "org.matrix.msc3202.device_one_time_key_counts",
    "de.sorunome.msc3202.device_one_time_keys_count",
];
/// Names of the unused fallback key types: stable, MSC3202 (both prefixes).
const FALLBACK_KEYS_NAMES: &[&str] = &[
    "device_unused_fallback_key_types",
    "org.matrix.msc3202.device_unused_fallback_key_types",
    "de.sorunome.msc3202.device_unused_fallback_key_types",
];

impl<'a> TransactionBody<'a> {
    /// Reads a transaction body; an error when it is not a JSON object or a list is not a list.
    fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        let fields: std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue> =
            serde_json::from_slice(json)?;
        let field = |names: &[&str]| {
            names
                .iter()
                .find_map(|name| fields.get(*name).copied())
                .filter(|raw| raw.get() != "null")
        };
        let list = |names: &[&str]| {
            field(names)
                .map(|raw| serde_json::from_str::<Vec<&'a RawValue>>(raw.get()))
                .transpose()
        };
        Ok(Self {
            events: list(&["events"])?.unwrap_or_default(),
            ephemeral: list(EPHEMERAL_NAMES)?,
            to_device: list(TO_DEVICE_NAMES)?,
            device_lists: field(DEVICE_LISTS_NAMES),
            otk_counts: field(OTK_COUNTS_NAMES),
            fallback_keys: field(FALLBACK_KEYS_NAMES),
        })
    }
}

/// The fields every event in a list must have to be routed.
#[derive(Deserialize)]
struct EventHeader<'a> {
    #[serde(rename = "type", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    room_id: Option<ruma::OwnedRoomId>,
    event_id: Option<ruma::OwnedEventId>,
}

/// Event list names as stored in the inbox.
pub mod list {
    /// Room timeline and state events.
    pub const PDU: &str = "pdu";
    /// Typing, receipts, presence.
    pub const EPHEMERAL: &str = "ephemeral";
    /// To-device messages (MSC4203).
    pub const TO_DEVICE: &str = "to_device";
    /// Device list changes (MSC3202).
    pub const DEVICE_LISTS: &str = "device_lists";
    /// One-time-key counts (MSC3202).
    pub const OTK_COUNTS: &str = "otk_counts";
    /// Unused fallback key types (MSC3202).
    pub const FALLBACK_KEYS: &str = "fallback_keys";
}

fn decode_list(
    metrics: &InboxMetrics,
    list: &'static str,
    raw_events: &[&RawValue],
    needs_room: bool,
    out: &mut Vec<NewInboxEvent>,
) {
    let mut event_types = Vec::with_capacity(raw_events.len());
    for raw in raw_events {
        match serde_json::from_str::<EventHeader<'_>>(raw.get()) {
            Ok(header)
                if !needs_room || (header.room_id.is_some() && header.event_id.is_some()) =>
            {
                event_types.push(header.event_type);
                out.push(NewInboxEvent {
                    kind: list.to_owned(),
                    event_id: header.event_id.filter(|_| needs_room).map(String::from),
                    room_id: header.room_id.map(String::from),
                    body: raw.get().to_owned(),
                });
            }
            Ok(_) => {
                metrics.events_invalid.with_label_values(&[list]).inc();
                tracing::warn!(list, "skipping a room event without a room_id or event_id");
            }
            Err(error) => {
                metrics.events_invalid.with_label_values(&[list]).inc();
                tracing::warn!(list, %error, "skipping an event that does not decode");
            }
        }
    }
    let event_types: Vec<&str> = event_types.iter().map(AsRef::as_ref).collect();
    metrics.count_events(list, &event_types);
}

/// A short digest of a transaction body (hex of the first 8 bytes of its SHA-256).
fn body_digest(body: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(body)[..8]
        .iter()
        .fold(String::new(), |mut out, b| {
            use std::fmt::Write;
            let _ = write!(out, "{b:02x}");
            out
        })
}

async fn push_transaction(
    State(state): State<AppState>,
    Path(txn_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, MatrixError> {
    state.metrics.transaction_arrived();
    let digest = body_digest(&body);
    let body = match TransactionBody::parse(&body) {
        Ok(b) => b,
        Err(e) if e.is_syntax() || e.is_eof() => {
            state
                .metrics
                .transactions
                .with_label_values(&["rejected"])
                .inc();
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                format!("The body is not JSON: {e}"),
            ));
        }
        Err(e) => {
            state
                .metrics
                .transactions
                .with_label_values(&["rejected"])
                .inc();
            return Err(MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_BAD_JSON",
                format!("The body is not a transaction: {e}"),
            ));
        }
    };
    let span = tracing::info_span!("transaction", %txn_id, events = body.events.len());
    async move {
        let mut events = Vec::with_capacity(body.events.len());
        decode_list(&state.metrics, list::PDU, &body.events, true, &mut events);
        if let Some(ephemeral) = &body.ephemeral {
            decode_list(&state.metrics, list::EPHEMERAL, ephemeral, false, &mut events);
        }
        if let Some(to_device) = &body.to_device {
            decode_list(&state.metrics, list::TO_DEVICE, to_device, false, &mut events);
        }
        for (list, raw) in [
            (list::DEVICE_LISTS, body.device_lists),
            (list::OTK_COUNTS, body.otk_counts),
            (list::FALLBACK_KEYS, body.fallback_keys),
        ] {
            if let Some(raw) = raw {
                events.push(NewInboxEvent {
                    kind: list.to_owned(),
                    event_id: None,
                    room_id: None,
                    body: raw.get().to_owned(),
                });
            }
        }
        match state.inbox.accept(&txn_id, &digest, events).await {
            Ok(Accepted::New) => {
                tracing::debug!("transaction stored");
                state.metrics.transactions.with_label_values(&["new"]).inc();
                Ok(Json(json!({})))
            }
            Ok(Accepted::Duplicate) => {
                state.metrics.transactions.with_label_values(&["duplicate"]).inc();
                tracing::info!("repeated transaction acknowledged without processing");
                Ok(Json(json!({})))
            }
            Err(e @ (AcceptError::Busy { .. } | AcceptError::ShuttingDown)) => {
                state.metrics.transactions.with_label_values(&["rejected"]).inc();
                Err(MatrixError::new(StatusCode::SERVICE_UNAVAILABLE, "M_LIMIT_EXCEEDED", e.to_string()))
            }
            Err(AcceptError::Store(e)) => {
                state.metrics.transactions.with_label_values(&["rejected"]).inc();
                tracing::error!(error = %e, "cannot store a transaction; the homeserver will retry it");
                Err(MatrixError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "M_UNKNOWN",
                    "Cannot store the transaction",
                ))
            }
        }
    }
    .instrument(span)
    .await
}

async fn query_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, MatrixError> {
    let user_id = OwnedUserId::try_from(user_id.as_str()).map_err(|e| {
        MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!("Invalid user id: {e}"),
        )
    })?;
    if state.queries.query_user(&user_id).await {
        Ok(Json(json!({})))
    } else {
        Err(MatrixError::new(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "No such user",
        ))
    }
}

async fn query_alias(
    State(state): State<AppState>,
    Path(alias): Path<String>,
) -> Result<Json<Value>, MatrixError> {
    let alias = OwnedRoomAliasId::try_from(alias.as_str()).map_err(|e| {
        MatrixError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!("Invalid room alias: {e}"),
        )
    })?;
    if state.queries.query_alias(&alias).await {
        Ok(Json(json!({})))
    } else {
        Err(MatrixError::new(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "No such room",
        ))
    }
}

async fn ping(body: Bytes) -> Result<Json<Value>, MatrixError> {
    #[derive(Deserialize)]
    struct PingBody {
        transaction_id: Option<String>,
    }
    let parsed: PingBody = if body.is_empty() {
        PingBody {
            transaction_id: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            MatrixError::new(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                format!("The body is not JSON: {e}"),
            )
        })?
    };
    tracing::info!(
        transaction_id = parsed.transaction_id.as_deref().unwrap_or(""),
        "ping from the homeserver"
    );
    Ok(Json(json!({})))
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k != "access_token")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn list_or_not_found(found: Vec<Value>, what: &str) -> Result<Json<Value>, MatrixError> {
    if found.is_empty() {
        Err(MatrixError::new(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("No {what} found"),
        ))
    } else {
        Ok(Json(Value::Array(found)))
    }
}

async fn thirdparty_protocol(
    State(state): State<AppState>,
    Path(protocol): Path<String>,
) -> Result<Json<Value>, MatrixError> {
    state
        .queries
        .thirdparty_protocol(&protocol)
        .await
        .map(Json)
        .ok_or_else(|| MatrixError::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", "No such protocol"))
}

async fn thirdparty_user_by_protocol(
    State(state): State<AppState>,
    Path(protocol): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, MatrixError> {
    let found = state
        .queries
        .thirdparty_users(Some(&protocol), &query_pairs(query.as_deref()))
        .await;
    list_or_not_found(found, "users")
}

async fn thirdparty_user_by_id(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, MatrixError> {
    let found = state
        .queries
        .thirdparty_users(None, &query_pairs(query.as_deref()))
        .await;
    list_or_not_found(found, "users")
}

async fn thirdparty_location_by_protocol(
    State(state): State<AppState>,
    Path(protocol): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, MatrixError> {
    let found = state
        .queries
        .thirdparty_locations(Some(&protocol), &query_pairs(query.as_deref()))
        .await;
    list_or_not_found(found, "locations")
}

async fn thirdparty_location_by_alias(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, MatrixError> {
    let found = state
        .queries
        .thirdparty_locations(None, &query_pairs(query.as_deref()))
        .await;
    list_or_not_found(found, "locations")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_is_parsed_case_insensitively() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "bearer abc".parse().expect("valid header"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            "Basic abc".parse().expect("valid header"),
        );
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn query_token_is_url_decoded() {
        assert_eq!(
            query_token(Some("a=1&access_token=x%2By")),
            Some("x+y".to_owned())
        );
        assert_eq!(query_token(Some("a=1")), None);
    }

    #[test]
    fn one_bad_event_does_not_drop_its_neighbours() {
        let metrics = InboxMetrics::default();
        let body = r#"{"events":[
            {"type":"m.room.message","room_id":"!a:x","event_id":"$1","sender":"@u:x","content":{}},
            {"type":"m.room.message","room_id":"not a room id"},
            42,
            {"room_id":"!a:x"},
            {"type":"m.room.message","room_id":"!a:x","event_id":"$2","sender":"@u:x","content":{}}
        ]}"#;
        let parsed = TransactionBody::parse(body.as_bytes()).expect("valid body");
        let mut out = Vec::new();
        decode_list(&metrics, list::PDU, &parsed.events, true, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].event_id.as_deref(), Some("$1"));
        assert!(out[0].body.contains("\"$1\""));
        assert!(out[1].body.contains("\"$2\""));
        assert_eq!(
            metrics.events_invalid.with_label_values(&[list::PDU]).get(),
            3
        );
    }

    #[test]
    fn every_name_of_a_field_is_read_and_the_first_present_wins() {
        let stable = r#"{"events":[],"ephemeral":[{"type":"m.typing"}],"to_device":[{"type":"m.room_key"}],
            "device_lists":{"changed":["@a:x"]},"device_one_time_keys_count":{"@a:x":{"D":{"signed_curve25519":1}}},
            "device_unused_fallback_key_types":{"@a:x":{"D":[]}}}"#;
        let unstable = r#"{"de.sorunome.msc2409.ephemeral":[{"type":"m.typing"}],
            "de.sorunome.msc2409.to_device":[{"type":"m.room_key"}],
            "de.sorunome.msc3202.device_lists":{"changed":["@a:x"]},
            "org.matrix.msc3202.device_one_time_keys_count":{"@a:x":{"D":{"signed_curve25519":2}}},
            "org.matrix.msc3202.device_one_time_key_counts":{"@a:x":{"D":{"signed_curve25519":2}}},
            "org.matrix.msc3202.device_unused_fallback_key_types":{"@a:x":{"D":[]}}}"#;
        for body in [stable, unstable] {
            let parsed = TransactionBody::parse(body.as_bytes()).expect("valid body");
            assert!(parsed.events.is_empty());
            assert_eq!(parsed.ephemeral.map(|l| l.len()), Some(1), "{body}");
            assert_eq!(parsed.to_device.map(|l| l.len()), Some(1), "{body}");
            assert!(parsed.device_lists.is_some(), "{body}");
            assert!(parsed.otk_counts.is_some(), "{body}");
            assert!(parsed.fallback_keys.is_some(), "{body}");
        }
        let msc4203 = r#"{"events":[],"org.matrix.msc4203.to_device":[{"type":"a"},{"type":"b"}]}"#;
        let parsed = TransactionBody::parse(msc4203.as_bytes()).expect("valid body");
        assert_eq!(parsed.to_device.map(|l| l.len()), Some(2));
        assert!(
            TransactionBody::parse(br#"{"events":{}}"#).is_err(),
            "a list must be a list"
        );
        assert!(
            TransactionBody::parse(b"[]").is_err(),
            "a body must be an object"
        );
    }
}
