//! The store conformance suite: every backend must pass it. Each function takes a freshly
//! migrated, empty store.

use super::{
    CryptoItem, CryptoWrite, GroupWrite, Intent, ManagedUser, MessageRecord, NewInboxEvent, Store,
};
use switchboard_api::ids::{PortalKey, RemoteMessageId};

/// Inserts with the next free sequence numbers, as the inbox does; returns the first one,
/// or `None` for a repeated transaction.
async fn insert(store: &Store, txn_key: &str, at: i64, events: &[NewInboxEvent]) -> Option<i64> {
    let first = store.inbox_max_seq().await.expect("max seq") + 1;
    store
        .inbox_insert(txn_key, at, first, events)
        .await
        .expect("insert")
        .then_some(first)
}

fn event(room: Option<&str>, body: &str) -> NewInboxEvent {
    NewInboxEvent {
        kind: "pdu".into(),
        event_id: None,
        room_id: room.map(str::to_owned),
        body: body.into(),
    }
}

fn with_id(id: &str) -> NewInboxEvent {
    NewInboxEvent {
        event_id: Some(id.to_owned()),
        ..event(Some("!s:x"), "{}")
    }
}

/// Runs every check below.
pub async fn run_all(store: &Store) {
    duplicate_txn_is_stored_once(store).await;
    recent_event_ids_come_back_newest_first(store).await;
    pending_events_come_back_in_arrival_order_until_done(store).await;
    failed_events_leave_the_inbox_but_are_kept(store).await;
    old_txn_ids_are_pruned(store).await;
    managed_users_and_memberships_round_trip(store).await;
    portals_round_trip(store).await;
    puppets_and_the_message_map_round_trip(store).await;
    outbox_keeps_order_per_portal_until_removed(store).await;
    logins_and_relays_round_trip(store).await;
    bot_data_and_the_audit_log_round_trip(store).await;
    puppets_are_listed(store).await;
    intents_are_resumed_until_ended(store).await;
    portal_logins_are_kept_per_user(store).await;
    the_heartbeat_keeps_the_latest_time(store).await;
    uploads_are_kept_by_content(store).await;
    a_group_of_writes_is_stored_in_order(store).await;
    crypto_items_are_written_in_groups_per_owner(store).await;
}

/// A device's encryption items: put, replaced, deleted one by one or by key prefix, all in
/// one group and in order; another owner's items are untouched.
pub async fn crypto_items_are_written_in_groups_per_owner(store: &Store) {
    let put = |kind: &str, key: &str, value: &[u8]| {
        CryptoWrite::Put(CryptoItem {
            kind: kind.into(),
            key: key.into(),
            value: value.to_vec(),
        })
    };
    let owner = "@bot:x|DEV";
    store
        .write_crypto(
            owner,
            &[
                put("account", "", b"a1"),
                put("session", "k1|s1", b"one"),
                put("session", "k1|s2", b"two"),
                put("session", "k2|s3", b"three"),
                put("account", "", b"a2"),
            ],
        )
        .await
        .expect("first group");
    store
        .write_crypto("@other:x|D2", &[put("session", "k1|s1", b"theirs")])
        .await
        .expect("other owner");
    store
        .write_crypto(
            owner,
            &[
                CryptoWrite::DeletePrefix {
                    kind: "session".into(),
                    prefix: "k1|".into(),
                },
                put("session", "k1|s4", b"four"),
                CryptoWrite::Delete {
                    kind: "account".into(),
                    key: String::new(),
                },
            ],
        )
        .await
        .expect("second group");
    let mut items = store.crypto_items(owner).await.expect("items");
    items.sort_by(|a, b| a.key.cmp(&b.key));
    let found: Vec<(&str, &str, &[u8])> = items
        .iter()
        .map(|i| (i.kind.as_str(), i.key.as_str(), i.value.as_slice()))
        .collect();
    assert_eq!(
        found,
        [
            ("session", "k1|s4", &b"four"[..]),
            ("session", "k2|s3", &b"three"[..])
        ]
    );
    let theirs = store.crypto_items("@other:x|D2").await.expect("theirs");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].value, b"theirs");
}

