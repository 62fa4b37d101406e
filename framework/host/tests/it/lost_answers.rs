//! Requests that create something are not repeated blindly: when the answer to a `createRoom`
//! is lost, the room it made is found and used, and no second room is created.

use switchboard_api::ids::PortalKey;
use switchboard_client::ClientConfig;
use switchboard_testing::Fault;

use crate::harness::Harness;

/// A harness whose client retries (quickly) as in production.
async fn retrying() -> Harness {
    Harness::start_with(ClientConfig {
        max_retries: 3,
        initial_backoff_ms: 10,
        max_backoff_ms: 50,
        request_timeout_secs: 5,
        ..ClientConfig::default()
    })
    .await
}

fn create_room_requests(h: &Harness) -> usize {
    h.homeserver
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/createRoom"))
        .count()
}

#[tokio::test]
async fn a_portal_room_whose_creation_answer_was_lost_is_found_not_made_twice() {
    let h = retrying().await;
    let rooms_before = h.homeserver.rooms().len();
    let creates_before = create_room_requests(&h);
    h.homeserver
        .inject(Fault::post("/createRoom").after_applying());

    let room = h
        .bridge
        .ctx()
        .matrix()
        .ensure_portal(&PortalKey::shared("kitchen"))
        .await
        .expect("the portal has its room");

    let rooms = h.homeserver.rooms();
    assert_eq!(rooms.len(), rooms_before + 1, "exactly one room was made");
    assert_eq!(rooms.last().map(String::as_str), Some(room.as_str()));
    assert_eq!(
        create_room_requests(&h) - creates_before,
        1,
        "the 500 after the room was made was not retried blindly"
    );
    let again = h
        .bridge
        .ctx()
        .matrix()
        .ensure_portal(&PortalKey::shared("kitchen"))
        .await
        .expect("known");
    assert_eq!(again, room);
}

#[tokio::test]
async fn a_lost_creation_is_found_by_the_next_attempt_even_when_the_lookup_failed() {
    let h = Harness::start().await;
    let rooms_before = h.homeserver.rooms().len();
    h.homeserver
        .inject(Fault::post("/createRoom").after_applying());
    h.homeserver.inject(Fault::get("/joined_rooms"));
    let kitchen = PortalKey::shared("kitchen");
    let matrix = h.bridge.ctx().matrix();

    let failed = matrix.ensure_portal(&kitchen).await;
    assert!(failed.is_err(), "neither the answer nor the lookup came");
    let room = matrix
        .ensure_portal(&kitchen)
        .await
        .expect("the second attempt finds the room");

    assert_eq!(
        h.homeserver.rooms().len(),
        rooms_before + 1,
        "one room, not two"
    );
    assert_eq!(
        h.homeserver.rooms().last().map(String::as_str),
        Some(room.as_str())
    );
    // A creation that failed without being carried out is simply made again.
    h.homeserver
        .inject(Fault::post("/createRoom").rate_limited(1));
    let hall = matrix.ensure_portal(&PortalKey::shared("hall")).await;
    assert!(
        hall.is_err(),
        "the 429 reaches the caller (this client does not retry)"
    );
    let hall = matrix
        .ensure_portal(&PortalKey::shared("hall"))
        .await
        .expect("made on the next attempt");
    assert_eq!(h.homeserver.rooms().len(), rooms_before + 2);
    assert_eq!(
        h.homeserver.rooms().last().map(String::as_str),
        Some(hall.as_str())
    );
}
