//! The outbox: what the network or the homeserver cannot take now waits, in order, and
//! arrives once.

use serde_json::json;
use switchboard_client::ClientConfig;
use switchboard_testing::Fault;

use crate::harness::Harness;

const ALICE: &str = "@alice:mock.test";

fn said(texts: &[&str]) -> Vec<(String, String)> {
    texts
        .iter()
        .map(|t| (ALICE.to_owned(), (*t).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_file_the_homeserver_answers_500_then_429_for_arrives_once_after_the_clients_retries() {
    let h = Harness::start_with(ClientConfig {
        max_retries: 3,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        request_timeout_secs: 5,
        ..ClientConfig::default()
    })
    .await;
    let mxc = h.homeserver.add_media(b"meow", "image/png");
    h.homeserver
        .inject(Fault::get("/media/download/").answer(500, json!({ "errcode": "M_UNKNOWN" })));
    h.homeserver
        .inject(Fault::get("/media/download/").rate_limited(10));

    let image = json!({ "msgtype": "m.image", "body": "cat.png", "url": mxc });
    h.alice_sends("$cat", image.clone())
        .await
        .expect("delivered");
    assert_eq!(h.network_received(), said(&["[cat.png: meow]"]));
    assert_eq!(h.outbox_depth().await, 0, "nothing waited");
    // Handing the event again (a redelivered transaction) sends nothing twice.
    h.alice_sends("$cat", image).await.expect("handled");
    assert_eq!(h.network_received(), said(&["[cat.png: meow]"]));
}

#[tokio::test]
async fn a_file_that_cannot_be_fetched_is_told_and_the_next_message_goes_on() {
    let h = Harness::start().await;
    let mxc = h.homeserver.add_media(b"meow", "image/png");
    h.homeserver.inject(
        Fault::get("/media/download/")
            .answer(502, json!({ "errcode": "M_UNKNOWN" }))
            .times(5),
    );
    let image = json!({ "msgtype": "m.image", "body": "cat.png", "url": mxc });
    let outcome = h.alice_sends("$cat", image).await;
    assert!(
        matches!(
            outcome,
            Err(switchboard_appservice::inbox::HandleError::Permanent(_))
        ),
        "given up: {outcome:?}"
    );
    let told: Vec<String> = h
        .homeserver
        .messages(&h.portal_room)
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        told,
        [
            "⚠️ Not delivered to Chat: the file could not be fetched from the homeserver (it answered 502)"
        ]
    );
    h.alice_says("$next", "after the file")
        .await
        .expect("delivered");
    assert_eq!(h.network_received(), said(&["after the file"]));
    assert_eq!(h.outbox_depth().await, 0, "the portal does not wait");
}

#[tokio::test]
async fn events_of_a_waiting_portal_queue_behind_the_first_and_arrive_in_order_once() {
    let h = Harness::start().await;
    h.bridge.network.set_reachable(false);
    h.alice_says("$m1", "one").await.expect("queued");
    h.alice_says("$m2", "two").await.expect("queued");
    // A transaction delivered twice while the portal waits is queued once.
    h.alice_says("$m2", "two").await.expect("queued once");
    assert_eq!(h.outbox_depth().await, 2);

    // The network is back, but the worker has not run yet: a live message still queues
    // behind the waiting ones rather than overtaking them.
    h.bridge.network.set_reachable(true);
    h.alice_says("$m3", "three").await.expect("queued");
    assert!(
        h.network_received().is_empty(),
        "nothing overtook the queue"
    );
    assert_eq!(h.outbox_depth().await, 3);

    h.bridge.ctx().network_restored();
    h.until("the outbox is empty", async |h| h.outbox_depth().await == 0)
        .await;
    assert_eq!(h.network_received(), said(&["one", "two", "three"]));

    // With the queue empty, a new message goes straight through.
    h.alice_says("$m4", "four").await.expect("delivered");
    assert_eq!(h.network_received(), said(&["one", "two", "three", "four"]));
}

#[tokio::test]
async fn a_network_file_above_the_homeservers_upload_limit_is_refused() {
    use switchboard_api::ids::{PortalKey, RemoteMessageId, RemoteUserId};
    use switchboard_api::remote::{MediaKind, PuppetProfile, RemoteMedia};
    let h = Harness::start_on(
        ClientConfig {
            max_retries: 0,
            ..ClientConfig::default()
        },
        8,
    )
    .await;
    let file = |id: &str, data: &'static [u8]| RemoteMedia {
        id: RemoteMessageId(id.into()),
        part: String::new(),
        sender: RemoteUserId("bob".into()),
        sender_profile: PuppetProfile::default(),
        kind: MediaKind::File,
        filename: "notes.txt".into(),
        mimetype: "text/plain".into(),
        data: data.into(),
        sent_at_ms: None,
    };
    let matrix = h.bridge.ctx().matrix();
    let lobby = PortalKey::shared("lobby");
    let files_before = h.homeserver.media_count();
    let refused = matrix
        .bridge_media(&lobby, &file("big", b"twelve bytes"))
        .await;
    assert!(refused.is_err(), "12 bytes over an 8-byte m.upload.size");
    matrix
        .bridge_media(&lobby, &file("small", b"eight b."))
        .await
        .expect("8 bytes are within it");
    assert_eq!(
        h.homeserver.media_count(),
        files_before + 1,
        "the refused file was not uploaded"
    );
}