/// A group of writes lands in order: messages (a repeat changes nothing), a forgotten
/// event, data whose last write wins; a group written twice changes nothing more.
pub async fn a_group_of_writes_is_stored_in_order(store: &Store) {
    let record = |n: u32| MessageRecord {
        portal: PortalKey::shared("chat"),
        remote_message_id: RemoteMessageId(format!("m{n}")),
        part: String::new(),
        room_id: "!r:x".into(),
        event_id: format!("$e{n}"),
    };
    let message = |n: u32| GroupWrite::Message {
        bridge: "g".into(),
        record: record(n),
    };
    let data = |json: &str| GroupWrite::Data {
        owner: "bridge:g".into(),
        key: "k".into(),
        json: json.into(),
    };
    let mut writes: Vec<GroupWrite> = (0..2500).map(message).collect();
    writes.push(message(7));
    writes.push(data("1"));
    writes.push(data("2"));
    writes.push(GroupWrite::ForgetEvent {
        event_id: "$e3".into(),
    });
    writes.push(data("3"));
    let before = store.message_count().await.expect("count");
    for _ in 0..2 {
        store.write_group(&writes).await.expect("group");
        assert_eq!(store.message_count().await.expect("count"), before + 2499);
        assert_eq!(
            store
                .bot_data("bridge:g", "k")
                .await
                .expect("data")
                .as_deref(),
            Some("3")
        );
    }
    let key = PortalKey::shared("chat");
    let (kept, forgotten) = (
        RemoteMessageId("m2499".into()),
        RemoteMessageId("m3".into()),
    );
    let event = |id| store.message_event("g", &key, id, "");
    assert_eq!(event(&kept).await.expect("read").as_deref(), Some("$e2499"));
    assert_eq!(event(&forgotten).await.expect("read"), None);
    let mut seen = 0;
    store
        .message_keys(|keys| {
            if keys.bridge == "g" && keys.chat == "chat" && keys.event_id.starts_with("$e") {
                seen += 1;
            }
        })
        .await
        .expect("keys");
    assert_eq!(seen, 2499);
    store
        .write_group(&[message(1)])
        .await
        .expect("one statement");
    // An event forgotten, then its message recorded again for another event: in that order.
    let again = GroupWrite::Message {
        bridge: "g".into(),
        record: MessageRecord {
            event_id: "$again5".into(),
            ..record(5)
        },
    };
    store
        .write_group(&[
            GroupWrite::ForgetEvent {
                event_id: "$e5".into(),
            },
            again,
        ])
        .await
        .expect("forget, then record");
    let (five, big) = (
        RemoteMessageId("m5".into()),
        RemoteMessageId("m9000".into()),
    );
    assert_eq!(
        event(&five).await.expect("read").as_deref(),
        Some("$again5")
    );
    // A portal forgotten after a message was recorded in the same group: none is left.
    store
        .write_group(&[
            message(9000),
            GroupWrite::ForgetPortal {
                bridge: "g".into(),
                key: key.clone(),
            },
        ])
        .await
        .expect("record, then forget the portal");
    assert_eq!(event(&big).await.expect("read"), None);
    assert_eq!(event(&kept).await.expect("read"), None);
    store.delete_portal("g", &key).await.expect("clean up");
}

/// An upload is recorded reserved, then uploaded, by its content key.
pub async fn uploads_are_kept_by_content(store: &Store) {
    assert_eq!(store.media_upload("k").await.expect("read"), None);
    store
        .put_media_upload("k", "mxc://hs/a", false, 1)
        .await
        .expect("reserve");
    assert_eq!(
        store.media_upload("k").await.expect("read"),
        Some(("mxc://hs/a".to_owned(), false))
    );
    store
        .put_media_upload("k", "mxc://hs/a", true, 2)
        .await
        .expect("done");
    assert_eq!(
        store.media_upload("k").await.expect("read"),
        Some(("mxc://hs/a".to_owned(), true))
    );
}

