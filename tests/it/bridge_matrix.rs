//! The Matrix side of a bridge against a real Synapse: portal rooms with `m.bridge` state,
//! puppets with their profiles, and remote messages that appear once however often the remote
//! network (or a crash) delivers them.

use crate::common::{MatrixUser, Synapse};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use switchboard_registration::{Registration, RegistrationSpec};
use switchboard_runtime::HomeserverClient;
use switchboard_runtime::Namespaces;
use switchboard_runtime::api::PluginError;
use switchboard_runtime::api::matrix::MatrixMessage;
use switchboard_runtime::bridge::{
    Bridge, BridgeContext, BridgeInfo, BridgeMatrix, Bridged, PortalInfo, PortalKey, PuppetNaming,
    PuppetProfile, RemoteMessageId, RemoteText, RemoteUserId,
};
use switchboard_runtime::client::{ClientConfig, ClientMetrics};
use switchboard_runtime::config::SqliteSync;
use switchboard_runtime::metrics::Metrics;
use switchboard_runtime::ruma::{self, OwnedUserId, ServerName};
use switchboard_runtime::store::Store;

/// A Synapse that knows an appservice owning `naming`'s puppets, the bridge's Matrix side,
/// and the directory holding the registration and the database.
async fn bridge_on_synapse() -> (
    Synapse,
    BridgeMatrix,
    PuppetNaming,
    Arc<Chats>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_name = <&ServerName>::try_from("localhost").expect("server name");
    let naming = PuppetNaming::new("_loop_{{id}}", server_name).expect("template");
    let registration = Registration::generate(
        &RegistrationSpec {
            id: "loop-test".into(),
            // Nothing listens there: this test only talks to the homeserver.
            url: "http://127.0.0.1:9".into(),
            sender_localpart: Some("loopbot".into()),
            namespaces: Namespaces {
                users: vec![naming.namespace()],
                ..Namespaces::default()
            },
            receive_ephemeral: false,
            msc3202: false,
            msc4190: false,
            protocols: Vec::new(),
        },
        None,
    );
    let path = dir.path().join("registration.yaml");
    registration.save(&path).expect("registration written");
    let synapse = Synapse::start(&[path]).await.expect("Synapse starts");
    let chats = Arc::new(Chats::default());
    let side = matrix_side(&synapse, &dir, &naming, &chats).await;
    (synapse, side, naming, chats, dir)
}

/// The bridge's Matrix side as a freshly started Switchboard builds it over the database in
/// `dir`: nothing cached from an earlier run.
async fn matrix_side(
    synapse: &Synapse,
    dir: &tempfile::TempDir,
    naming: &PuppetNaming,
    chats: &Arc<Chats>,
) -> BridgeMatrix {
    let registration =
        Registration::load(&dir.path().join("registration.yaml")).expect("registration read");
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("bridge.db").display()),
        1,
        SqliteSync::Normal,
    )
    .await
    .expect("store");
    let client = HomeserverClient::new(
        &synapse.base_url(),
        &registration.as_token,
        OwnedUserId::try_from("@loopbot:localhost").expect("bot id"),
        ClientConfig::default(),
        ClientMetrics::default(),
        std::sync::Arc::new(store.clone()),
    )
    .expect("client");
    BridgeMatrix::new(
        BridgeInfo {
            id: "loop".into(),
            displayname: "Loopback".into(),
        },
        naming.clone(),
        client,
        store,
        Metrics::new().host,
    )
    .with_bridge(&(Arc::clone(chats) as Arc<dyn Bridge>), 0)
}

/// The chats of the test's network, described to the Matrix side as a bridge would.
#[derive(Default)]
struct Chats(Mutex<HashMap<PortalKey, PortalInfo>>);

impl Chats {
    /// From now on, the room of `key` is created as `info` says.
    fn describe(&self, key: &PortalKey, info: PortalInfo) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), info);
    }
}

