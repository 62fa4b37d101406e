//! What goes over the wire follows the 2026 spec: the client authenticates with the
//! `Authorization` header only (MSC4127 removes query-string tokens), and every message says
//! whom it mentions (spec v1.17 removed body-only mentions).

use serde_json::json;
use switchboard_api::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use switchboard_api::remote::{PuppetProfile, RemoteText};

use crate::harness::{AS_TOKEN, BUG, CHAT, Harness};

#[tokio::test]
async fn requests_carry_the_token_in_the_header_and_messages_carry_mentions() {
    let h = Harness::start().await;
    let matrix = h.bridge.ctx().matrix();
    let lobby = PortalKey::shared(CHAT);
    let bob = RemoteUserId("bob".into());
    let profile = PuppetProfile {
        displayname: Some("Bob".into()),
        ..PuppetProfile::default()
    };
    let plain = RemoteText::text(
        RemoteMessageId("m1".into()),
        bob.clone(),
        profile.clone(),
        "hi",
    );
    matrix.bridge_text(&lobby, &plain).await.expect("bridged");
    let mut mention = RemoteText::text(
        RemoteMessageId("m2".into()),
        bob.clone(),
        profile.clone(),
        "carol!",
    );
    mention.mentions = vec![RemoteUserId("carol".into())];
    matrix.bridge_text(&lobby, &mention).await.expect("bridged");
    let mut edit = RemoteText::text(RemoteMessageId("m3".into()), bob, profile, "carol!!");
    edit.mentions = vec![RemoteUserId("carol".into())];
    matrix
        .bridge_edit(&lobby, &RemoteMessageId("m2".into()), &edit)
        .await
        .expect("edited");
    // A notice from the bridge bot (the sender is told a message was not delivered).
    let _ = h.alice_says("$bug", BUG).await;
    h.alice_sends("$img", json!({ "msgtype": "m.image", "body": "x.png", "url": h.homeserver.add_media(b"x", "image/png") }))
        .await
        .expect("delivered");

    let requests = h.homeserver.requests();
    assert!(requests.len() > 10, "a fair sample: {}", requests.len());
    for request in &requests {
        assert!(
            !request.query.contains("access_token"),
            "a token in the query of {} {}",
            request.method,
            request.path
        );
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {AS_TOKEN}").as_str()),
            "{} {}",
            request.method,
            request.path
        );
    }
    let messages: Vec<_> = h
        .homeserver
        .events(&h.portal_room)
        .into_iter()
        .filter(|e| e.event_type == "m.room.message")
        .collect();
    assert_eq!(
        messages.len(),
        4,
        "hi, the mention, its edit and the notice: {messages:?}"
    );
    for message in &messages {
        assert!(message.content["m.mentions"].is_object(), "{message:?}");
    }
    let carol = &messages[1].content["m.mentions"]["user_ids"];
    assert_eq!(carol.as_array().map(Vec::len), Some(1), "{carol}");
    let edited = &messages[2].content;
    assert_eq!(
        edited["m.mentions"],
        json!({}),
        "an edit notifies no one again"
    );
    assert_eq!(edited["m.new_content"]["m.mentions"]["user_ids"], *carol);
}
