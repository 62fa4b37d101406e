//! The fake homeserver: answers the Client-Server API calls Switchboard makes at start-up, for
//! each reply of the echo bot, and those of the MQTT bridge (its portal room, its device
//! puppets and their messages); and records when each measured message arrived.
//!
//! Message `N` of the run (event [`crate::ids::event_id`]`(N)` / `ping <N>` for the echo bot, `in <N>` and `out <N>` for
//! the MQTT bridge) is slot `N` of the per-message tables: when it was (first) sent, when it
//! first arrived (the echo bot's reply or the device's message here, or the MQTT message at
//! the bench's client), and how many times it arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinHandle;

/// Most examples of unexpected requests kept for the report.
const MAX_SAMPLES: usize = 10;

/// Which `m.room.message` sends the fake homeserver expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sends {
    /// Replies `pong <N>` of the bot to event `N` (the echo workload).
    EchoReplies,
    /// Messages `in <N>` from the puppet of device `dev<N mod devices>` in the portal room
    /// (`mqtt-in`).
    DeviceMessages {
        /// Devices the messages are spread over.
        devices: u64,
    },
    /// None: every send is unexpected (`mqtt-out`).
    Nothing,
}

/// What the fake homeserver needs to know about the appservice.
#[derive(Clone, Debug)]
pub(crate) struct HomeserverSetup {
    /// The registration's `as_token` (Switchboard → homeserver).
    pub(crate) as_token: String,
    /// The registration's `hs_token` (homeserver → Switchboard).
    pub(crate) hs_token: String,
    /// The registration's `id`.
    pub(crate) appservice_id: String,
    /// `@<sender_localpart>:<server_name>`.
    pub(crate) bot_user_id: String,
    /// Where Switchboard's Application Service API listens.
    pub(crate) as_url: String,
    /// Events in the run (warm-up + measured): the size of the per-event tables.
    pub(crate) total_events: u64,
    /// Events below this number are warm-up.
    pub(crate) warmup: u64,
    /// The sends to expect.
    pub(crate) sends: Sends,
}

/// Counters of everything the fake homeserver saw.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// `GET /versions` calls.
    pub(crate) versions: AtomicU64,
    /// `GET /whoami` calls.
    pub(crate) whoami: AtomicU64,
    /// Appservice pings that reached Switchboard and were answered.
    pub(crate) pings_ok: AtomicU64,
    /// Appservice pings that failed.
    pub(crate) pings_failed: AtomicU64,
    /// Profile updates.
    pub(crate) profile: AtomicU64,
    /// Rooms created.
    pub(crate) created_rooms: AtomicU64,
    /// State events sent.
    pub(crate) state_events: AtomicU64,
    /// Invitations.
    pub(crate) invites: AtomicU64,
    /// Joins.
    pub(crate) joins: AtomicU64,
    /// Users registered (`m.login.application_service`).
    pub(crate) registrations: AtomicU64,
    /// Sends of `m.room.message`.
    pub(crate) sends: AtomicU64,
    /// Sends repeating a transaction id already seen (answered with the same event id).
    pub(crate) repeated_txn_ids: AtomicU64,
    /// Requests with a missing or wrong `as_token`.
    pub(crate) auth_failures: AtomicU64,
    /// Requests to endpoints the bench does not expect.
    pub(crate) unexpected: AtomicU64,
    /// Sends (or MQTT messages) that are not one of ours: not a reply to one of our events,
    /// not `in <N>`, not `out <N>`.
    pub(crate) bad_replies: AtomicU64,
    /// Ours, but wrong: a reply whose body is not `pong <N>`, a message from the wrong sender
    /// or in the wrong room.
    pub(crate) wrong_bodies: AtomicU64,
    /// Messages that arrived again (under another transaction id, or as another MQTT message).
    pub(crate) duplicates: AtomicU64,
    /// First arrivals of warm-up messages.
    pub(crate) answered_warmup: AtomicU64,
    /// First arrivals of measured messages.
    pub(crate) answered_measured: AtomicU64,
}

