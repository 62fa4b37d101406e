//! The provisioning API: what a user does with a bridge in chat, over HTTP, for integration
//! managers and web front-ends. Served on the appservice listener under
//! `/_switchboard/provision/v1/bridges/{bridge}/…`.
//!
//! Authentication (`Authorization: Bearer …`): either the shared secret from the config,
//! acting for the user named by the `user_id` query parameter, or an OpenID token the user got
//! from their homeserver (`POST /_matrix/client/v3/user/{userId}/openid/request_token`), which
//! Switchboard checks with the homeserver. The user's permission level applies as in chat.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_api::Secret;

use crate::bridge::host::HostedBridge;
use crate::bridge::{LoginStep, PortalKey, RemoteChatId};
use crate::client::HomeserverClient;
use crate::inbox::HandleError;
use crate::permission::PermissionLevel;
use crate::plugin::PluginHost;

/// A login going on over HTTP.
struct Process {
    bridge: String,
    user: OwnedUserId,
    flow: String,
    step: u32,
    /// Everything entered so far (as in chat, each call adds to it).
    input: BTreeMap<String, String>,
}

struct ApiState {
    host: Arc<PluginHost>,
    client: HomeserverClient,
    shared_secret: Secret,
    processes: Mutex<HashMap<String, Process>>,
}

/// An error answer: status, Matrix-style `errcode` and a message for the user.
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errcode": self.1, "error": self.2 }))).into_response()
    }
}

impl From<HandleError> for ApiError {
    fn from(error: HandleError) -> Self {
        let text = match error {
            HandleError::Transient(e) | HandleError::Permanent(e) => e,
        };
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "M_UNAVAILABLE", text)
    }
}

impl From<switchboard_api::PluginError> for ApiError {
    fn from(error: switchboard_api::PluginError) -> Self {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_UNAVAILABLE",
            error.to_string(),
        )
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The provisioning routes; `shared_secret` empty allows OpenID tokens only.
pub fn router(host: Arc<PluginHost>, client: HomeserverClient, shared_secret: Secret) -> Router {
    let state = Arc::new(ApiState {
        host,
        client,
        shared_secret,
        processes: Mutex::default(),
    });
    let bridge = Router::new()
        .route("/whoami", get(whoami))
        .route("/login/flows", get(login_flows))
        .route("/login/start/{flow}", post(login_start))
        .route("/login/step/{process}", post(login_step))
        .route("/logins", get(logins))
        .route("/logout/{login}", post(logout))
        .route("/portals", get(portals))
        .route("/bridge", post(bridge_room))
        .route("/unbridge", post(unbridge_room));
    Router::new()
        .nest("/_switchboard/provision/v1/bridges/{bridge}", bridge)
        .with_state(state)
}

#[derive(Deserialize)]
struct ActAs {
    user_id: Option<OwnedUserId>,
}

/// Levels a [`Caller`] must have, as const parameters.
const RELAY: u8 = 1;
const USER: u8 = 2;
const ADMIN: u8 = 3;

/// The authenticated caller and the bridge they address (the `{bridge}` of the path), once
/// they may use it at level `LEVEL` ([`RELAY`], [`USER`] or [`ADMIN`]).
struct Caller<const LEVEL: u8> {
    user: OwnedUserId,
    hosted: Arc<HostedBridge>,
}

impl<const LEVEL: u8> FromRequestParts<Arc<ApiState>> for Caller<LEVEL> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let bad_request = |e: String| ApiError(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", e);
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        let Query(act_as) = Query::<ActAs>::from_request_parts(parts, state)
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        let bridge = params.get("bridge").map_or("", String::as_str);
        let needed = match LEVEL {
            RELAY => PermissionLevel::Relay,
            USER => PermissionLevel::User,
            _ => PermissionLevel::Admin,
        };
        let (user, hosted) = caller(state, &parts.headers, act_as, bridge, needed).await?;
        Ok(Self { user, hosted })
    }
}

/// Who is calling, and the bridge they address, once they may use it at `needed`.
async fn caller(
    state: &ApiState,
    headers: &HeaderMap,
    act_as: ActAs,
    bridge: &str,
    needed: PermissionLevel,
) -> Result<(OwnedUserId, Arc<HostedBridge>), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "M_MISSING_TOKEN",
                "send `Authorization: Bearer <token>`".to_owned(),
            )
        })?;
    let is_secret =
        !state.shared_secret.is_empty() && state.shared_secret.matches(token.as_bytes());
    let user = if is_secret {
        act_as.user_id.ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "M_MISSING_PARAM",
                "with the shared secret, say which user with `?user_id=`".to_owned(),
            )
        })?
    } else {
        state
            .client
            .openid_user(token)
            .await
            .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, "M_UNAVAILABLE", e.to_string()))?
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "M_UNKNOWN_TOKEN",
                    "the token is neither the shared secret nor an OpenID token of this \
                     homeserver"
                        .to_owned(),
                )
            })?
    };
    let bridges = state.host.bridges();
    let hosted = bridges.bridge(bridge).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("no bridge {bridge:?} runs here"),
        )
    })?;
    let level = bridges.permissions().level(&user);
    if level < needed {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            format!("this needs the {needed} permission level; {user} has {level}"),
        ));
    }
    Ok((user, Arc::clone(hosted)))
}

