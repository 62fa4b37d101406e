//! Fault cases a real Synapse cannot be made to produce on demand (429 storms, 500s, hangs,
//! refused tokens), against a small in-process fake homeserver, plus start-up with no
//! homeserver at all.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::switchboard_instance::{BINARY, Slot};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use switchboard_runtime::client::{ClientError, HomeserverClient, Identity};
use switchboard_runtime::config::{ClientConfig, SqliteSync};
use switchboard_runtime::derive_txn_id;
use switchboard_runtime::metrics::Metrics;
use switchboard_runtime::ruma::events::room::message::RoomMessageEventContent;
use switchboard_runtime::ruma::{OwnedRoomId, OwnedUserId};
use switchboard_runtime::store::Store;

/// One scripted answer: status, extra headers, body, and a delay before answering.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
    delay: Duration,
}

fn answer(status: u16, body: &'static str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body,
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    requests: Vec<String>,
}

/// A fake homeserver that answers each request with the next scripted answer (or
/// `{"event_id": "$ok"}` when the script runs out) and records request paths.
struct FakeHomeserver {
    script: Arc<Mutex<Script>>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeHomeserver {
    async fn start(answers: Vec<Answer>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.into(),
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .fallback(scripted)
            .with_state(Arc::clone(&script));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { script, url, task }
    }

    fn requests(&self) -> Vec<String> {
        self.script.lock().expect("lock").requests.clone()
    }
}

impl Drop for FakeHomeserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted(State(script): State<Arc<Mutex<Script>>>, uri: axum::http::Uri) -> Response {
    let next = {
        let mut s = script.lock().expect("lock");
        s.requests.push(uri.to_string());
        s.answers.pop_front()
    };
    let a = next.unwrap_or_else(|| answer(200, r#"{"event_id":"$ok"}"#));
    tokio::time::sleep(a.delay).await;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().expect("header"));
    for (k, v) in a.headers {
        headers.insert(k, v.parse().expect("header"));
    }
    (
        StatusCode::from_u16(a.status).expect("status"),
        headers,
        a.body,
    )
        .into_response()
}

async fn client_for(
    hs: &FakeHomeserver,
    config: ClientConfig,
) -> (HomeserverClient, Metrics, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("t.db").display()),
        2,
        SqliteSync::Normal,
    )
    .await
    .expect("store");
    let metrics = Metrics::new();
    let bot = OwnedUserId::try_from("@bot:fake.test").expect("user id");
    let client = HomeserverClient::new(
        &hs.url,
        "as_token_for_tests_123456",
        bot,
        config,
        metrics.client.clone(),
        std::sync::Arc::new(store),
    )
    .expect("client");
    (client, metrics, dir)
}

fn fast_retries(max_retries: u32) -> ClientConfig {
    ClientConfig {
        max_retries,
        initial_backoff_ms: 20,
        max_backoff_ms: 200,
        request_timeout_secs: 1,
        ..ClientConfig::default()
    }
}

async fn send_ping(client: &HomeserverClient, txn: &str) -> Result<String, ClientError> {
    let room = OwnedRoomId::try_from("!room:fake.test").expect("room id");
    let content = RoomMessageEventContent::text_plain("pong");
    let puppet = OwnedUserId::try_from("@_echo_x:fake.test").expect("user id");
    client
        .send_message(
            &room,
            derive_txn_id(&[txn]),
            &content,
            Identity::user(&puppet),
            None,
        )
        .await
        .map(|id| id.to_string())
}

#[tokio::test]
async fn rate_limits_are_honoured_from_the_body_and_the_header() {
    let mut from_header = answer(429, r#"{"errcode":"M_LIMIT_EXCEEDED"}"#);
    from_header.headers.push(("retry-after", "1".to_owned()));
    let hs = FakeHomeserver::start(vec![
        answer(
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":400}"#,
        ),
        from_header,
    ])
    .await;
    let (client, metrics, _dir) = client_for(&hs, fast_retries(5)).await;
    let started = Instant::now();
    let event_id = send_ping(&client, "a")
        .await
        .expect("sent after the rate limits");
    assert_eq!(event_id, "$ok");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "waited {:?}",
        started.elapsed()
    );
    let requests = hs.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r == &requests[0]),
        "every retry uses the same txn id: {requests:?}"
    );
    assert!(
        requests[0].contains("user_id=%40_echo_x%3Afake.test"),
        "identity asserted: {}",
        requests[0]
    );
    assert_eq!(
        metrics
            .client
            .retries
            .with_label_values(&["message::send_message_event", "rate_limited"])
            .get(),
        2
    );
}

