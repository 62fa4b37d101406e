//! The store conformance suite against a real, private PostgreSQL (the SQLite run is a unit
//! test in the framework).

use crate::common::postgres::Postgres;
use switchboard_runtime::config::SqliteSync;
use switchboard_runtime::store::{Store, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let pg = Postgres::start().await.expect("private PostgreSQL starts");
    let url = pg
        .create_database("conformance")
        .await
        .expect("database created");
    let store = Store::connect(&url, 4, SqliteSync::Normal)
        .await
        .expect("connect + migrate");
    assert_eq!(store.backend(), "postgres");
    conformance::run_all(&store).await;
    store.close().await;
    let reopened = Store::connect(&url, 4, SqliteSync::Normal)
        .await
        .expect("reconnect runs migrations idempotently");
    assert_eq!(reopened.inbox_failed_count().await.expect("count"), 1);
    reopened.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_keeps_unhandled_events() {
    let pg = Postgres::start().await.expect("private PostgreSQL starts");
    let url = pg
        .create_database("upgrade")
        .await
        .expect("database created");
    conformance::upgrade_keeps_unhandled_events(&url).await;
}