/// Shared state of the fake homeserver and the load generator.
pub(crate) struct HsState {
    setup: HomeserverSetup,
    base: Instant,
    /// Per event: nanoseconds since `base` + 1 when its transaction was first sent (0: not yet).
    sent_at: Vec<AtomicU64>,
    /// Per event: nanoseconds since `base` + 1 when it first arrived (0: not yet).
    replied_at: Vec<AtomicU64>,
    /// Per event: arrivals.
    reply_count: Vec<AtomicU32>,
    /// Sender and transaction id → event id, for idempotent sends like a real homeserver.
    txn_ids: Mutex<HashMap<String, String>>,
    next_event_id: AtomicU64,
    /// Rooms created (`createRoom`), in order.
    rooms: Mutex<Vec<String>>,
    /// Woken at each first arrival (the MQTT publisher waits on it when its window is full).
    arrival: tokio::sync::Notify,
    /// What was seen.
    pub(crate) counters: Counters,
    samples: Mutex<Vec<String>>,
    ping_client: reqwest::Client,
}

impl HsState {
    /// Fresh state for one run.
    pub(crate) fn new(setup: HomeserverSetup) -> anyhow::Result<Self> {
        let n = usize::try_from(setup.total_events)?;
        let table = |_| AtomicU64::new(0);
        Ok(Self {
            base: Instant::now(),
            sent_at: (0..n).map(table).collect(),
            replied_at: (0..n).map(table).collect(),
            reply_count: (0..n).map(|_| AtomicU32::new(0)).collect(),
            // Sized for the whole run up front: growing it mid-run rehashes every entry at
            // once, a stall of several milliseconds that would show in the latencies.
            txn_ids: Mutex::new(HashMap::with_capacity(n)),
            next_event_id: AtomicU64::new(0),
            rooms: Mutex::new(Vec::new()),
            arrival: tokio::sync::Notify::new(),
            counters: Counters::default(),
            samples: Mutex::new(Vec::new()),
            ping_client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()?,
            setup,
        })
    }

    /// Nanoseconds since this state was created, + 1 (so that 0 means "never").
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Records that the transaction carrying events `range` is being sent now (first attempt).
    pub(crate) fn mark_sent(&self, range: std::ops::Range<u64>, now_ns: u64) {
        for n in range {
            if let Some(slot) = usize::try_from(n).ok().and_then(|i| self.sent_at.get(i)) {
                slot.store(now_ns, Ordering::Release);
            }
        }
    }

    /// When event `n` was sent and first answered (`now_ns` scale), if it was answered.
    pub(crate) fn sent_and_replied(&self, n: u64) -> Option<(u64, u64)> {
        let i = usize::try_from(n).ok()?;
        let sent = self.sent_at.get(i)?.load(Ordering::Acquire);
        let replied = self.replied_at.get(i)?.load(Ordering::Acquire);
        (sent != 0 && replied != 0).then_some((sent, replied))
    }

    /// Examples of unexpected requests and bad replies.
    pub(crate) fn samples(&self) -> Vec<String> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The first room created (the MQTT bridge's portal room), once there is one.
    pub(crate) fn first_room(&self) -> Option<String> {
        self.rooms.lock().ok().and_then(|r| r.first().cloned())
    }

    /// How many rooms were created here.
    pub(crate) fn room_count(&self) -> u64 {
        self.rooms.lock().map_or(0, |r| r.len() as u64)
    }

    /// Whether `room_id` is a room created here.
    fn is_room(&self, room_id: &str) -> bool {
        self.rooms
            .lock()
            .is_ok_and(|r| r.iter().any(|known| known == room_id))
    }

    /// Counts a problem on `counter` and keeps `what` as an example of it for the report.
    pub(crate) fn problem(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.sample(what);
    }

    /// Keeps `what` as an example of a problem for the report (the first few only).
    fn sample(&self, what: String) {
        if let Ok(mut samples) = self.samples.lock()
            && samples.len() < MAX_SAMPLES
        {
            samples.push(what);
        }
    }

    fn unexpected(&self, what: &str) -> Response {
        self.problem(
            &self.counters.unexpected,
            format!("unexpected request: {what}"),
        );
        matrix_error(
            StatusCode::NOT_FOUND,
            "M_UNRECOGNIZED",
            "Unrecognized request",
        )
    }

    /// Checks the `as_token` (header, or the legacy `access_token` query parameter); the
    /// refusal to send back if it is missing or wrong.
    fn reject(&self, headers: &HeaderMap, query: &HashMap<String, String>) -> Option<Response> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let (errcode, error) = match bearer.or(query.get("access_token").map(String::as_str)) {
            Some(t) if t == self.setup.as_token => return None,
            Some(_) => ("M_UNKNOWN_TOKEN", "Unknown access token"),
            None => ("M_MISSING_TOKEN", "Missing access token"),
        };
        self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
        Some(matrix_error(StatusCode::UNAUTHORIZED, errcode, error))
    }