/// The heartbeat keeps the time it was last given.
pub async fn the_heartbeat_keeps_the_latest_time(store: &Store) {
    assert_eq!(store.last_beat().await.expect("read"), None);
    store.beat(1_000).await.expect("beat");
    store.beat(31_000).await.expect("beat");
    assert_eq!(store.last_beat().await.expect("read"), Some(31_000));
}

/// The login a user's messages in a portal go through is kept per portal and user.
pub async fn portal_logins_are_kept_per_user(store: &Store) {
    use switchboard_api::ids::{PortalKey, RemoteUserId};
    let lobby = PortalKey::shared("lobby");
    let dm = PortalKey {
        receiver: Some(RemoteUserId("me".into())),
        ..PortalKey::shared("lobby")
    };
    assert_eq!(
        store.portal_login("b", &lobby, "@a:x").await.expect("read"),
        None
    );
    store
        .put_portal_login("b", &lobby, "@a:x", "one")
        .await
        .expect("put");
    store
        .put_portal_login("b", &lobby, "@a:x", "two")
        .await
        .expect("replace");
    store
        .put_portal_login("b", &dm, "@a:x", "three")
        .await
        .expect("put");
    assert_eq!(
        store
            .portal_login("b", &lobby, "@a:x")
            .await
            .expect("read")
            .as_deref(),
        Some("two")
    );
    assert_eq!(
        store
            .portal_login("b", &dm, "@a:x")
            .await
            .expect("read")
            .as_deref(),
        Some("three"),
        "a per-user portal of the same chat is another portal"
    );
    assert_eq!(
        store.portal_login("b", &lobby, "@z:x").await.expect("read"),
        None
    );
    assert_eq!(
        store.portal_login("c", &lobby, "@a:x").await.expect("read"),
        None
    );
}

/// An intent is recorded once: a second attempt gets the first one's nonce, marked resumed,
/// until the intent is ended.
pub async fn intents_are_resumed_until_ended(store: &Store) {
    let first = store
        .begin_intent("portal_room", "b\nchat", "n1", 1)
        .await
        .expect("begin");
    assert_eq!(
        first,
        Intent {
            nonce: "n1".into(),
            resumed: false
        }
    );
    let again = store
        .begin_intent("portal_room", "b\nchat", "n2", 2)
        .await
        .expect("begin again");
    assert_eq!(
        again,
        Intent {
            nonce: "n1".into(),
            resumed: true
        }
    );
    let other = store
        .begin_intent("upload", "b\nchat", "n3", 2)
        .await
        .expect("another scope");
    assert!(!other.resumed, "scopes are apart");
    store
        .end_intent("portal_room", "b\nchat")
        .await
        .expect("end");
    let fresh = store
        .begin_intent("portal_room", "b\nchat", "n4", 3)
        .await
        .expect("begin after the end");
    assert_eq!(
        fresh,
        Intent {
            nonce: "n4".into(),
            resumed: false
        }
    );
    store
        .end_intent("portal_room", "b\nchat")
        .await
        .expect("end");
    store.end_intent("upload", "b\nchat").await.expect("end");
}

/// Puppets are listed per bridge or all together, in order, limited.
pub async fn puppets_are_listed(store: &Store) {
    use switchboard_api::ids::RemoteUserId;
    for (bridge, remote) in [("lxmpp", "bob"), ("lxmpp", "alice"), ("lmqtt", "kitchen")] {
        let user = format!("@_{bridge}_{remote}:x");
        store
            .put_puppet(bridge, &RemoteUserId::from(remote), &user, "{}")
            .await
            .expect("puppet");
    }
    let xmpp = store.puppets(Some("lxmpp"), 10).await.expect("list");
    let remotes: Vec<&str> = xmpp.iter().map(|(_, r, _)| r.as_str()).collect();
    assert_eq!(remotes, ["alice", "bob"]);
    assert_eq!(
        store.puppets(Some("lxmpp"), 1).await.expect("list").len(),
        1
    );
    let all = store.puppets(None, 100).await.expect("list");
    assert!(all.contains(&("lmqtt".into(), "kitchen".into(), "@_lmqtt_kitchen:x".into())));
    assert!(all.len() >= 3);
}

