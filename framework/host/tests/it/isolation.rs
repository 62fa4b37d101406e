//! Panic isolation: a bridge that panics on one Matrix event costs that event — the sender is
//! told, the panic is counted, and the portal's next event is delivered.

use crate::harness::{BUG, Harness};

#[tokio::test]
async fn a_bridge_that_panics_on_a_message_loses_only_that_message() {
    let h = Harness::start().await;

    let outcome = h.alice_says("$bug", BUG).await;
    let Err(switchboard_appservice::inbox::HandleError::Permanent(why)) = outcome else {
        panic!("the event is given up, got {outcome:?}");
    };
    assert!(why.contains("chat failed on this event"), "{why}");
    let told = h.homeserver.messages(&h.portal_room);
    assert!(
        told.iter().any(|(sender, body)| sender == "@bot:mock.test"
            && body.contains("Not delivered to Chat")
            && body.contains("panicked")),
        "the sender is told, as for any message the bridge refused: {told:?}"
    );
    assert_eq!(
        h.metrics.handler_panics.with_label_values(&["chat"]).get(),
        3,
        "tried three times"
    );

    h.alice_says("$after", "still here")
        .await
        .expect("delivered");
    assert_eq!(
        h.network_received(),
        [("@alice:mock.test".to_owned(), "still here".to_owned())]
    );
    assert_eq!(
        h.outbox_depth().await,
        0,
        "nothing waits behind the bad event"
    );
}