    /// Accounts a reply of `body` to event `in_reply_to`.
    fn record_reply(&self, in_reply_to: &str, body: Option<&str>, now_ns: u64) {
        let Some(n) =
            crate::ids::event_number(in_reply_to).filter(|&n| n < self.setup.total_events)
        else {
            self.problem(
                &self.counters.bad_replies,
                format!("reply to an unknown event {in_reply_to:?}"),
            );
            return;
        };
        if !self.record_arrival(n, now_ns, &format!("reply to {in_reply_to}")) {
            return;
        }
        if body != Some(format!("pong {n}").as_str()) {
            self.problem(
                &self.counters.wrong_bodies,
                format!("reply to {in_reply_to} has body {body:?}"),
            );
        }
    }

    /// Accounts the arrival of message `n` (`what` names it in the samples); `false` when it
    /// is not one of the run's or arrived before (a duplicate).
    pub(crate) fn record_arrival(&self, n: u64, now_ns: u64, what: &str) -> bool {
        let Some(slot) = usize::try_from(n)
            .ok()
            .filter(|_| n < self.setup.total_events)
        else {
            self.problem(
                &self.counters.bad_replies,
                format!("{what}: number {n} is not one of the run"),
            );
            return false;
        };
        let previous = self.reply_count[slot].fetch_add(1, Ordering::AcqRel);
        if previous > 0 {
            self.problem(
                &self.counters.duplicates,
                format!("{what} arrived a second time"),
            );
            return false;
        }
        self.replied_at[slot].store(now_ns, Ordering::Release);
        let counter = if n < self.setup.warmup {
            &self.counters.answered_warmup
        } else {
            &self.counters.answered_measured
        };
        counter.fetch_add(1, Ordering::Release);
        self.arrival.notify_one();
        true
    }

    /// First arrivals so far, warm-up and measured.
    pub(crate) fn arrived(&self) -> u64 {
        self.counters.answered_warmup.load(Ordering::Acquire)
            + self.counters.answered_measured.load(Ordering::Acquire)
    }

    /// Waits for the next first arrival (or one that happened since the last wait).
    pub(crate) async fn next_arrival(&self) {
        self.arrival.notified().await;
    }

    /// Accounts a device message `body` sent by `sender` into `room_id` (`mqtt-in`).
    fn record_device_message(
        &self,
        room_id: &str,
        sender: &str,
        body: Option<&str>,
        devices: u64,
        now_ns: u64,
    ) {
        let Some(n) = body
            .and_then(|b| b.strip_prefix("in "))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            self.problem(
                &self.counters.bad_replies,
                format!("message from {sender} with body {body:?}"),
            );
            return;
        };
        if !self.record_arrival(n, now_ns, &format!("device message in {n}")) {
            return;
        }
        let puppet = format!(
            "@_mqtt_dev{}:{}",
            n % devices.max(1),
            server_name(&self.setup.bot_user_id)
        );
        if sender != puppet || !self.is_room(room_id) {
            self.problem(&self.counters.wrong_bodies, format!(
                "message in {n} came from {sender} in {room_id}, expected {puppet} in the portal room"
            ));
        }
    }
}

/// The server name of a user id (`@local:server` → `server`).
fn server_name(user_id: &str) -> &str {
    user_id.split_once(':').map_or("", |(_, server)| server)
}

fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errcode": errcode, "error": error })),
    )
        .into_response()
}

/// The running fake homeserver.
pub(crate) struct FakeHomeserver {
    task: JoinHandle<()>,
}

impl FakeHomeserver {
    /// Serves `state` on `listener` until dropped.
    pub(crate) fn start(
        listener: std::net::TcpListener,
        state: Arc<HsState>,
    ) -> anyhow::Result<Self> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = router(state);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake homeserver stopped: {e}");
            }
        });
        Ok(Self { task })
    }
}

impl Drop for FakeHomeserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: Arc<HsState>) -> Router {
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .route("/_matrix/client/v3/account/whoami", get(whoami))
        .route("/_matrix/client/v1/media/config", get(media_config))
        .route("/_matrix/client/v1/appservice/{id}/ping", post(ping))
        .route("/_matrix/client/v3/profile/{user_id}/{field}", put(profile))
        .route(
            "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}",
            put(send),
        )
        .route("/_matrix/client/v3/register", post(register))
        .route("/_matrix/client/v3/createRoom", post(create_room))
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}",
            put(state_event),
        )
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/",
            put(state_event),
        )
        .route(
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{*state_key}",
            put(keyed_state_event),
        )
        .route("/_matrix/client/v3/rooms/{room_id}/invite", post(invite))
        .route("/_matrix/client/v3/rooms/{room_id}/join", post(join))
        .route("/_matrix/client/v3/join/{room_id}", post(join))
        .fallback(fallback)
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

/// The media repository's limits, which bridges read at start (50 MiB, Synapse's default).
async fn media_config() -> Response {
    axum::Json(json!({ "m.upload.size": 52_428_800 })).into_response()
}

async fn fallback(State(s): State<Arc<HsState>>, method: Method, uri: Uri) -> Response {
    s.unexpected(&format!("{method} {}", uri.path()))
}

async fn versions(State(s): State<Arc<HsState>>) -> Response {
    s.counters.versions.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({
        "versions": ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
                     "v1.9", "v1.10", "v1.11", "v1.12"],
        "unstable_features": {}
    }))
    .into_response()
}

async fn whoami(State(s): State<Arc<HsState>>, headers: HeaderMap, Query(q): Params) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    s.counters.whoami.fetch_add(1, Ordering::Relaxed);
    let user_id = q
        .get("user_id")
        .cloned()
        .unwrap_or_else(|| s.setup.bot_user_id.clone());
    axum::Json(json!({ "user_id": user_id, "is_guest": false })).into_response()
}

#[derive(Deserialize)]
struct PingBody {
    transaction_id: Option<String>,
}

/// `POST /appservice/{id}/ping`: calls Switchboard's `/_matrix/app/v1/ping` like a homeserver.
async fn ping(
    State(s): State<Arc<HsState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
    body: Bytes,
) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    if id != s.setup.appservice_id {
        s.problem(
            &s.counters.pings_failed,
            format!(
                "ping for appservice id {id:?}, registration says {:?}",
                s.setup.appservice_id
            ),
        );
        return matrix_error(StatusCode::FORBIDDEN, "M_FORBIDDEN", "not your appservice");
    }
    let transaction_id = serde_json::from_slice::<PingBody>(&body)
        .ok()
        .and_then(|b| b.transaction_id);
    let payload = transaction_id.map_or_else(|| json!({}), |t| json!({ "transaction_id": t }));
    let started = Instant::now();
    let result = s
        .ping_client
        .post(format!("{}/_matrix/app/v1/ping", s.setup.as_url))
        .bearer_auth(&s.setup.hs_token)
        .json(&payload)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => {
            s.counters.pings_ok.fetch_add(1, Ordering::Relaxed);
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            axum::Json(json!({ "duration_ms": ms })).into_response()
        }
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            s.problem(
                &s.counters.pings_failed,
                format!("Switchboard answered the ping {status}: {text}"),
            );
            (
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({
                    "errcode": "M_BAD_STATUS",
                    "error": "Ping returned error status",
                    "status": status.as_u16(),
                    "body": text,
                })),
            )
                .into_response()
        }
        Err(e) => {
            s.problem(
                &s.counters.pings_failed,
                format!("cannot reach Switchboard for the ping: {e}"),
            );
            matrix_error(
                StatusCode::BAD_GATEWAY,
                "M_CONNECTION_FAILED",
                &e.to_string(),
            )
        }
    }
}

