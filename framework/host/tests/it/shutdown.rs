//! Shutdown: the tasks the host and its plug-ins started are waited for before the database
//! may close.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::harness::Harness;

#[tokio::test]
async fn shutdown_waits_for_the_outbox_worker_and_the_bridges_own_tasks() {
    let h = Harness::start().await;
    // Something waits in the outbox, so the worker is busy retrying it.
    h.bridge.network.set_reachable(false);
    h.alice_says("$m1", "one").await.expect("queued");
    assert!(!h.tasks.is_empty(), "the worker and the bridge's task run");

    h.shutdown.cancel();
    h.tasks.close();
    tokio::time::timeout(Duration::from_secs(5), h.tasks.wait())
        .await
        .expect("every task ends after shutdown");
    assert!(
        h.bridge.farewell_done.load(Ordering::SeqCst),
        "the bridge's task finished its work after shutdown fired, before the wait ended"
    );
    // The database is still usable (it closes after the wait), and nothing was lost.
    assert_eq!(h.outbox_depth().await, 1);
    h.store.close().await;
}
