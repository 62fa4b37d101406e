//! The outbox: what the network or the homeserver cannot take now waits, in order, and
//! arrives once.

use serde_json::json;
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
async fn a_file_the_homeserver_refuses_with_500_then_429_waits_in_the_outbox_and_arrives_once() {
    let h = Harness::start().await;
    let mxc = h.homeserver.add_media(b"meow", "image/png");
    h.homeserver
        .inject(Fault::get("/media/download/").answer(500, json!({ "errcode": "M_UNKNOWN" })));
    h.homeserver
        .inject(Fault::get("/media/download/").rate_limited(10));

    let image = json!({ "msgtype": "m.image", "body": "cat.png", "url": mxc });
    h.alice_sends("$cat", image)
        .await
        .expect("queued, not failed");
    assert_eq!(h.outbox_depth().await, 1, "the file waits in the outbox");
    assert!(h.network_received().is_empty());

    // The worker retries when the network is said to be back (instead of after the backoff):
    // the next download gets the 429, the one after it the file.
    h.bridge.ctx().network_restored();
    h.until("the 429 was answered", async |h| {
        h.homeserver
            .requests()
            .iter()
            .filter(|r| r.path.contains("/media/download/"))
            .count()
            >= 2
    })
    .await;
    h.until("the outbox recorded the second attempt", async |h| {
        h.store
            .outbox_head("chat", &switchboard_api::ids::PortalKey::shared("lobby"))
            .await
            .expect("outbox")
            .is_some_and(|entry| entry.attempts >= 2)
    })
    .await;
    assert!(h.network_received().is_empty(), "nothing arrived yet");
    h.bridge.ctx().network_restored();
    h.until("the outbox is empty", async |h| h.outbox_depth().await == 0)
        .await;

    assert_eq!(h.network_received(), said(&["[cat.png: meow]"]));
    // Handing the event again (a redelivered transaction) sends nothing twice.
    let image = json!({ "msgtype": "m.image", "body": "cat.png", "url": mxc });
    h.alice_sends("$cat", image).await.expect("handled");
    assert_eq!(h.network_received(), said(&["[cat.png: meow]"]));
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