async fn profile(
    State(s): State<Arc<HsState>>,
    Path((user_id, field)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    if field != "displayname" && field != "avatar_url" {
        return s.unexpected(&format!("PUT profile/{user_id}/{field}"));
    }
    s.counters.profile.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct Message {
    body: Option<String>,
    #[serde(rename = "m.relates_to")]
    relates_to: Option<Relation>,
}

#[derive(Deserialize)]
struct Relation {
    #[serde(rename = "m.in_reply_to")]
    in_reply_to: Option<InReplyTo>,
}

#[derive(Deserialize)]
struct InReplyTo {
    event_id: String,
}

async fn send(
    State(s): State<Arc<HsState>>,
    Path((room_id, event_type, txn_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let now_ns = s.now_ns();
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    if event_type != "m.room.message" {
        return s.unexpected(&format!("PUT rooms/{room_id}/send/{event_type}"));
    }
    s.counters.sends.fetch_add(1, Ordering::Relaxed);
    let sender = q
        .get("user_id")
        .map_or(s.setup.bot_user_id.as_str(), String::as_str);
    let key = format!("{sender}|{txn_id}");
    let event_id = {
        let Ok(mut txn_ids) = s.txn_ids.lock() else {
            return matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "poisoned");
        };
        if let Some(existing) = txn_ids.get(&key) {
            s.counters.repeated_txn_ids.fetch_add(1, Ordering::Relaxed);
            return axum::Json(json!({ "event_id": existing })).into_response();
        }
        let id = crate::ids::homeserver_event_id(s.next_event_id.fetch_add(1, Ordering::Relaxed));
        txn_ids.insert(key, id.clone());
        id
    };
    check_message(&s, &room_id, sender, &body, now_ns);
    axum::Json(json!({ "event_id": event_id })).into_response()
}

/// Accounts a sent message as the workload expects it (`Sends`).
fn check_message(s: &HsState, room_id: &str, sender: &str, body: &[u8], now_ns: u64) {
    let message = match serde_json::from_slice::<Message>(body) {
        Ok(m) => m,
        Err(e) => {
            s.problem(
                &s.counters.bad_replies,
                format!(
                    "message body does not decode ({e}): {}",
                    String::from_utf8_lossy(body)
                ),
            );
            return;
        }
    };
    match (s.setup.sends, message) {
        (
            Sends::EchoReplies,
            Message {
                body: text,
                relates_to:
                    Some(Relation {
                        in_reply_to: Some(r),
                    }),
            },
        ) => s.record_reply(&r.event_id, text.as_deref(), now_ns),
        (Sends::DeviceMessages { devices }, Message { body: text, .. }) => {
            s.record_device_message(room_id, sender, text.as_deref(), devices, now_ns);
        }
        (Sends::EchoReplies, _) => {
            s.problem(
                &s.counters.bad_replies,
                format!(
                    "message that is not a reply: {}",
                    String::from_utf8_lossy(body)
                ),
            );
        }
        (Sends::Nothing, _) => {
            s.problem(
                &s.counters.bad_replies,
                format!(
                    "message from {sender} in {room_id} (none expected): {}",
                    String::from_utf8_lossy(body)
                ),
            );
        }
    }
}

/// The body of `POST /register`.
#[derive(Deserialize)]
struct RegisterBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    username: Option<String>,
}

/// `POST /register` with `m.login.application_service`: a puppet of the bridge.
async fn register(
    State(s): State<Arc<HsState>>,
    headers: HeaderMap,
    Query(q): Params,
    body: Bytes,
) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    let request = serde_json::from_slice::<RegisterBody>(&body).ok();
    let Some(RegisterBody {
        kind: Some(kind),
        username: Some(username),
    }) = request
    else {
        return s.unexpected(&format!(
            "POST register with body {}",
            String::from_utf8_lossy(&body)
        ));
    };
    if kind != "m.login.application_service" {
        return s.unexpected(&format!("POST register of type {kind}"));
    }
    s.counters.registrations.fetch_add(1, Ordering::Relaxed);
    let user_id = format!("@{username}:{}", server_name(&s.setup.bot_user_id));
    axum::Json(json!({ "user_id": user_id })).into_response()
}

/// `POST /createRoom` by the bot: a fresh room id (`!room<N>:<server>`), remembered.
async fn create_room(
    State(s): State<Arc<HsState>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    if q.get("user_id").is_some_and(|u| *u != s.setup.bot_user_id) {
        return s.unexpected("POST createRoom by another user than the bot");
    }
    let Ok(mut rooms) = s.rooms.lock() else {
        return matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "poisoned");
    };
    let room_id = format!("!room{}:{}", rooms.len(), server_name(&s.setup.bot_user_id));
    rooms.push(room_id.clone());
    s.counters.created_rooms.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({ "room_id": room_id })).into_response()
}

