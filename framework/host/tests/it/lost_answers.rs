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

#[tokio::test]
async fn an_upload_whose_answer_was_lost_is_not_made_twice_and_a_file_sent_again_reuses_it() {
    let h = retrying().await;
    let matrix = h.bridge.ctx().matrix();
    let file: switchboard_api::FileData = b"a picture of a cat".to_vec().into();
    let files_before = h.homeserver.media_count();
    h.homeserver
        .inject(Fault::put("/media/v3/upload/").after_applying());

    let mxc = matrix
        .upload(&file, "image/png", "cat.png")
        .await
        .expect("uploaded");
    assert_eq!(
        h.homeserver.media_count(),
        files_before + 1,
        "the file is stored once"
    );
    let again = matrix
        .upload(&file, "image/png", "cat.png")
        .await
        .expect("the same file");
    assert_eq!(
        again, mxc,
        "the same file (content, type, name) reuses its URI"
    );
    let other = matrix
        .upload(&b"another picture".to_vec().into(), "image/png", "dog.png")
        .await
        .expect("another file");
    assert_ne!(other, mxc);
    let requests = h.homeserver.requests();
    let reserved = requests
        .iter()
        .filter(|r| r.path == "/_matrix/media/v1/create")
        .count();
    assert_eq!(reserved, 2, "one reservation per distinct file");
    assert_eq!(h.homeserver.media_count(), files_before + 2);
}

#[tokio::test]
async fn an_upload_that_failed_after_its_reservation_resumes_to_the_same_uri() {
    let h = Harness::start().await;
    let matrix = h.bridge.ctx().matrix();
    let file: switchboard_api::FileData = b"minutes of the meeting".to_vec().into();
    h.homeserver.inject(Fault::put("/media/v3/upload/"));
    assert!(
        matrix
            .upload(&file, "text/plain", "minutes.txt")
            .await
            .is_err(),
        "the 500 reaches the caller (this client does not retry)"
    );
    let mxc = matrix
        .upload(&file, "text/plain", "minutes.txt")
        .await
        .expect("resumed");
    let reservations = h
        .homeserver
        .requests()
        .iter()
        .filter(|r| r.path == "/_matrix/media/v1/create")
        .count();
    assert_eq!(
        reservations, 1,
        "the second attempt used the first reservation"
    );
    assert!(mxc.starts_with("mxc://mock.test/"));
}