#[tokio::test]
async fn sends_can_set_the_timestamp_and_the_device() {
    let hs = FakeHomeserver::start(vec![]).await;
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(0)).await;
    let room = OwnedRoomId::try_from("!room:fake.test").expect("room id");
    let puppet = OwnedUserId::try_from("@_echo_x:fake.test").expect("user id");
    let device = switchboard_runtime::ruma::OwnedDeviceId::from("PUPPETDEVICE");
    let identity = Identity {
        device_id: Some(&device),
        ..Identity::user(&puppet)
    };
    let ts = switchboard_runtime::ruma::MilliSecondsSinceUnixEpoch(
        1_700_000_000_000_u64.try_into().expect("ts"),
    );
    client
        .send_message(
            &room,
            derive_txn_id(&["ts"]),
            &RoomMessageEventContent::text_plain("late"),
            identity,
            Some(ts),
        )
        .await
        .expect("sent");
    let request = &hs.requests()[0];
    assert!(request.contains("ts=1700000000000"), "{request}");
    assert!(request.contains("device_id=PUPPETDEVICE"), "{request}");
    assert!(
        request.contains("user_id=%40_echo_x%3Afake.test"),
        "{request}"
    );
}

#[tokio::test]
async fn server_errors_back_off_then_give_up_with_a_clear_error() {
    let hs = FakeHomeserver::start(vec![
        answer(500, r#"{"errcode":"M_UNKNOWN","error":"boom"}"#);
        10
    ])
    .await;
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(3)).await;
    let err = send_ping(&client, "b").await.expect_err("gives up");
    assert_eq!(hs.requests().len(), 4, "one try and three retries");
    let text = err.to_string();
    assert!(
        text.contains("gave up after 4 attempts") && text.contains("500") && text.contains("boom"),
        "{text}"
    );
    assert!(
        err.is_transient(),
        "the inbox keeps the event and retries later"
    );
}

#[tokio::test]
async fn a_hanging_homeserver_times_out_and_is_retried() {
    let mut hang = answer(200, r#"{"event_id":"$late"}"#);
    hang.delay = Duration::from_secs(3);
    let hs = FakeHomeserver::start(vec![hang]).await;
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(2)).await;
    assert_eq!(
        send_ping(&client, "c").await.expect("second try answers"),
        "$ok"
    );
    assert_eq!(hs.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let hs = FakeHomeserver::start(vec![answer(
        403,
        r#"{"errcode":"M_FORBIDDEN","error":"not in room"}"#,
    )])
    .await;
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(5)).await;
    let err = send_ping(&client, "d").await.expect_err("refused");
    assert_eq!(hs.requests().len(), 1);
    assert!(!err.is_transient());
    assert_eq!(err.errcode(), Some("M_FORBIDDEN"));
}

async fn run_binary_against(slot: &Slot) -> (i32, String) {
    let out = tokio::time::timeout(
        Duration::from_mins(1),
        tokio::process::Command::new(BINARY)
            .args(["run", "-c"])
            .arg(&slot.config_path)
            .output(),
    )
    .await
    .expect("exits on its own")
    .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn no_homeserver_at_start_up_is_a_plain_language_error() {
    let slot = Slot::new("nohs").expect("slot");
    slot.point_at(&format!(
        "http://127.0.0.1:{}",
        crate::common::free_port().expect("port")
    ))
    .expect("config");
    let (code, stderr) = run_binary_against(&slot).await;
    assert_eq!(code, 10, "{stderr}");
    assert!(
        stderr.contains("cannot reach the homeserver") && stderr.contains("fix:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&slot.registration.as_token),
        "the token never reaches a log"
    );
}

#[tokio::test]
async fn a_refused_as_token_is_a_plain_language_error() {
    let hs = FakeHomeserver::start(vec![
        answer(200, r#"{"versions":["v1.11"]}"#),
        answer(
            401,
            r#"{"errcode":"M_UNKNOWN_TOKEN","error":"Unrecognised access token"}"#,
        ),
    ])
    .await;
    let slot = Slot::new("badtoken").expect("slot");
    slot.point_at(&hs.url).expect("config");
    let (code, stderr) = run_binary_against(&slot).await;
    assert_eq!(code, 11, "{stderr}");
    assert!(
        stderr.contains("does not accept Switchboard's as_token")
            && stderr.contains("app_service_config_files"),
        "{stderr}"
    );
}

#[tokio::test]
async fn invalid_config_names_the_field_the_value_and_what_is_expected() {
    let slot = Slot::new("badconfig").expect("slot");
    let text = std::fs::read_to_string(&slot.config_path).expect("config");
    std::fs::write(
        &slot.config_path,
        text.replace("initial_backoff_ms: 100", "initial_backoff_ms: soon"),
    )
    .expect("write");
    let (code, stderr) = run_binary_against(&slot).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("client.initial_backoff_ms") && stderr.contains("soon"),
        "{stderr}"
    );
}