/// A bot's data is replaced under its key and kept apart from other bots'; its audit log
/// comes back newest first, limited.
pub async fn bot_data_and_the_audit_log_round_trip(store: &Store) {
    use crate::AuditRecord;
    assert_eq!(store.bot_data("admin", "room").await.expect("read"), None);
    store
        .put_bot_data("admin", "room", r#""!a:x""#)
        .await
        .expect("put");
    store
        .put_bot_data("admin", "room", r#""!b:x""#)
        .await
        .expect("replace");
    store
        .put_bot_data("other", "room", r#""!c:x""#)
        .await
        .expect("put");
    assert_eq!(
        store
            .bot_data("admin", "room")
            .await
            .expect("read")
            .as_deref(),
        Some(r#""!b:x""#)
    );
    for n in 1..=3 {
        let record = AuditRecord {
            at_ms: n,
            sender: "@root:x".into(),
            room_id: "!b:x".into(),
            command: format!("users show {n}"),
            outcome: "ok".into(),
        };
        store.add_audit("admin", &record).await.expect("audit");
    }
    let log = store.audit_log("admin", 2).await.expect("log");
    let commands: Vec<&str> = log.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(commands, ["users show 3", "users show 2"]);
    assert!(store.audit_log("other", 5).await.expect("log").is_empty());
}

/// Logins are listed per user and bridge, move with their account, and leave a portal's
/// relay when deleted.
pub async fn logins_and_relays_round_trip(store: &Store) {
    use crate::{LoginRecord, PortalRecord};
    use switchboard_api::ids::PortalKey;
    let login = |id: &str, user: &str, at: i64| LoginRecord {
        login_id: id.into(),
        user_id: user.into(),
        remote_name: format!("{id} on the network"),
        data: "{}".into(),
        created_at: at,
    };
    store
        .put_login("xmpp", &login("b", "@u:x", 2))
        .await
        .expect("put");
    store
        .put_login("xmpp", &login("a", "@u:x", 1))
        .await
        .expect("put");
    store
        .put_login("mqtt", &login("c", "@u:x", 3))
        .await
        .expect("put");
    let ids = |logins: Vec<LoginRecord>| logins.into_iter().map(|l| l.login_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.logins_of("xmpp", "@u:x").await.expect("list")),
        ["a", "b"]
    );
    store
        .put_login("xmpp", &login("b", "@v:x", 9))
        .await
        .expect("moved");
    assert_eq!(
        ids(store.logins_of("xmpp", "@u:x").await.expect("list")),
        ["a"]
    );
    assert_eq!(ids(store.logins("xmpp").await.expect("all")), ["a", "b"]);
    let portal = PortalKey::shared("relayed");
    store
        .put_portal(
            "xmpp",
            &PortalRecord {
                key: portal.clone(),
                room_id: None,
                data: "{}".into(),
            },
        )
        .await
        .expect("portal");
    assert_eq!(
        store.portal_relay("xmpp", &portal).await.expect("relay"),
        None
    );
    store
        .set_portal_relay("xmpp", &portal, Some("a"))
        .await
        .expect("set");
    assert_eq!(
        store
            .portal_relay("xmpp", &portal)
            .await
            .expect("relay")
            .as_deref(),
        Some("a")
    );
    assert!(store.delete_login("xmpp", "a").await.expect("delete"));
    assert!(!store.delete_login("xmpp", "a").await.expect("again"));
    assert_eq!(store.login("xmpp", "a").await.expect("get"), None);
    assert_eq!(
        store.portal_relay("xmpp", &portal).await.expect("relay"),
        None
    );
    assert_eq!(
        store
            .login("xmpp", "b")
            .await
            .expect("get")
            .map(|l| l.user_id)
            .as_deref(),
        Some("@v:x")
    );
    store
        .put_management_room("!dm:x", "@u:x")
        .await
        .expect("management room");
    store
        .put_management_room("!dm:x", "@v:x")
        .await
        .expect("again");
    assert_eq!(
        store.management_rooms().await.expect("list"),
        [("!dm:x".to_owned(), "@v:x".to_owned())]
    );
}

/// Outbox entries come back oldest first per portal, are queued once, record failed
/// attempts and leave when removed.
pub async fn outbox_keeps_order_per_portal_until_removed(store: &Store) {
    use switchboard_api::ids::PortalKey;
    let a = PortalKey::shared("a");
    let b = PortalKey::shared("b");
    assert!(
        store
            .outbox_queue("xmpp", &a, "$1", "{1}", 10, 0, 10, "")
            .await
            .expect("push")
    );
    assert!(
        store
            .outbox_queue("xmpp", &b, "$2", "{2}", 11, 0, 11, "")
            .await
            .expect("push")
    );
    assert!(
        store
            .outbox_queue("xmpp", &a, "$3", "{3}", 12, 0, 12, "")
            .await
            .expect("push")
    );
    assert!(
        !store
            .outbox_queue("xmpp", &a, "$1", "{1}", 13, 0, 13, "")
            .await
            .expect("again")
    );
    let mut portals = store.outbox_portals("xmpp").await.expect("portals");
    portals.sort_by(|x, y| x.chat.as_str().cmp(y.chat.as_str()));
    assert_eq!(portals, vec![a.clone(), b.clone()]);
    assert!(store.outbox_portals("mqtt").await.expect("none").is_empty());
    assert_eq!(store.outbox_depth().await.expect("depth"), 3);
    assert_eq!(store.outbox_count("xmpp").await.expect("count"), 3);
    assert_eq!(store.outbox_count("mqtt").await.expect("count"), 0);
    let head = store
        .outbox_head("xmpp", &a)
        .await
        .expect("head")
        .expect("some");
    assert_eq!(
        (head.event_id.as_str(), head.attempts, head.next_attempt_at),
        ("$1", 0, 10)
    );
    store
        .outbox_retry_later(head.seq, 99, "down")
        .await
        .expect("retry");
    let again = store
        .outbox_head("xmpp", &a)
        .await
        .expect("head")
        .expect("some");
    assert_eq!((again.attempts, again.next_attempt_at), (1, 99));
    assert_eq!(again.last_error, "down");
    store.outbox_remove(head.seq).await.expect("remove");
    let next = store
        .outbox_head("xmpp", &a)
        .await
        .expect("head")
        .expect("some");
    assert_eq!(next.event_id, "$3");
    store.outbox_remove(next.seq).await.expect("remove");
    assert_eq!(store.outbox_head("xmpp", &a).await.expect("head"), None);
    assert_eq!(
        store.outbox_portals("xmpp").await.expect("portals"),
        vec![b]
    );
}

/// A repeated transaction key stores nothing.
pub async fn duplicate_txn_is_stored_once(store: &Store) {
    let events = vec![event(Some("!a:x"), "{\"n\":1}"), event(None, "{\"n\":2}")];
    let first = insert(store, "t1", 1000, &events).await.expect("new txn");
    assert_eq!(insert(store, "t1", 2000, &events).await, None);
    assert_eq!(store.inbox_depth().await.expect("depth"), 2);
    let pending = store.inbox_pending().await.expect("pending");
    assert_eq!(
        pending.iter().map(|r| (r.seq, r.batch)).collect::<Vec<_>>(),
        [(first, first), (first + 1, first)]
    );
    store.inbox_batches_done(&[first]).await.expect("done");
    assert_eq!(store.inbox_depth().await.expect("depth"), 0);
    assert_eq!(
        store.inbox_max_seq().await.expect("max"),
        first + 1,
        "sequence numbers are not reused after the events are handled"
    );
}

/// The ids of recent room events, handled or not, come back newest first.
pub async fn recent_event_ids_come_back_newest_first(store: &Store) {
    let first = insert(
        store,
        "r1",
        1000,
        &[with_id("$a"), event(None, "{}"), with_id("$b")],
    )
    .await
    .expect("new");
    store.inbox_batches_done(&[first]).await.expect("done");
    insert(store, "r2", 1000, &[with_id("$c")])
        .await
        .expect("new");
    let ids = store.inbox_recent_event_ids(10).await.expect("ids");
    assert_eq!(ids[..3], ["$c", "$b", "$a"]);
    assert_eq!(
        store.inbox_recent_event_ids(2).await.expect("ids"),
        ["$c", "$b"]
    );
    assert!(
        store
            .inbox_recent_event_ids(0)
            .await
            .expect("ids")
            .is_empty()
    );
    let pending = store.inbox_pending().await.expect("pending");
    let batches: Vec<i64> = pending.iter().map(|r| r.batch).collect();
    store.inbox_batches_done(&batches).await.expect("done");
}

/// Pending events come back in order, exactly as stored, until their batch is done.
pub async fn pending_events_come_back_in_arrival_order_until_done(store: &Store) {
    let many: Vec<_> = (0..2500)
        .map(|i| {
            event(
                Some("!b:x"),
                &format!("{{\"n\":{i},\"s\":\"\\\"q\\u00e9\"}}"),
            )
        })
        .collect();
    let first = insert(store, "t2", 1000, &many).await.expect("new");
    let later = insert(store, "t2b", 1000, &[event(None, "[1]")])
        .await
        .expect("new");
    assert_eq!(later, first + 2500);
    let pending = store.inbox_pending().await.expect("pending");
    assert_eq!(pending.len(), 2501);
    assert_eq!(pending[0].body, many[0].body, "stored byte for byte");
    assert_eq!(pending[2499].body, many[2499].body);
    assert_eq!(pending[2500].body, "[1]");
    assert_eq!(pending[2500].room_id, None);
    assert_eq!(
        pending.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (first..=later).collect::<Vec<_>>()
    );
    assert_eq!(pending[7].room_id.as_deref(), Some("!b:x"));
    assert_eq!(pending[7].txn_id, "t2");
    assert_eq!(pending[7].batch, first);
    assert_eq!(pending[2500].batch, later);
    assert_eq!(store.inbox_max_seq().await.expect("max"), later);
    store.inbox_batches_done(&[first]).await.expect("done");
    let pending = store.inbox_pending().await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].seq, later);
    store.inbox_batches_done(&[later]).await.expect("done");
    assert_eq!(store.inbox_depth().await.expect("depth"), 0);
}

/// A permanently failed event is kept aside, with its error.
pub async fn failed_events_leave_the_inbox_but_are_kept(store: &Store) {
    insert(store, "t3", 1000, &[event(Some("!c:x"), "{}")])
        .await
        .expect("new");
    let pending = store.inbox_pending().await.expect("pending");
    let failed_before = store.inbox_failed_count().await.expect("count");
    store
        .inbox_fail(&pending[0], "boom", 5)
        .await
        .expect("fail");
    store
        .inbox_batches_done(&[pending[0].batch])
        .await
        .expect("done");
    assert_eq!(store.inbox_depth().await.expect("depth"), 0);
    assert_eq!(
        store.inbox_failed_count().await.expect("count"),
        failed_before + 1
    );
}

/// Transaction keys and handled batches older than the retention are forgotten; pending
/// batches are kept whatever their age.
pub async fn old_txn_ids_are_pruned(store: &Store) {
    let old = insert(store, "old", 10, &[with_id("$old")])
        .await
        .expect("new");
    store.inbox_batches_done(&[old]).await.expect("done");
    let stuck = insert(store, "stuck", 10, &[with_id("$stuck")])
        .await
        .expect("new");
    insert(store, "empty-old", 10, &[]).await.expect("new");
    insert(store, "new", 1_000_000, &[]).await.expect("new");
    let pruned = store.inbox_prune_txns(500).await.expect("prune");
    assert_eq!(pruned, 2, "old and empty-old");
    let ids = store.inbox_recent_event_ids(100).await.expect("ids");
    assert!(!ids.contains(&"$old".to_owned()), "{ids:?}");
    assert!(ids.contains(&"$stuck".to_owned()), "{ids:?}");
    assert!(insert(store, "old", 20, &[]).await.is_some());
    assert!(
        insert(store, "stuck", 20, &[]).await.is_none(),
        "still pending: still known"
    );
    assert!(insert(store, "new", 20, &[]).await.is_none());
    store.inbox_batches_done(&[stuck]).await.expect("done");
}

/// A database left by the per-event inbox (schema version 1) keeps its unhandled events
/// through the upgrade to batches. `url` names a fresh, empty database.
pub async fn upgrade_keeps_unhandled_events(url: &str) {
    const LEGACY_ROWS: &str = "INSERT INTO inbox_txn (txn_id, received_at) VALUES \
         ('a/d', 1), ('b/d', 1), ('c/d', 1); \
         INSERT INTO inbox_event (seq, txn_id, kind, room_id, body) VALUES \
         (7, 'a/d', 'pdu', '!r:x', '{\"n\":\"it''s\"}'), (8, 'a/d', 'pdu', '!r:x', '{}'), \
         (9, 'b/d', 'ephemeral', NULL, '{}')";
    // Schema version 1 only, as the previous release left it, with unhandled events.
    macro_rules! legacy_database {
        ($pool:expr, $migrations:literal) => {{
            let pool = $pool.expect("connect");
            let migrator = sqlx::migrate!($migrations);
            migrator.run_to(1, &pool).await.expect("schema 1");
            sqlx::raw_sql(LEGACY_ROWS)
                .execute(&pool)
                .await
                .expect("legacy rows");
            pool.close().await;
        }};
    }
    if url.starts_with("postgres") {
        legacy_database!(sqlx::PgPool::connect(url).await, "./migrations/postgres");
    } else {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .expect("url")
            .create_if_missing(true);
        legacy_database!(
            sqlx::SqlitePool::connect_with(options).await,
            "./migrations/sqlite"
        );
    }
    let store = Store::connect(url, 2, crate::SqliteSync::Normal)
        .await
        .expect("upgrade");
    let pending = store.inbox_pending().await.expect("pending");
    let seen: Vec<_> = pending
        .iter()
        .map(|r| {
            (
                r.seq,
                r.batch,
                r.txn_id.as_str(),
                r.kind.as_str(),
                r.room_id.as_deref(),
                r.body.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (7, 7, "a/d#7", "pdu", Some("!r:x"), "{\"n\":\"it's\"}"),
            (8, 8, "a/d#8", "pdu", Some("!r:x"), "{}"),
            (9, 9, "b/d#9", "ephemeral", None, "{}"),
        ]
    );
    assert_eq!(store.inbox_max_seq().await.expect("max"), 9);
    for key in ["a/d", "b/d", "c/d"] {
        assert!(
            !store.inbox_insert(key, 5, 10, &[]).await.expect("insert"),
            "{key} was accepted before the upgrade: still a repeat"
        );
    }
    store.close().await;
}

/// Portals (shared and per-user) are kept per bridge and found by key and by room.
pub async fn portals_round_trip(store: &Store) {
    use crate::PortalRecord;
    use switchboard_api::ids::{PortalKey, RemoteUserId};
    let shared = PortalKey::shared("chat");
    let mine = PortalKey {
        receiver: Some(RemoteUserId::from("me")),
        ..shared.clone()
    };
    assert_eq!(store.portal("xmpp", &shared).await.expect("get"), None);
    let portal = PortalRecord {
        key: shared.clone(),
        room_id: Some("!p:x".into()),
        data: "{\"topic\":\"t\"}".into(),
    };
    store.put_portal("xmpp", &portal).await.expect("put");
    let per_user = PortalRecord {
        key: mine.clone(),
        room_id: None,
        data: "{}".into(),
    };
    store.put_portal("xmpp", &per_user).await.expect("put");
    assert_eq!(
        store.portal("xmpp", &shared).await.expect("get"),
        Some(portal.clone())
    );
    assert_eq!(
        store.portal("xmpp", &mine).await.expect("get"),
        Some(per_user)
    );
    assert_eq!(
        store.portal("mqtt", &shared).await.expect("get"),
        None,
        "per bridge"
    );
    assert_eq!(
        store.portal_by_room("!p:x").await.expect("by room"),
        Some(("xmpp".into(), portal.clone()))
    );
    assert_eq!(
        store.portal_by_room("!other:x").await.expect("by room"),
        None
    );
    let with_rooms = store.portals_with_rooms().await.expect("with rooms");
    assert!(with_rooms.contains(&("xmpp".to_owned(), portal.clone())));
    assert!(with_rooms.iter().all(|(_, p)| p.room_id.is_some()));
}

/// Puppets and message-map entries are kept per bridge, found from either side, and the
/// map is forgotten with its portal.
pub async fn puppets_and_the_message_map_round_trip(store: &Store) {
    use crate::{MessageRecord, PortalRecord};
    use switchboard_api::ids::{PortalKey, RemoteMessageId, RemoteUserId};
    let shared = PortalKey::shared("chat2");
    let mine = PortalKey {
        receiver: Some(RemoteUserId::from("me")),
        ..shared.clone()
    };
    for key in [&shared, &mine] {
        let portal = PortalRecord {
            key: key.clone(),
            room_id: None,
            data: "{}".into(),
        };
        store.put_portal("xmpp", &portal).await.expect("put");
    }
    let bob = RemoteUserId::from("bob");
    assert_eq!(store.puppet_data("xmpp", &bob).await.expect("get"), None);
    store
        .put_puppet("xmpp", &bob, "@_xmpp_bob:x", "{}")
        .await
        .expect("put");
    store
        .put_puppet("xmpp", &bob, "@_xmpp_bob:x", "{\"v\":2}")
        .await
        .expect("update");
    assert_eq!(
        store
            .puppet_data("xmpp", &bob)
            .await
            .expect("get")
            .as_deref(),
        Some("{\"v\":2}")
    );

    let message = MessageRecord {
        portal: shared.clone(),
        remote_message_id: RemoteMessageId::from("m1"),
        part: String::new(),
        room_id: "!p2:x".into(),
        event_id: "$e1".into(),
    };
    assert!(store.put_message("xmpp", &message).await.expect("put"));
    assert!(
        !store.put_message("xmpp", &message).await.expect("again"),
        "mapped once"
    );
    let same_event = MessageRecord {
        remote_message_id: RemoteMessageId::from("m2"),
        ..message.clone()
    };
    assert!(
        !store
            .put_message("xmpp", &same_event)
            .await
            .expect("same event")
    );
    assert_eq!(
        store
            .message_event("xmpp", &shared, &message.remote_message_id, "")
            .await
            .expect("get")
            .as_deref(),
        Some("$e1")
    );
    assert_eq!(
        store
            .message_event("xmpp", &mine, &message.remote_message_id, "")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store.message_by_event("$e1").await.expect("by event"),
        Some(("xmpp".into(), message.clone()))
    );
    store.delete_portal("xmpp", &shared).await.expect("delete");
    assert_eq!(store.portal("xmpp", &shared).await.expect("get"), None);
    assert_eq!(store.message_by_event("$e1").await.expect("by event"), None);
    assert!(
        store.portal("xmpp", &mine).await.expect("get").is_some(),
        "other portals stay"
    );
}

/// Users and memberships are remembered and updated.
pub async fn managed_users_and_memberships_round_trip(store: &Store) {
    assert_eq!(store.managed_user("@p:x").await.expect("get"), None);
    let user = ManagedUser {
        displayname: Some("P".into()),
        avatar_url: None,
    };
    store.put_managed_user("@p:x", &user).await.expect("put");
    assert_eq!(store.managed_user("@p:x").await.expect("get"), Some(user));
    let renamed = ManagedUser {
        displayname: Some("Q".into()),
        avatar_url: Some("mxc://x/y".into()),
    };
    store.put_managed_user("@p:x", &renamed).await.expect("put");
    assert_eq!(
        store.managed_user("@p:x").await.expect("get"),
        Some(renamed)
    );
    assert!(!store.is_member("!r:x", "@p:x").await.expect("member"));
    store.set_member("!r:x", "@p:x", true).await.expect("set");
    store
        .set_member("!r:x", "@p:x", true)
        .await
        .expect("set twice");
    assert!(store.is_member("!r:x", "@p:x").await.expect("member"));
    store
        .set_member("!r:x", "@p:x", false)
        .await
        .expect("unset");
    assert!(!store.is_member("!r:x", "@p:x").await.expect("member"));
}