#[switchboard_runtime::api::async_trait]
impl Bridge for Chats {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "loop".into(),
            displayname: "Loopback".into(),
        }
    }

    async fn start(&self, _ctx: BridgeContext) -> Result<(), PluginError> {
        Ok(())
    }

    async fn chat_info(&self, portal: &PortalKey) -> Result<PortalInfo, PluginError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(portal)
            .cloned()
            .ok_or_else(|| PluginError::permanent(format!("no chat {}", portal.chat)))
    }

    async fn handle_matrix_message(
        &self,
        _ctx: &BridgeContext,
        _portal: &PortalKey,
        _message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError> {
        Err(PluginError::permanent(
            "this test sends nothing to the network",
        ))
    }
}

fn text(id: &str, sender: &str, displayname: &str, body: &str) -> RemoteText {
    let profile = PuppetProfile {
        displayname: Some(displayname.into()),
        avatar_url: None,
    };
    RemoteText::text(
        RemoteMessageId::from(id),
        RemoteUserId::from(sender),
        profile,
        body,
    )
}

/// A real user `alice` who joined the portal of the shared chat `chat`.
async fn alice_in_portal(
    synapse: &Synapse,
    side: &BridgeMatrix,
    chats: &Chats,
    chat: &str,
) -> (MatrixUser, PortalKey, ruma::OwnedRoomId) {
    let alice = synapse.register_user("alice", false).await.expect("alice");
    let key = PortalKey::shared(chat);
    let info = PortalInfo {
        invite: vec![OwnedUserId::try_from(alice.user_id.as_str()).expect("id")],
        ..PortalInfo::default()
    };
    chats.describe(&key, info);
    let room = side.ensure_portal(&key).await.expect("portal");
    alice.join(room.as_str()).await.expect("join");
    (alice, key, room)
}