async fn whoami(
    State(state): State<Arc<ApiState>>,
    Caller { user, hosted }: Caller<RELAY>,
) -> ApiResult {
    let logins = login_list(&hosted, &user).await?;
    let info = hosted.info();
    Ok(Json(json!({
        "user_id": user,
        "permission": state.host.bridges().permissions().level(&user),
        "bridge": { "id": info.id, "displayname": info.displayname, "state": hosted.state().label() },
        "logins": logins,
    })))
}

async fn login_list(hosted: &HostedBridge, user: &ruma::UserId) -> Result<Value, ApiError> {
    let logins = hosted.logins_of(user).await?;
    Ok(logins
        .iter()
        .map(|l| {
            let state = hosted.login_state(&l.id);
            json!({ "id": l.id, "remote_name": l.remote_name, "state": state.map(|s| s.label()) })
        })
        .collect())
}

async fn login_flows(Caller { hosted, .. }: Caller<USER>) -> ApiResult {
    Ok(Json(json!({ "flows": hosted.login_flows() })))
}

/// Runs one step of a login and answers it (the process goes on unless it ended).
async fn run_step(
    state: &ApiState,
    hosted: &HostedBridge,
    process_id: String,
    mut process: Process,
    input: BTreeMap<String, String>,
) -> ApiResult {
    process.input.extend(input);
    let outcome = hosted
        .call_login_flow(&process.user, &process.flow, process.step, &process.input)
        .await?;
    process.step += 1;
    match outcome {
        Err(why) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "M_FORBIDDEN",
            format!("login failed: {why}"),
        )),
        // The login's data (its session, maybe credentials) stays with the bridge.
        Ok(LoginStep::Complete(login)) => Ok(Json(json!({
            "process_id": process_id,
            "step": { "type": "complete", "id": login.id, "remote_name": login.remote_name },
        }))),
        Ok(step) => {
            if let Ok(mut processes) = state.processes.lock() {
                processes.insert(process_id.clone(), process);
            }
            Ok(Json(json!({ "process_id": process_id, "step": step })))
        }
    }
}

async fn login_start(
    State(state): State<Arc<ApiState>>,
    Path((_, flow)): Path<(String, String)>,
    Caller { user, hosted }: Caller<USER>,
) -> ApiResult {
    if !hosted.login_flows().iter().any(|f| f.id == flow) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("{} has no login flow {flow:?}", hosted.id()),
        ));
    }
    let process_id = format!("{:032x}", rand::random::<u128>());
    let process = Process {
        bridge: hosted.id().to_owned(),
        user,
        flow,
        step: 0,
        input: BTreeMap::new(),
    };
    run_step(&state, &hosted, process_id, process, BTreeMap::new()).await
}

#[derive(Deserialize)]
struct StepBody {
    #[serde(default)]
    input: BTreeMap<String, String>,
}

async fn login_step(
    State(state): State<Arc<ApiState>>,
    Path((_, process_id)): Path<(String, String)>,
    Caller { user, hosted }: Caller<USER>,
    Json(body): Json<StepBody>,
) -> ApiResult {
    let process = state
        .processes
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&process_id))
        .filter(|p| p.user == user && p.bridge == hosted.id())
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
                "no such login in progress for this user".to_owned(),
            )
        })?;
    run_step(&state, &hosted, process_id, process, body.input).await
}

async fn logins(Caller { user, hosted }: Caller<USER>) -> ApiResult {
    Ok(Json(json!({ "logins": login_list(&hosted, &user).await? })))
}

async fn logout(
    Path((_, login_id)): Path<(String, String)>,
    Caller { user, hosted }: Caller<USER>,
) -> ApiResult {
    let login = hosted
        .logins_of(&user)
        .await?
        .into_iter()
        .find(|l| l.id.as_str() == login_id)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "M_NOT_FOUND",
                "you have no such login".to_owned(),
            )
        })?;
    hosted.log_out(&login).await?;
    Ok(Json(json!({})))
}

async fn portals(Caller { hosted, .. }: Caller<USER>) -> ApiResult {
    let portals = hosted.portals().await?;
    Ok(Json(json!({
        "portals": portals
            .iter()
            .map(|(key, room)| json!({ "chat": key.chat, "receiver": key.receiver, "room_id": room }))
            .collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct BridgeBody {
    room_id: OwnedRoomId,
    #[serde(default)]
    chat: Option<RemoteChatId>,
}

async fn bridge_room(
    Caller { hosted, .. }: Caller<ADMIN>,
    Json(body): Json<BridgeBody>,
) -> ApiResult {
    let chat = body.chat.ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "M_MISSING_PARAM",
            "say which `chat` to bridge the room to".to_owned(),
        )
    })?;
    match hosted.bridge_existing(&body.room_id, chat).await? {
        Ok(()) => Ok(Json(json!({}))),
        Err(why) => Err(ApiError(StatusCode::CONFLICT, "M_FORBIDDEN", why)),
    }
}

async fn unbridge_room(
    Caller { hosted, .. }: Caller<ADMIN>,
    Json(body): Json<BridgeBody>,
) -> ApiResult {
    let portal: Option<PortalKey> = hosted.portal_of(&body.room_id);
    let Some(portal) = portal else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("{} is not a portal of {}", body.room_id, hosted.id()),
        ));
    };
    hosted.unbridge(&portal).await?;
    Ok(Json(json!({})))
}
