//! The fake homeserver: answers the Client-Server API calls Switchboard makes at start-up and
//! for each reply, and records when each `ping` was answered.
//!
//! Event `$e<N>` of the run is slot `N` of the per-event tables: when the transaction carrying
//! it was (first) sent, when its first reply arrived, and how many replies it got.

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
    /// Sends of `m.room.message`.
    pub(crate) sends: AtomicU64,
    /// Sends repeating a transaction id already seen (answered with the same event id).
    pub(crate) repeated_txn_ids: AtomicU64,
    /// Requests with a missing or wrong `as_token`.
    pub(crate) auth_failures: AtomicU64,
    /// Requests to endpoints the bench does not expect.
    pub(crate) unexpected: AtomicU64,
    /// Sends that are not a reply to one of our events.
    pub(crate) bad_replies: AtomicU64,
    /// Replies whose body is not `pong <N>`.
    pub(crate) wrong_bodies: AtomicU64,
    /// Replies to an event already answered (under another transaction id).
    pub(crate) duplicates: AtomicU64,
    /// First replies to warm-up events.
    pub(crate) answered_warmup: AtomicU64,
    /// First replies to measured events.
    pub(crate) answered_measured: AtomicU64,
}

/// Shared state of the fake homeserver and the load generator.
pub(crate) struct HsState {
    setup: HomeserverSetup,
    base: Instant,
    /// Per event: nanoseconds since `base` + 1 when its transaction was first sent (0: not yet).
    sent_at: Vec<AtomicU64>,
    /// Per event: nanoseconds since `base` + 1 when its first reply arrived (0: not yet).
    replied_at: Vec<AtomicU64>,
    /// Per event: replies received.
    reply_count: Vec<AtomicU32>,
    /// Sender and transaction id → event id, for idempotent sends like a real homeserver.
    txn_ids: Mutex<HashMap<String, String>>,
    next_event_id: AtomicU64,
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
            txn_ids: Mutex::new(HashMap::new()),
            next_event_id: AtomicU64::new(0),
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

    fn sample(&self, what: String) {
        if let Ok(mut samples) = self.samples.lock()
            && samples.len() < MAX_SAMPLES
        {
            samples.push(what);
        }
    }

    fn unexpected(&self, what: &str) -> Response {
        self.counters.unexpected.fetch_add(1, Ordering::Relaxed);
        self.sample(format!("unexpected request: {what}"));
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
        let n = in_reply_to
            .strip_prefix("$e")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n < self.setup.total_events);
        let Some(slot) = n.and_then(|n| usize::try_from(n).ok()) else {
            self.counters.bad_replies.fetch_add(1, Ordering::Relaxed);
            self.sample(format!("reply to an unknown event {in_reply_to:?}"));
            return;
        };
        let n = n.unwrap_or_default();
        let previous = self.reply_count[slot].fetch_add(1, Ordering::AcqRel);
        if previous > 0 {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            self.sample(format!("second reply to {in_reply_to}"));
            return;
        }
        self.replied_at[slot].store(now_ns, Ordering::Release);
        if body != Some(format!("pong {n}").as_str()) {
            self.counters.wrong_bodies.fetch_add(1, Ordering::Relaxed);
            self.sample(format!("reply to {in_reply_to} has body {body:?}"));
        }
        if n < self.setup.warmup {
            self.counters
                .answered_warmup
                .fetch_add(1, Ordering::Release);
        } else {
            self.counters
                .answered_measured
                .fetch_add(1, Ordering::Release);
        }
    }
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
        .route("/_matrix/client/v1/appservice/{id}/ping", post(ping))
        .route("/_matrix/client/v3/profile/{user_id}/{field}", put(profile))
        .route(
            "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}",
            put(send),
        )
        .fallback(fallback)
        .with_state(state)
}

type Params = Query<HashMap<String, String>>;

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
        s.counters.pings_failed.fetch_add(1, Ordering::Relaxed);
        s.sample(format!(
            "ping for appservice id {id:?}, registration says {:?}",
            s.setup.appservice_id
        ));
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
            s.counters.pings_failed.fetch_add(1, Ordering::Relaxed);
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            s.sample(format!("Switchboard answered the ping {status}: {text}"));
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
            s.counters.pings_failed.fetch_add(1, Ordering::Relaxed);
            s.sample(format!("cannot reach Switchboard for the ping: {e}"));
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
        let id = format!("$r{}", s.next_event_id.fetch_add(1, Ordering::Relaxed));
        txn_ids.insert(key, id.clone());
        id
    };
    match serde_json::from_slice::<Message>(&body) {
        Ok(Message {
            body: text,
            relates_to: Some(Relation {
                in_reply_to: Some(r),
            }),
        }) => s.record_reply(&r.event_id, text.as_deref(), now_ns),
        Ok(_) => {
            s.counters.bad_replies.fetch_add(1, Ordering::Relaxed);
            s.sample(format!(
                "message that is not a reply: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Err(e) => {
            s.counters.bad_replies.fetch_add(1, Ordering::Relaxed);
            s.sample(format!(
                "message body does not decode ({e}): {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    axum::Json(json!({ "event_id": event_id })).into_response()
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
        })
        .expect("state")
    }

    #[test]
    fn replies_are_accounted_once() {
        let s = state();
        s.mark_sent(0..4, 5);
        s.record_reply("$e3", Some("pong 3"), 10);
        s.record_reply("$e3", Some("pong 3"), 11);
        s.record_reply("$e1", Some("pong 2"), 12);
        s.record_reply("$e9", Some("pong 9"), 13);
        s.record_reply("$x", None, 13);
        assert_eq!(s.sent_and_replied(3), Some((5, 10)));
        assert_eq!(s.sent_and_replied(2), None);
        assert_eq!(s.counters.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.wrong_bodies.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.bad_replies.load(Ordering::Relaxed), 2);
        assert_eq!(s.counters.answered_measured.load(Ordering::Relaxed), 1);
        assert_eq!(s.counters.answered_warmup.load(Ordering::Relaxed), 1);
    }
}
