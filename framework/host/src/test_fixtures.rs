//! What the host's unit tests share: a store in a temporary directory and numbered sample
//! rows of the message map.

use crate::store::{MessageRecord, SqliteSync, Store};
use switchboard_api::ids::{PortalKey, RemoteMessageId};

/// A fresh SQLite store in `dir`.
pub(crate) async fn temp_store(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    Store::connect(&url, 2, SqliteSync::Normal)
        .await
        .expect("store")
}

/// Message `n` of one chat: remote id `m<n>`, event `$e<n>`.
pub(crate) fn sample_record(n: u32) -> MessageRecord {
    MessageRecord {
        portal: PortalKey::shared("chat"),
        remote_message_id: RemoteMessageId(format!("m{n}")),
        part: String::new(),
        room_id: "!r:x".into(),
        event_id: format!("$e{n}"),
    }
}