/// The room's messages, oldest first: (sender, body).
async fn messages(user: &MatrixUser, room_id: &str) -> Vec<(String, String)> {
    let mut events = user.messages(room_id, 100).await.expect("messages");
    events.reverse();
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            (
                e["sender"].as_str().unwrap_or_default().to_owned(),
                e["content"]["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_messages_appear_once_from_puppets_in_a_portal_with_bridge_state() {
    let (synapse, side, naming, chats, _dir) = bridge_on_synapse().await;
    let alice = synapse.register_user("alice", false).await.expect("alice");
    let alice_id = OwnedUserId::try_from(alice.user_id.as_str()).expect("alice id");
    let key = PortalKey::shared("lobby");
    let info = PortalInfo {
        name: Some("Loop lobby".into()),
        topic: Some("bridged".into()),
        invite: vec![alice_id],
        ..PortalInfo::default()
    };

    chats.describe(&key, info);
    let room = side.ensure_portal(&key).await.expect("portal");
    assert_eq!(
        side.ensure_portal(&key).await.expect("again"),
        room,
        "one room per portal"
    );
    alice
        .join(room.as_str())
        .await
        .expect("alice joins the portal");

    let first = text("m1", "Bob@remote", "Bob (loop)", "hello from the loop");
    let sent = side.bridge_text(&key, &first).await.expect("bridged");
    let Bridged::Sent(event_id) = sent else {
        panic!("the first delivery is sent: {sent:?}")
    };
    assert_eq!(
        side.bridge_text(&key, &first).await.expect("again"),
        Bridged::AlreadyBridged(event_id.clone()),
        "a message the network delivers twice is bridged once"
    );
    side.bridge_text(&key, &text("m2", "carol", "Carol", "second"))
        .await
        .expect("second message");

    let bob = naming
        .user_id(&RemoteUserId::from("Bob@remote"))
        .expect("puppet id");
    assert_eq!(bob.as_str(), "@_loop__bob=40remote:localhost");
    let carol = naming.user_id(&RemoteUserId::from("carol")).expect("id");
    assert_eq!(
        messages(&alice, room.as_str()).await,
        [
            (bob.to_string(), "hello from the loop".to_owned()),
            (carol.to_string(), "second".to_owned()),
        ]
    );

    let state = alice
        .get(&format!("/rooms/{}/state", common_encode(room.as_str())))
        .await
        .expect("room state");
    let events = state.as_array().expect("state is a list");
    let of_type = |t: &str| events.iter().find(|e| e["type"] == t).cloned();
    let bridge = of_type("m.bridge").expect("m.bridge state");
    assert_eq!(bridge["content"]["protocol"]["id"], "loop");
    assert_eq!(bridge["content"]["channel"]["id"], "lobby");
    assert_eq!(bridge["content"]["bridgebot"], "@loopbot:localhost");
    assert!(of_type("uk.half-shot.bridge").is_some());
    assert_eq!(
        of_type("m.room.name").expect("name")["content"]["name"],
        "Loop lobby"
    );
    let formatted = RemoteText {
        html: Some("<b>bold</b><script>alert(1)</script><img src=\"https://t.example/p\">".into()),
        ..text("m3", "carol", "Carol", "bold")
    };
    let Bridged::Sent(formatted_id) = side.bridge_text(&key, &formatted).await.expect("html")
    else {
        panic!("sent")
    };
    let event = alice
        .get(&format!(
            "/rooms/{}/event/{}",
            common_encode(room.as_str()),
            common_encode(formatted_id.as_str())
        ))
        .await
        .expect("event");
    assert_eq!(event["content"]["format"], "org.matrix.custom.html");
    assert_eq!(
        event["content"]["formatted_body"], "<b>bold</b><img>",
        "sanitised"
    );
    assert_eq!(event["content"]["body"], "bold");
    let bob_member = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.as_str())
        .expect("Bob's puppet is a member");
    assert_eq!(bob_member["content"]["displayname"], "Bob (loop)");
    assert_eq!(bob_member["content"]["membership"], "join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_repeated_after_a_crash_is_shown_once_and_profiles_follow_changes() {
    let (synapse, side, naming, chats, dir) = bridge_on_synapse().await;
    let (alice, key, room) = alice_in_portal(&synapse, &side, &chats, "crashy").await;
    let message = text("m1", "dave", "Dave", "sent just before a crash");
    let Bridged::Sent(first) = side.bridge_text(&key, &message).await.expect("sent") else {
        panic!("first delivery is sent")
    };

    // A crash after the homeserver accepted the event but before the message map was written:
    // simulated by forgetting the mapping and starting afresh, as a restarted Switchboard would
    // not have it.
    drop(side);
    let db = Store::connect(
        &format!("sqlite://{}", dir.path().join("bridge.db").display()),
        1,
        SqliteSync::Normal,
    )
    .await
    .expect("store");
    db.delete_portal("loop", &key).await.expect("forget");
    let room_record = switchboard_runtime::store::PortalRecord {
        key: key.clone(),
        room_id: Some(room.to_string()),
        data: "{}".into(),
    };
    db.put_portal("loop", &room_record)
        .await
        .expect("portal kept");
    let side = matrix_side(&synapse, &dir, &naming, &chats).await;
    let again = side.bridge_text(&key, &message).await.expect("resent");
    assert_eq!(
        again,
        Bridged::Sent(first.clone()),
        "the same transaction id makes the homeserver return the same event"
    );
    let dave = naming.user_id(&RemoteUserId::from("dave")).expect("id");
    assert_eq!(
        messages(&alice, room.as_str()).await,
        [(dave.to_string(), "sent just before a crash".to_owned())]
    );

    side.ensure_puppet(
        &RemoteUserId::from("dave"),
        &PuppetProfile {
            displayname: Some("Dave (renamed)".into()),
            avatar_url: None,
        },
    )
    .await
    .expect("profile update");
    let profile = alice
        .get(&format!("/profile/{}", common_encode(dave.as_str())))
        .await
        .expect("profile");
    assert_eq!(profile["displayname"], Value::from("Dave (renamed)"));
}

fn common_encode(text: &str) -> String {
    switchboard_testing::synapse::encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arriving_together_for_a_new_portal_create_one_room_and_all_arrive() {
    let (synapse, side, _naming, chats, _dir) = bridge_on_synapse().await;
    let alice = synapse.register_user("alice", false).await.expect("alice");
    let key = PortalKey::shared("burst");
    let info = PortalInfo {
        invite: vec![OwnedUserId::try_from(alice.user_id.as_str()).expect("id")],
        ..PortalInfo::default()
    };
    chats.describe(&key, info);
    let sends: Vec<_> = (0..6)
        .map(|n| {
            let (side, key) = (side.clone(), key.clone());
            tokio::spawn(async move {
                let message = text(
                    &format!("b{n}"),
                    &format!("user{}", n % 2),
                    "U",
                    &format!("burst {n}"),
                );
                side.bridge_text(&key, &message).await
            })
        })
        .collect();
    for send in sends {
        let sent = send.await.expect("task").expect("bridged");
        assert!(matches!(sent, Bridged::Sent(_)), "{sent:?}");
    }
    let room = side.ensure_portal(&key).await.expect("portal");
    let sync = alice.get("/sync?timeout=0").await.expect("sync");
    let invites: Vec<&String> = sync["rooms"]["invite"]
        .as_object()
        .map(|rooms| rooms.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        invites,
        [&room.to_string()],
        "one room was created for the portal"
    );
    alice.join(room.as_str()).await.expect("join");
    let mut bodies: Vec<String> = messages(&alice, room.as_str())
        .await
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        (0..6).map(|n| format!("burst {n}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_edits_and_deletions_change_the_bridged_messages_once() {
    let (synapse, side, _naming, chats, _dir) = bridge_on_synapse().await;
    let (alice, key, room) = alice_in_portal(&synapse, &side, &chats, "edits").await;
    let sent = |b: Bridged| match b {
        Bridged::Sent(id) => id,
        other @ Bridged::AlreadyBridged(_) => panic!("expected a send: {other:?}"),
    };
    let original = sent(
        side.bridge_text(&key, &text("m1", "erin", "Erin", "teh typo"))
            .await
            .expect("m1"),
    );
    let doomed = sent(
        side.bridge_text(&key, &text("m2", "erin", "Erin", "regret"))
            .await
            .expect("m2"),
    );

    let edit = text("m1-edit", "erin", "Erin", "the typo");
    let edited = side
        .bridge_edit(&key, &RemoteMessageId::from("m1"), &edit)
        .await
        .expect("edit");
    let Some(Bridged::Sent(edit_id)) = edited else {
        panic!("edit sent: {edited:?}")
    };
    assert_eq!(
        side.bridge_edit(&key, &RemoteMessageId::from("m1"), &edit)
            .await
            .expect("again"),
        Some(Bridged::AlreadyBridged(edit_id.clone())),
        "an edit delivered twice is sent once"
    );
    assert_eq!(
        side.bridge_edit(
            &key,
            &RemoteMessageId::from("unknown"),
            &text("e9", "erin", "Erin", "x")
        )
        .await
        .expect("edit of nothing"),
        None
    );
    let fetch = |id: String| {
        let alice = &alice;
        let room = room.to_string();
        async move {
            alice
                .get(&format!(
                    "/rooms/{}/event/{}",
                    common_encode(&room),
                    common_encode(&id)
                ))
                .await
                .expect("event")
        }
    };
    let edit_event = fetch(edit_id.to_string()).await;
    assert_eq!(
        edit_event["content"]["m.relates_to"]["rel_type"],
        "m.replace"
    );
    assert_eq!(
        edit_event["content"]["m.relates_to"]["event_id"],
        original.as_str()
    );
    assert_eq!(edit_event["content"]["m.new_content"]["body"], "the typo");
    assert_eq!(edit_event["content"]["body"], "* the typo");

    let redaction = side
        .bridge_deletion(&key, &RemoteMessageId::from("m2"), "")
        .await
        .expect("deletion")
        .expect("m2 was bridged");
    let gone = fetch(doomed.to_string()).await;
    assert_eq!(
        gone["content"],
        serde_json::json!({}),
        "the message's content is removed"
    );
    assert_eq!(
        gone["unsigned"]["redacted_because"]["event_id"],
        redaction.as_str()
    );
    assert_eq!(
        side.bridge_deletion(&key, &RemoteMessageId::from("never"), "")
            .await
            .expect("nothing"),
        None
    );
}