/// `PUT /rooms/{roomId}/state/{eventType}` (empty state key).
async fn state_event(
    State(s): State<Arc<HsState>>,
    Path((room_id, event_type)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    put_state(&s, &room_id, &event_type, &headers, &q)
}

/// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
async fn keyed_state_event(
    State(s): State<Arc<HsState>>,
    Path((room_id, event_type, _state_key)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    put_state(&s, &room_id, &event_type, &headers, &q)
}

/// A state event into a room created here: a fresh event id.
fn put_state(
    s: &HsState,
    room_id: &str,
    event_type: &str,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Response {
    if let Some(r) = s.reject(headers, q) {
        return r;
    }
    if !s.is_room(room_id) {
        return s.unexpected(&format!("PUT state {event_type} in unknown room {room_id}"));
    }
    s.counters.state_events.fetch_add(1, Ordering::Relaxed);
    let id = crate::ids::homeserver_event_id(s.next_event_id.fetch_add(1, Ordering::Relaxed));
    axum::Json(json!({ "event_id": id })).into_response()
}

/// `POST /rooms/{roomId}/invite` into a room created here.
async fn invite(
    State(s): State<Arc<HsState>>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    if !s.is_room(&room_id) {
        return s.unexpected(&format!("POST invite into unknown room {room_id}"));
    }
    s.counters.invites.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({})).into_response()
}

/// `POST /rooms/{roomId}/join` or `/join/{roomIdOrAlias}` of a room created here.
async fn join(
    State(s): State<Arc<HsState>>,
    Path(room_id): Path<String>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    if let Some(r) = s.reject(&headers, &q) {
        return r;
    }
    if !s.is_room(&room_id) {
        return s.unexpected(&format!("POST join of unknown room {room_id}"));
    }
    s.counters.joins.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({ "room_id": room_id })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> HsState {
        HsState::new(HomeserverSetup {
            as_token: "as".into(),
            hs_token: "hs".into(),
            appservice_id: "switchboard".into(),
            bot_user_id: "@echobot:bench.local".into(),
            as_url: "http://127.0.0.1:1".into(),
            total_events: 4,
            warmup: 2,
            sends: Sends::EchoReplies,
        })
        .expect("state")
    }

    #[test]
    fn replies_are_accounted_once() {
        let s = state();
        s.mark_sent(0..4, 5);
        let e = crate::ids::event_id;
        s.record_reply(&e(3), Some("pong 3"), 10);
        s.record_reply(&e(3), Some("pong 3"), 11);
        s.record_reply(&e(1), Some("pong 2"), 12);
        s.record_reply(&e(9), Some("pong 9"), 13);
        s.record_reply("$x", None, 13);
        assert_eq!(s.sent_and_replied(3), Some((5, 10)));
        assert_eq!(s.sent_and_replied(2), None);
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.wrong_bodies.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.bad_replies.load(Ordering::Relaxed), 2);
        assert_eq!(s.counters.answered_measured.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.answered_warmup.load(Ordering::Relaxed), 1);
    }

    /// The calls the MQTT bridge makes at start and for a device message, against the real
    /// router: the room it creates is the one joins and sends must name.
    #[tokio::test]
    async fn the_bridge_calls_are_answered_and_device_messages_counted() {
        let state = Arc::new(
            HsState::new(HomeserverSetup {
                as_token: "as".into(),
                hs_token: "hs".into(),
                appservice_id: "switchboard".into(),
                bot_user_id: "@bridgebot:bench.local".into(),
                as_url: "http://127.0.0.1:1".into(),
                total_events: 4,
                warmup: 0,
                sends: Sends::DeviceMessages { devices: 2 },
            })
            .expect("state"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!(
            "http://127.0.0.1:{}/_matrix/client/v3",
            listener.local_addr().expect("address").port()
        );
        let _hs = FakeHomeserver::start(listener, Arc::clone(&state)).expect("start");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let call = |method: reqwest::Method, path: &str, body: serde_json::Value| {
            client
                .request(method, format!("{base}{path}"))
                .bearer_auth("as")
                .json(&body)
        };
        let created: serde_json::Value = call(Method::POST, "/createRoom", json!({"name": "x"}))
            .send()
            .await
            .expect("createRoom")
            .json()
            .await
            .expect("JSON");
        let room = created["room_id"].as_str().expect("room id").to_owned();
        assert_eq!(state.first_room().as_deref(), Some(room.as_str()));
        let registered = call(
            Method::POST,
            "/register",
            json!({"type": "m.login.application_service", "username": "_mqtt_dev1"}),
        )
        .send()
        .await
        .expect("register");
        assert_eq!(registered.status(), 200);
        let puppet = "user_id=@_mqtt_dev1:bench.local";
        for (method, path, body) in [
            (
                Method::POST,
                format!("/rooms/{room}/join?{puppet}"),
                json!({}),
            ),
            (
                Method::PUT,
                format!("/rooms/{room}/state/m.bridge/org.switchboard:%2F%2Fmqtt%2Fbench"),
                json!({}),
            ),
            (
                Method::PUT,
                format!("/rooms/{room}/send/m.room.message/t1?{puppet}"),
                json!({"msgtype": "m.text", "body": "in 3"}),
            ),
        ] {
            let status = call(method, &path, body)
                .send()
                .await
                .expect(&path)
                .status();
            assert_eq!(status, 200, "{path}");
        }
        let unknown = call(Method::POST, "/rooms/!nope:bench.local/join", json!({}))
            .send()
            .await
            .expect("join");
        assert_eq!(unknown.status(), 404);
        assert_eq!(state.counters.answered_measured.load(Ordering::Relaxed), 1);
        assert_eq!(state.counters.wrong_bodies.load(Ordering::Relaxed), 0);
        assert_eq!(state.counters.unexpected.load(Ordering::Relaxed), 1);
        assert_eq!(state.counters.joins.load(Ordering::Relaxed), 1);
        assert_eq!(state.counters.registrations.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn device_messages_from_the_wrong_puppet_or_twice_are_counted() {
        let s = HsState::new(HomeserverSetup {
            as_token: "as".into(),
            hs_token: "hs".into(),
            appservice_id: "switchboard".into(),
            bot_user_id: "@bridgebot:bench.local".into(),
            as_url: "http://127.0.0.1:1".into(),
            total_events: 4,
            warmup: 1,
            sends: Sends::DeviceMessages { devices: 2 },
        })
        .expect("state");
        let puppet = |k: u64| format!("@_mqtt_dev{k}:bench.local");
        s.record_device_message("!r:bench.local", &puppet(0), Some("in 2"), 2, 9);
        s.record_device_message("!r:bench.local", &puppet(0), Some("in 2"), 2, 10);
        s.record_device_message("!r:bench.local", &puppet(1), Some("hello"), 2, 11);
        assert_eq!(s.counters.answered_measured.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.bad_replies.load(Ordering::Relaxed), 1);
        // Not the portal room (none was created).
        assert_eq!(s.counters.wrong_bodies.load(Ordering::Relaxed), 1);
    }
}
