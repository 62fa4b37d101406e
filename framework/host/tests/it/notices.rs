//! Outage notices: a network that stays down longer than the configured time gets one notice
//! in its portals, and one when it is back; a short drop gets none.

use std::time::Duration;

use switchboard_api::bridge::BridgeState;

use crate::harness::{Harness, OUTAGE_NOTICES_AFTER};

fn notices(h: &Harness) -> Vec<String> {
    h.homeserver
        .messages(&h.portal_room)
        .into_iter()
        .filter(|(sender, _)| sender == "@bot:mock.test")
        .map(|(_, body)| body)
        .collect()
}

#[tokio::test]
async fn a_long_outage_is_told_once_and_its_end_too_a_short_one_not_at_all() {
    let h = Harness::start().await;
    let ctx = h.bridge.ctx();

    // A drop shorter than the notice delay.
    ctx.set_state(BridgeState::TransientDisconnect("broker restarting".into()));
    tokio::time::sleep(OUTAGE_NOTICES_AFTER / 3).await;
    ctx.set_state(BridgeState::Connected);
    tokio::time::sleep(OUTAGE_NOTICES_AFTER * 2).await;
    assert_eq!(
        notices(&h),
        Vec::<String>::new(),
        "a short drop is not told"
    );

    // A long one, with reconnect attempts in between (they do not restart the clock).
    ctx.set_state(BridgeState::TransientDisconnect("broker gone".into()));
    for _ in 0..3 {
        tokio::time::sleep(OUTAGE_NOTICES_AFTER / 2).await;
        ctx.set_state(BridgeState::Connecting);
        ctx.set_state(BridgeState::TransientDisconnect("still gone".into()));
    }
    h.until("the outage is told", async |h| notices(h).len() == 1)
        .await;
    tokio::time::sleep(OUTAGE_NOTICES_AFTER * 2).await;
    let told = notices(&h);
    assert_eq!(told.len(), 1, "once per outage: {told:?}");
    assert!(
        told[0].starts_with("⚠️ Chat is unreachable since ") && told[0].contains(" UTC"),
        "{told:?}"
    );
    ctx.set_state(BridgeState::Connected);
    h.until("the end is told", async |h| notices(h).len() == 2)
        .await;
    assert!(
        notices(&h)[1].starts_with("✅ Chat is reachable again"),
        "{:?}",
        notices(&h)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(notices(&h).len(), 2, "nothing more");
}
