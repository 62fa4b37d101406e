//! Fault cases a real Synapse cannot be made to produce on demand (429 storms, 500s, hangs,
//! refused tokens), against `switchboard-testing`'s in-process mock homeserver, plus start-up
//! with no homeserver at all.

use std::time::{Duration, Instant};

use crate::common::switchboard_instance::{BINARY, Slot};
use serde_json::json;
use switchboard_runtime::client::{ClientError, HomeserverClient, Identity};
use switchboard_runtime::config::{ClientConfig, SqliteSync};
use switchboard_runtime::derive_txn_id;
use switchboard_runtime::metrics::Metrics;
use switchboard_runtime::ruma::events::room::message::RoomMessageEventContent;
use switchboard_runtime::ruma::{OwnedRoomId, OwnedUserId};
use switchboard_runtime::store::Store;
use switchboard_testing::{Fault, MockHomeserver};

/// A homeserver named `fake.test` with one room, where the puppet `@_echo_x:fake.test` is.
async fn homeserver() -> (MockHomeserver, OwnedRoomId) {
    let hs = MockHomeserver::start("fake.test", "bot")
        .await
        .expect("the mock homeserver starts");
    let room = OwnedRoomId::try_from(hs.add_room(&[PUPPET])).expect("room id");
    (hs, room)
}

const PUPPET: &str = "@_echo_x:fake.test";

async fn client_for(
    hs: &MockHomeserver,
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
        hs.url(),
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

async fn send_ping(
    client: &HomeserverClient,
    room: &OwnedRoomId,
    txn: &str,
) -> Result<String, ClientError> {
    let content = RoomMessageEventContent::text_plain("pong");
    let puppet = OwnedUserId::try_from(PUPPET).expect("user id");
    client
        .send_message(
            room,
            derive_txn_id(&[txn]),
            &content,
            Identity::user(&puppet),
            None,
        )
        .await
        .map(|id| id.to_string())
}

/// The `pong`s the room holds: their event ids.
fn pongs(hs: &MockHomeserver, room: &OwnedRoomId) -> Vec<String> {
    hs.events(room.as_str())
        .into_iter()
        .filter(|e| e.event_type == "m.room.message" && e.content["body"] == "pong")
        .map(|e| e.event_id)
        .collect()
}

#[tokio::test]
async fn rate_limits_are_honoured_from_the_body_and_the_header() {
    let (hs, room) = homeserver().await;
    hs.inject(Fault::put("/send/").rate_limited(400));
    hs.inject(
        Fault::put("/send/")
            .answer(429, json!({ "errcode": "M_LIMIT_EXCEEDED" }))
            .header("retry-after", "1"),
    );
    let (client, metrics, _dir) = client_for(&hs, fast_retries(5)).await;
    let started = Instant::now();
    let event_id = send_ping(&client, &room, "a")
        .await
        .expect("sent after the rate limits");
    assert_eq!(pongs(&hs, &room), [event_id], "sent once");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "waited {:?}",
        started.elapsed()
    );
    let requests: Vec<_> = hs
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/send/"))
        .collect();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r == &requests[0]),
        "every retry uses the same txn id: {requests:?}"
    );
    assert_eq!(
        requests[0].user_id.as_deref(),
        Some(PUPPET),
        "identity asserted"
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
    let (hs, room) = homeserver().await;
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(0)).await;
    let puppet = OwnedUserId::try_from(PUPPET).expect("user id");
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
    let request = hs
        .requests()
        .into_iter()
        .find(|r| r.path.contains("/send/"))
        .expect("a send");
    assert!(request.query.contains("ts=1700000000000"), "{request:?}");
    assert!(
        request.query.contains("device_id=PUPPETDEVICE"),
        "{request:?}"
    );
    assert_eq!(request.user_id.as_deref(), Some(PUPPET), "{request:?}");
}

#[tokio::test]
async fn server_errors_back_off_then_give_up_with_a_clear_error() {
    let (hs, room) = homeserver().await;
    hs.inject(
        Fault::put("/send/")
            .answer(500, json!({ "errcode": "M_UNKNOWN", "error": "boom" }))
            .times(10),
    );
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(3)).await;
    let err = send_ping(&client, &room, "b").await.expect_err("gives up");
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
    assert!(pongs(&hs, &room).is_empty());
}

#[tokio::test]
async fn a_hanging_homeserver_times_out_and_is_retried() {
    let (hs, room) = homeserver().await;
    hs.inject(
        Fault::put("/send/")
            .answer(200, json!({ "event_id": "$late" }))
            .delayed(Duration::from_secs(3)),
    );
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(2)).await;
    let event_id = send_ping(&client, &room, "c")
        .await
        .expect("second try answers");
    assert_eq!(pongs(&hs, &room), [event_id]);
    assert_eq!(hs.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (hs, room) = homeserver().await;
    hs.inject(Fault::put("/send/").answer(
        403,
        json!({ "errcode": "M_FORBIDDEN", "error": "not in room" }),
    ));
    let (client, _metrics, _dir) = client_for(&hs, fast_retries(5)).await;
    let err = send_ping(&client, &room, "d").await.expect_err("refused");
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
    let hs = MockHomeserver::start("fake.test", "bot")
        .await
        .expect("the mock homeserver starts");
    hs.inject(Fault::any("/account/whoami").answer(
        401,
        json!({ "errcode": "M_UNKNOWN_TOKEN", "error": "Unrecognised access token" }),
    ));
    let slot = Slot::new("badtoken").expect("slot");
    slot.point_at(hs.url()).expect("config");
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
