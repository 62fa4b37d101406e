//! The loopback example bridge through a running Switchboard and a real Synapse: what a Matrix
//! user does in the portal reaches the "network" and what the network does comes back —
//! messages and replies, edits, reactions and their removal, deletions — once, never bridged
//! back; a message the network refuses is answered with a notice; and messages sent while the
//! network is down wait in the outbox, across a restart, and arrive in order when it is back.

use std::time::Duration;

use crate::common::contract::{Homeserver, Tester};
use crate::common::switchboard_instance::{Running, Slot};
use crate::common::{MatrixUser, Synapse, wait_until};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_runtime::bridge::PortalKey;
use switchboard_runtime::config::SqliteSync;
use switchboard_runtime::store::Store;
use switchboard_testing::synapse::encode;
use switchboard_testing::{Contract, ContractSubject};

const ECHO: &str = "@_loopback_echo:localhost";
const WAIT: Duration = Duration::from_secs(30);
/// Alice administers the bridges, bob may only be relayed, the rest of the server are users.
const PERMISSIONS: &str =
    "permissions:\n  localhost: user\n  \"@alice:localhost\": admin\n  \"@bob:localhost\": relay\n";

/// A Switchboard running the loopback bridge (plus `extra` config) against a fresh Synapse,
/// and `alice`, who joined the portal she was invited to.
async fn loopback(name: &str, extra: &str) -> (Slot, Synapse, Running, MatrixUser, String) {
    loopback_with(name, extra, &[]).await
}

/// Like [`loopback`], with more registration files given to Synapse.
async fn loopback_with(
    name: &str,
    extra: &str,
    registrations: &[std::path::PathBuf],
) -> (Slot, Synapse, Running, MatrixUser, String) {
    let config = format!(
        "bridges:\n  loopback:\n    enabled: true\n    invite: [\"@alice:localhost\"]\n{extra}"
    );
    let slot = Slot::with_config(name, &config).expect("slot");
    let mut files = vec![slot.registration_path()];
    files.extend_from_slice(registrations);
    let synapse = Synapse::start(&files).await.expect("Synapse starts");
    let alice = synapse.register_user("alice", false).await.expect("alice");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let portal = alice
        .join_invite(WAIT)
        .await
        .expect("alice is invited to the portal and joins");
    (slot, synapse, running, alice, portal)
}

/// The room's events, oldest first.
async fn timeline(user: &MatrixUser, room_id: &str) -> Vec<Value> {
    let mut events = user.messages(room_id, 100).await.expect("messages");
    events.reverse();
    events
}

/// `(sender, body)` of the room's messages that were not redacted, oldest first, edits left
/// out.
async fn messages(user: &MatrixUser, room_id: &str) -> Vec<(String, String)> {
    timeline(user, room_id)
        .await
        .iter()
        .filter(|e| e["type"] == "m.room.message" && e["content"]["m.new_content"].is_null())
        .filter_map(|e| {
            Some((
                e["sender"].as_str()?.to_owned(),
                e["content"]["body"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// What echo said in the room, oldest first.
async fn echo_answers(user: &MatrixUser, room_id: &str) -> Vec<String> {
    messages(user, room_id)
        .await
        .into_iter()
        .filter(|(sender, _)| sender == ECHO)
        .map(|(_, body)| body)
        .collect()
}

/// The first event of the room that `matches`, waited for.
async fn wait_for(
    user: &MatrixUser,
    room_id: &str,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(WAIT, what, || async {
        timeline(user, room_id)
            .await
            .into_iter()
            .find(|e| matches(e))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn is_redacted(event: &Value) -> bool {
    !event["unsigned"]["redacted_because"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_answered_once_from_a_puppet_and_a_refused_one_gets_a_notice() {
    let naming = "    displayname_template: \"{{name}} ({{network}})\"\n    \
                  avatar_template: \"mxc://localhost/loopback-{{id}}\"\npuppets:\n  idle_secs: 2\n";
    let (slot, _synapse, running, alice, portal) = loopback("loop", naming).await;
    let sent = alice.send_text(&portal, "hello loop").await.expect("sent");

    let seen = wait_until(WAIT, "the loopback answer", || async {
        let all = messages(&alice, &portal).await;
        all.iter()
            .any(|(sender, body)| sender == ECHO && body == "echo: hello loop")
            .then_some(all)
    })
    .await
    .expect("the loopback network answers");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = messages(&alice, &portal).await;
    assert_eq!(
        settled, seen,
        "nothing more arrives: the answer is not bridged back"
    );
    assert_eq!(
        settled,
        [
            (alice.user_id.clone(), "hello loop".to_owned()),
            (ECHO.to_owned(), "echo: hello loop".to_owned()),
        ]
    );
    let profile = alice
        .get(&format!("/profile/{}", encode(ECHO)))
        .await
        .expect("echo's profile");
    assert_eq!(
        profile["displayname"], "Loopback echo (Loopback)",
        "named by bridges.loopback.displayname_template"
    );
    assert_eq!(
        profile["avatar_url"], "mxc://localhost/loopback-echo",
        "pictured by bridges.loopback.avatar_template"
    );
    let cached = "switchboard_bridge_puppets_cached{bridge=\"loopback\"}";
    let kept = slot.metric(cached).await;
    assert!(
        (kept - 1.0).abs() < f64::EPSILON,
        "echo's puppet is kept: {kept}"
    );
    wait_until(WAIT, "the idle puppet reaped", || async {
        (slot.metric(cached).await < 0.5).then_some(())
    })
    .await
    .expect("echo's puppet is forgotten after puppets.idle_secs");
    alice.send_text(&portal, "again").await.expect("sent");
    wait_for(&alice, &portal, "the answer after reaping", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: again"
    })
    .await;
    let kept = slot.metric(cached).await;
    assert!(
        (kept - 1.0).abs() < f64::EPSILON,
        "looked up and kept again: {kept}"
    );
    let refused = alice.send_text(&portal, "!drop this").await.expect("sent");
    let bot = slot.bot();
    let notice = wait_for(&alice, &portal, "the undelivered notice", |e| {
        e["sender"] == bot.as_str()
            && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == refused.as_str()
    })
    .await;
    assert_eq!(notice["content"]["msgtype"], "m.notice");
    let body = notice["content"]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("Not delivered to Loopback") && body.contains("!drop"),
        "{body}"
    );
    running.stop().await.expect("clean stop");

    let config = slot.config().expect("config");
    let store = Store::connect(&config.database_url(), 1, SqliteSync::Normal)
        .await
        .expect("the slot's database");
    let (bridge, mapped) = store
        .message_by_event(&sent)
        .await
        .expect("lookup")
        .expect("the Matrix message is in the message map");
    assert_eq!(bridge, "loopback");
    assert_eq!(mapped.remote_message_id.as_str(), format!("m-{sent}"));
    assert_eq!(mapped.portal, PortalKey::shared("lobby"));
}

/// Replies, edits, reactions, reaction removal and deletion, each both ways: what alice does
/// reaches the network, and echo's answer to it comes back as the same kind of Matrix event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_edits_reactions_and_deletions_go_both_ways() {
    let (slot, _synapse, running, alice, portal) = loopback("rel", "").await;
    let hi = alice.send_text(&portal, "hi").await.expect("sent");

    // A remote reply: echo's answer replies to alice's message.
    let answer = wait_for(&alice, &portal, "echo's answer", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: hi"
    })
    .await;
    assert_eq!(
        answer["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        hi.as_str(),
        "the answer is a reply to alice's message"
    );
    let answer_id = answer["event_id"].as_str().expect("event id").to_owned();

    // A Matrix edit reaches the network, whose edit of the answer comes back.
    alice
        .send_event(
            &portal,
            "m.room.message",
            &json!({
                "msgtype": "m.text", "body": "* hi there",
                "m.new_content": { "msgtype": "m.text", "body": "hi there" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": hi },
            }),
        )
        .await
        .expect("edit sent");
    let edit = wait_for(&alice, &portal, "echo's edit", |e| {
        e["sender"] == ECHO && e["content"]["m.relates_to"]["rel_type"] == "m.replace"
    })
    .await;
    assert_eq!(
        edit["content"]["m.relates_to"]["event_id"],
        answer_id.as_str()
    );
    assert_eq!(edit["content"]["m.new_content"]["body"], "echo: hi there");

    // A Matrix reaction reaches the network; echo reacts the same, on the same message.
    let reaction = alice
        .send_event(
            &portal,
            "m.reaction",
            &json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": answer_id, "key": "👍" } }),
        )
        .await
        .expect("reaction sent");
    let echoed = wait_for(&alice, &portal, "echo's reaction", |e| {
        e["sender"] == ECHO && e["type"] == "m.reaction"
    })
    .await;
    assert_eq!(
        echoed["content"]["m.relates_to"],
        json!({ "rel_type": "m.annotation", "event_id": answer_id, "key": "👍" })
    );
    let echoed_id = echoed["event_id"].as_str().expect("id").to_owned();

    // Taking the reaction back takes echo's back too.
    alice
        .put(
            &format!(
                "/rooms/{}/redact/{}/undo-reaction",
                encode(&portal),
                encode(&reaction)
            ),
            &json!({}),
        )
        .await
        .expect("reaction redacted");
    wait_for(&alice, &portal, "echo's reaction taken back", |e| {
        e["event_id"] == echoed_id.as_str() && is_redacted(e)
    })
    .await;

    // Deleting the message deletes the answer on the network, and so in Matrix.
    alice
        .put(
            &format!("/rooms/{}/redact/{}/undo-hi", encode(&portal), encode(&hi)),
            &json!({}),
        )
        .await
        .expect("message redacted");
    let removed = wait_for(&alice, &portal, "echo's answer deleted", |e| {
        e["event_id"] == answer_id.as_str() && is_redacted(e)
    })
    .await;
    assert_eq!(
        removed["unsigned"]["redacted_because"]["sender"],
        slot.bot().as_str(),
        "the bridge bot removes what the network deleted"
    );

    // Nothing went round twice: one answer, one edit, one reaction from echo.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from_echo: Vec<String> = timeline(&alice, &portal)
        .await
        .iter()
        .filter(|e| e["sender"] == ECHO && e["type"] != "m.room.member")
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        from_echo,
        [
            "m.room.message",
            "m.room.message",
            "m.reaction",
            "m.room.redaction"
        ]
    );
    running.stop().await.expect("clean stop");
}

/// While the network is down, alice's messages wait in the outbox — the homeserver's
/// transactions keep flowing (the echo bot still answers elsewhere) — across a restart of
/// Switchboard; once the network is back they arrive in the order sent, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_the_network_is_down_wait_in_the_outbox_across_a_restart() {
    let outage = tempfile::tempdir().expect("dir");
    let down = outage.path().join("down");
    let extra = format!(
        "    outage_file: {:?}\noutbox:\n  retry_max_interval_secs: 1\n",
        down.display().to_string()
    );
    let (slot, _synapse, running, alice, portal) = loopback("outbox", &extra).await;
    // Alice's joining reached the network before it goes down (else it would wait too).
    command_answer(&alice, &portal, &slot.bot(), "!loopback who").await;
    std::fs::write(&down, "").expect("network down");
    for body in ["one", "two", "three"] {
        alice.send_text(&portal, body).await.expect("sent");
    }
    wait_until(WAIT, "three queued messages", || async {
        (slot.metric("switchboard_bridge_outbox_depth").await >= 3.0).then_some(())
    })
    .await
    .expect("the messages wait in the outbox");

    // The inbox is not held back: the echo bot answers in another room meanwhile.
    let room = room_with_bot(&alice, &slot.bot(), false).await;
    alice
        .send_text(&room, "ping still here")
        .await
        .expect("ping");
    wait_until(WAIT, "the echo bot's pong", || async {
        messages(&alice, &room)
            .await
            .iter()
            .any(|(_, body)| body == "pong still here")
            .then_some(())
    })
    .await
    .expect("other rooms are served while the network is down");

    running.stop().await.expect("clean stop");
    let running = slot.start().await.expect("Switchboard starts again");
    let depth = slot.metric("switchboard_bridge_outbox_depth").await;
    assert!((depth - 3.0).abs() < f64::EPSILON, "outbox depth {depth}");
    std::fs::remove_file(&down).expect("network back");

    let answers = wait_until(WAIT, "three answers", || async {
        let answers = echo_answers(&alice, &portal).await;
        (answers.len() >= 3).then_some(answers)
    })
    .await
    .expect("the network gets them once it is back");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(answers, ["echo: one", "echo: two", "echo: three"]);
    let bot = slot.bot();
    let conversation: Vec<String> = messages(&alice, &portal)
        .await
        .into_iter()
        .filter(|(sender, body)| *sender != bot && !body.starts_with('!'))
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        conversation,
        [
            "one",
            "two",
            "three",
            "echo: one",
            "echo: two",
            "echo: three"
        ],
        "each message and answer once"
    );
    let depth = slot.metric("switchboard_bridge_outbox_depth").await;
    assert!((depth - 0.0).abs() < f64::EPSILON, "outbox depth {depth}");
    running.stop().await.expect("clean stop");
}

/// Sends `command` to `room` as `user` and waits for the bot's answer (a notice replying to it).
async fn command_answer(user: &MatrixUser, room: &str, bot: &str, command: &str) -> String {
    let sent = user.send_text(room, command).await.expect("sent");
    let reply = wait_for(user, room, &format!("the answer to {command}"), |e| {
        e["sender"] == bot
            && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == sent.as_str()
    })
    .await;
    assert_eq!(reply["content"]["msgtype"], "m.notice");
    reply["content"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Commands in the portal, each checked against the sender's permission level: a relay-level
/// user gets only the help meant for them, cannot ping and is not bridged; the admin mistypes
/// a command (and is told the closest one), takes the network down (a message waits, `ping`
/// says so), brings it back (the message arrives at once). Commands never reach the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_by_permission_level_and_never_reach_the_network() {
    let (slot, synapse, running, alice, portal) = loopback("cmd", PERMISSIONS).await;
    let bot = slot.bot();
    let bob = joined_by_bob(&synapse, &alice, &portal).await;

    let help = command_answer(&bob, &portal, &bot, "!loopback help").await;
    assert!(
        help.contains("!loopback help") && help.contains("!loopback version"),
        "{help}"
    );
    assert!(
        !help.contains("ping") && !help.contains("network"),
        "{help}"
    );
    assert_eq!(
        command_answer(&bob, &portal, &bot, "!loopback ping").await,
        "You cannot use `!loopback ping`: it needs the user permission level, yours is relay."
    );
    bob.send_text(&portal, "hello from bob")
        .await
        .expect("sent");

    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback netwrk down").await,
        "Unknown command `netwrk`. Did you mean `!loopback network`? Send `!loopback help` to \
         see the commands you can use."
    );
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback network down").await,
        "The loopback network is down now."
    );
    alice.send_text(&portal, "while down").await.expect("sent");
    let ping = command_answer(&alice, &portal, &bot, "!loopback ping").await;
    assert_eq!(
        ping,
        "Loopback is disconnected for now (taken down by a command): 1 portal room(s), 1 \
         message(s) waiting in the outbox for the network."
    );
    let state =
        |label: &str| format!("switchboard_bridge_state{{bridge=\"loopback\",state=\"{label}\"}}");
    assert!(slot.metric(&state("transient_disconnect")).await > 0.5);
    assert!(slot.metric(&state("connected")).await < 0.5);
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback network up").await,
        "The loopback network is up now."
    );
    assert!(slot.metric(&state("connected")).await > 0.5);
    wait_for(&alice, &portal, "the queued message's answer", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: while down"
    })
    .await;
    let answered = echo_answers(&alice, &portal).await;
    assert_eq!(
        answered,
        ["echo: while down"],
        "neither bob (relay level) nor any command reached the network"
    );

    an_existing_room_is_bridged_then_unbridged(&alice, &portal, &bot).await;
    running.stop().await.expect("clean stop");
}

/// The admin bridges an existing room to another chat: messages there reach the network; after
/// `unbridge` they do not.
async fn an_existing_room_is_bridged_then_unbridged(alice: &MatrixUser, portal: &str, bot: &str) {
    let room = room_with_bot(alice, bot, false).await;
    assert_eq!(
        command_answer(alice, &room, bot, "!loopback bridge side").await,
        "This room is now bridged to side on Loopback."
    );
    assert_eq!(
        command_answer(alice, portal, bot, "!loopback bridge side").await,
        "This room is bridged to lobby on Loopback already; `unbridge` it first."
    );
    alice.send_text(&room, "hello side").await.expect("sent");
    wait_for(alice, &room, "echo in the bridged room", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: hello side"
    })
    .await;
    assert_eq!(
        command_answer(alice, &room, bot, "!loopback unbridge").await,
        "This room is no longer bridged to side on Loopback."
    );
    alice
        .send_text(&room, "after unbridge")
        .await
        .expect("sent");
    command_answer(alice, &room, bot, "!loopback version").await;
    let echoed = echo_answers(alice, &room).await;
    assert_eq!(
        echoed,
        ["echo: hello side"],
        "nothing is bridged after unbridge"
    );
}

/// Bob, registered and joined to the portal on alice's invite.
async fn joined_by_bob(synapse: &Synapse, alice: &MatrixUser, portal: &str) -> MatrixUser {
    let bob = synapse.register_user("bob", false).await.expect("bob");
    alice
        .invite(portal, &bob.user_id)
        .await
        .expect("bob invited");
    bob.join(portal).await.expect("bob joins");
    bob
}

/// A room `user` creates with the bot (a direct chat if `direct`), once the bot has joined it.
async fn room_with_bot(user: &MatrixUser, bot: &str, direct: bool) -> String {
    let room = user
        .create_room(json!({ "invite": [bot], "is_direct": direct }))
        .await
        .expect("room");
    user.wait_for_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == bot
            && e["content"]["membership"] == "join"
    })
    .await
    .expect("the bot accepts the invite");
    room
}

/// With logins required: a user without a login is told how to log in; the login asks its
/// fields one message at a time (a wrong password fails, the password message is removed);
/// the login's messages reach the network as that account; an admin's `set-relay` carries a
/// relay-level user's messages with their name; `logout` ends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_made_in_chat_and_relay_carries_users_without_one() {
    let extra = format!("    require_login: true\n{PERMISSIONS}");
    let (slot, synapse, running, alice, portal) = loopback("login", &extra).await;
    let bot = slot.bot();
    let bob = joined_by_bob(&synapse, &alice, &portal).await;

    assert_eq!(
        command_answer(&alice, &portal, &bot, "hello").await,
        "Not bridged: you are not logged in to Loopback and this room has no relay. Send \
         `!loopback login` to log in."
    );
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback login").await,
        "Log in to the loopback network.\nSend your username."
    );
    assert_eq!(
        command_answer(&alice, &portal, &bot, "alice-remote").await,
        "Send your password."
    );
    assert_eq!(
        command_answer(&alice, &portal, &bot, "guess").await,
        "Login failed: wrong password"
    );
    command_answer(&alice, &portal, &bot, "!loopback login").await;
    command_answer(&alice, &portal, &bot, "alice-remote").await;
    let password = alice.send_text(&portal, "loopback").await.expect("sent");
    wait_for(&alice, &portal, "the login", |e| {
        e["content"]["body"] == "Logged in as alice-remote."
    })
    .await;
    wait_for(&alice, &portal, "the password removed", |e| {
        e["event_id"] == password.as_str() && is_redacted(e)
    })
    .await;
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback list-logins").await,
        "Your logins: alice-remote (user:alice-remote, connected)."
    );
    // Without double puppeting, what her login says elsewhere comes from its puppet.
    command_answer(&alice, &portal, &bot, "!loopback remote-say from my phone").await;
    wait_for(&alice, &portal, "the login's puppet", |e| {
        e["sender"] == "@_loopback_user=3aalice-remote:localhost"
            && e["content"]["body"] == "from my phone"
    })
    .await;
    alice.send_text(&portal, "hello again").await.expect("sent");
    let answer = wait_for(&alice, &portal, "echo for alice's login", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: for alice-remote: hello again"
    })
    .await;
    mentions_go_both_ways(&alice, &portal, &answer).await;

    bob.send_text(&portal, "no relay yet").await.expect("sent");
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback set-relay").await,
        "Messages of users without their own login are now relayed through alice-remote."
    );
    bob.send_text(&portal, "hi relayed").await.expect("sent");
    wait_for(&alice, &portal, "echo of the relayed message", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: bob: hi relayed"
    })
    .await;
    let logins = slot
        .metric("switchboard_bridge_logins{bridge=\"loopback\",state=\"connected\"}")
        .await;
    assert!(
        (logins - 1.0).abs() < f64::EPSILON,
        "one connected login: {logins}"
    );
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback logout").await,
        "Logged out of alice-remote."
    );
    let logins = slot
        .metric("switchboard_bridge_logins{bridge=\"loopback\",state=\"connected\"}")
        .await;
    assert!(
        logins.abs() < f64::EPSILON,
        "no login after logout: {logins}"
    );
    bob.send_text(&portal, "after logout").await.expect("sent");
    command_answer(&alice, &portal, &bot, "!loopback version").await;
    assert_eq!(
        echo_answers(&alice, &portal).await,
        [
            "echo: for alice-remote: hello again",
            "echo: for alice-remote: hey @echo",
            "echo: bob: hi relayed"
        ],
        "only the logged-in and the relayed messages reached the network"
    );
    running.stop().await.expect("clean stop");
}

/// A client of the provisioning API of one bridge.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// The provisioning API of the loopback bridge of `slot`.
    fn new(slot: &Slot) -> Self {
        let base = format!(
            "{}/_switchboard/provision/v1/bridges/loopback",
            slot.as_url()
        );
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    /// Calls `path` with a bearer `token`: the status and the JSON answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("provisioning answers");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }
}

/// An OpenID token of `user`, from their homeserver.
async fn openid_token(user: &MatrixUser) -> String {
    let path = format!("/user/{}/openid/request_token", encode(&user.user_id));
    let openid = user.post(&path, &json!({})).await.expect("OpenID token");
    openid["access_token"].as_str().expect("token").to_owned()
}

/// The provisioning API: refused without a token or with an unknown one; with a user's OpenID
/// token, whoami, a login made step by step (then used in chat), the portals, and logout; with
/// the shared secret, acting for another user, whose level still applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioning_api_logs_in_lists_portals_and_checks_who_calls() {
    const SECRET: &str = "provisioning-secret-of-at-least-32-characters";
    let extra = format!(
        "    require_login: true\n{PERMISSIONS}provisioning:\n  enabled: true\n  \
         shared_secret: {SECRET}\n"
    );
    let (slot, synapse, running, alice, portal) = loopback("prov", &extra).await;
    let api = Api::new(&slot);
    let get = |path: &'static str, token: &'static str| api.call(Method::GET, path, token, None);
    let status = api
        .http
        .get(format!("{}/whoami", api.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(status.status().as_u16(), 401, "no token");
    let (status, body) = get("/whoami", "not-a-token").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN"))
    );

    let token = &openid_token(&alice).await;
    let (status, whoami) = api.call(Method::GET, "/whoami", token, None).await;
    assert_eq!(status, 200, "{whoami}");
    assert_eq!(whoami["user_id"], alice.user_id.as_str());
    assert_eq!(whoami["permission"], "admin");
    assert_eq!(whoami["bridge"]["state"], "connected");
    assert_eq!(whoami["logins"], json!([]));

    let (_, flows) = api.call(Method::GET, "/login/flows", token, None).await;
    assert_eq!(flows["flows"][0]["id"], "password");
    let (status, started) = api
        .call(Method::POST, "/login/start/password", token, None)
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["step"]["type"], "user_input");
    let process = started["process_id"].as_str().expect("process").to_owned();
    // Fields may come one call at a time: what was entered before is kept.
    let step = format!("/login/step/{process}");
    let input = json!({ "input": { "username": "web-alice" } });
    let (_, next) = api.call(Method::POST, &step, token, Some(input)).await;
    assert_eq!(next["step"]["type"], "user_input", "{next}");
    let input = json!({ "input": { "password": "loopback" } });
    let (status, done) = api.call(Method::POST, &step, token, Some(input)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done["step"],
        json!({ "type": "complete", "id": "user:web-alice", "remote_name": "web-alice" }),
        "the login's data stays with the bridge"
    );
    let (_, logins) = api.call(Method::GET, "/logins", token, None).await;
    assert_eq!(
        logins["logins"],
        json!([{ "id": "user:web-alice", "remote_name": "web-alice", "state": "connected" }])
    );
    alice
        .send_text(&portal, "from the web login")
        .await
        .expect("sent");
    wait_for(&alice, &portal, "echo for the web login", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: for web-alice: from the web login"
    })
    .await;
    let (_, portals) = api.call(Method::GET, "/portals", token, None).await;
    assert_eq!(
        portals["portals"],
        json!([{ "chat": "lobby", "receiver": null, "room_id": portal }])
    );
    let (status, _) = api
        .call(Method::POST, "/logout/user:web-alice", token, None)
        .await;
    assert_eq!(status, 200);
    let (_, logins) = api.call(Method::GET, "/logins", token, None).await;
    assert_eq!(logins["logins"], json!([]));

    // The shared secret acts for a user, whose own level applies.
    let _bob = synapse.register_user("bob", false).await.expect("bob");
    let (status, whoami) = get("/whoami?user_id=@bob:localhost", SECRET).await;
    assert_eq!(
        (status, whoami["permission"].as_str()),
        (200, Some("relay"))
    );
    let (status, refused) = api
        .call(
            Method::POST,
            "/bridge?user_id=@bob:localhost",
            SECRET,
            Some(json!({ "room_id": portal, "chat": "other" })),
        )
        .await;
    assert_eq!(
        (status, refused["errcode"].as_str()),
        (403, Some("M_FORBIDDEN"))
    );
    running.stop().await.expect("clean stop");
}

/// With double puppeting for the server, what a user's login says on the network appears as
/// the user themself (marked), and is not bridged back to the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_puppeting_shows_a_users_own_remote_messages_as_them() {
    let dir = tempfile::tempdir().expect("dir");
    let registration = dir.path().join("doublepuppet.yaml");
    let double_puppet = switchboard_registration::Registration::double_puppet("localhost", None);
    double_puppet
        .save(&registration)
        .expect("registration written");
    let token = &double_puppet.as_token;
    let extra = format!(
        "    require_login: true\n{PERMISSIONS}double_puppet:\n  localhost: \"as_token:{token}\"\n"
    );
    let (slot, _synapse, running, alice, portal) =
        loopback_with("dp", &extra, &[registration]).await;
    let bot = slot.bot();
    command_answer(&alice, &portal, &bot, "!loopback login").await;
    command_answer(&alice, &portal, &bot, "alice-remote").await;
    command_answer(&alice, &portal, &bot, "loopback").await;
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback remote-say from my phone").await,
        "Said on the network as alice-remote."
    );
    let said = wait_for(&alice, &portal, "the message as alice", |e| {
        e["content"]["body"] == "from my phone"
    })
    .await;
    assert_eq!(said["sender"], alice.user_id.as_str(), "{said}");
    assert_eq!(said["content"]["org.switchboard.double_puppet"], "loopback");
    command_answer(&alice, &portal, &bot, "!loopback version").await;
    assert_eq!(
        echo_answers(&alice, &portal).await,
        Vec::<String>::new(),
        "the double-puppeted message is not bridged back to the network"
    );
    running.stop().await.expect("clean stop");
}

/// A direct chat a user opens with the bot is their management room: commands there need no
/// prefix; a login that asks for a password moves to a room the bot opens, where it can
/// remove the password (in the user's own room it cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_the_management_room_need_no_prefix() {
    let extra = format!("    require_login: true\n{PERMISSIONS}");
    let (slot, _synapse, running, alice, _portal) = loopback("mgmt", &extra).await;
    let bot = slot.bot();
    let dm = room_with_bot(&alice, &bot, true).await;
    let help = command_answer(&alice, &dm, &bot, "help").await;
    assert!(
        help.contains("login [way]") && help.contains("remote-say"),
        "{help}"
    );
    assert!(
        !help.contains("!loopback"),
        "no prefix in the management room: {help}"
    );
    assert_eq!(
        command_answer(&alice, &dm, &bot, "hello").await,
        "Unknown command `hello`. Did you mean `help`? Send `help` to see the commands you can use."
    );
    // Alice made this room, and the bot may not remove her messages in it: the login, which
    // asks for a password, moves to a private room the bot opens for it.
    assert_eq!(
        command_answer(&alice, &dm, &bot, "login").await,
        "I cannot remove messages in this room, so your password would stay readable here. \
         I opened a private room for logging in to Loopback and invited you: go on there."
    );
    let login_room = alice
        .join_invite(WAIT)
        .await
        .expect("invited to the login room");
    wait_for(&alice, &login_room, "the first question there", |e| {
        e["sender"] == bot.as_str()
            && e["content"]["body"] == "Log in to the loopback network.\nSend your username."
    })
    .await;
    assert_eq!(
        command_answer(&alice, &login_room, &bot, "dm-alice").await,
        "Send your password."
    );
    let password = alice
        .send_text(&login_room, "loopback")
        .await
        .expect("sent");
    wait_for(&alice, &login_room, "the login", |e| {
        e["content"]["body"] == "Logged in as dm-alice."
    })
    .await;
    wait_for(&alice, &login_room, "the password removed", |e| {
        e["event_id"] == password.as_str() && is_redacted(e)
    })
    .await;
    assert_eq!(
        command_answer(&alice, &dm, &bot, "list-logins").await,
        "Your logins: dm-alice (user:dm-alice, connected)."
    );
    // Prefixed commands work there too.
    assert_eq!(
        command_answer(&alice, &dm, &bot, "!loopback logout").await,
        "Logged out of dm-alice."
    );
    running.stop().await.expect("clean stop");
}

/// A file goes both ways: alice's image is downloaded by the framework and reaches the
/// network; echo's copy comes back uploaded, from the puppet, with the same bytes. A file over
/// `media.max_bytes` is refused with a notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_both_ways_within_the_size_limit() {
    let extra = "media:\n  max_bytes: 1000\n";
    let (slot, _synapse, running, alice, portal) = loopback("media", extra).await;
    let image: Vec<u8> = (0..=255).cycle().take(600).collect();
    let mxc = alice
        .upload(image.clone(), "image/png", "cat.png")
        .await
        .expect("uploaded");
    let content = json!({
        "msgtype": "m.image", "body": "cat.png", "url": mxc,
        "info": { "mimetype": "image/png", "size": image.len() },
    });
    let sent = alice
        .send_event(&portal, "m.room.message", &content)
        .await
        .expect("sent");
    let back = wait_for(&alice, &portal, "echo's copy", |e| {
        e["sender"] == ECHO && e["content"]["msgtype"] == "m.image"
    })
    .await;
    assert_eq!(back["content"]["body"], "echo-cat.png");
    assert_eq!(back["content"]["info"]["mimetype"], "image/png");
    let url = back["content"]["url"].as_str().expect("mxc");
    assert_ne!(url, mxc, "uploaded again by the framework");
    assert_eq!(alice.download(url).await.expect("download"), image);

    let big = alice
        .upload(vec![7; 1500], "application/octet-stream", "big.bin")
        .await
        .expect("uploaded");
    let content =
        json!({ "msgtype": "m.file", "body": "big.bin", "url": big, "info": { "size": 1500 } });
    let refused = alice
        .send_event(&portal, "m.room.message", &content)
        .await
        .expect("sent");
    let bot = slot.bot();
    let notice = wait_for(&alice, &portal, "the too-large notice", |e| {
        e["sender"] == bot.as_str()
            && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == refused.as_str()
    })
    .await;
    let body = notice["content"]["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("1500 bytes, more than the 1000 allowed"),
        "{body}"
    );
    assert_ne!(sent, refused);
    running.stop().await.expect("clean stop");
}

/// The loopback network as the contract tests see it, driven by its admin's commands: what it
/// received from Matrix is what echo answered.
struct LoopbackNetwork<'a> {
    admin: &'a MatrixUser,
    room: String,
    bot: String,
}

#[switchboard_runtime::async_trait]
impl ContractSubject for LoopbackNetwork<'_> {
    async fn remote_send(&self, id: &str, text: &str) -> Result<(), String> {
        let command = format!("!loopback inject {id} {text}");
        command_answer(self.admin, &self.room, &self.bot, &command).await;
        Ok(())
    }

    async fn received(&self) -> Result<Vec<String>, String> {
        Ok(echo_answers(self.admin, &self.room)
            .await
            .into_iter()
            .filter_map(|answer| answer.strip_prefix("echo: ").map(str::to_owned))
            .collect())
    }

    async fn set_reachable(&self, up: bool) -> Result<(), String> {
        let command = format!("!loopback network {}", if up { "up" } else { "down" });
        command_answer(self.admin, &self.room, &self.bot, &command).await;
        Ok(())
    }
}

/// The loopback bridge passes the framework's contract tests (`switchboard_testing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loopback_bridge_passes_the_contract_tests() {
    let (slot, _synapse, running, alice, portal) = loopback("contract", PERMISSIONS).await;
    let network = LoopbackNetwork {
        admin: &alice,
        room: portal.clone(),
        bot: slot.bot(),
    };
    let homeserver = Homeserver::of(&slot);
    let contract = Contract {
        user: &Tester(&alice),
        room: portal,
        subject: &network,
        homeserver: &homeserver,
        timeout: WAIT,
    };
    contract.run_all().await.unwrap_or_else(|e| panic!("{e}"));
    running.stop().await.expect("clean stop");
}

/// Joining the alias of a remote chat (`#_loopback_<chat>`) creates its portal on demand: the
/// homeserver asks Switchboard, the bridge creates the room with that alias, shows the chat's
/// latest history first (as sent on the network, `backfill.initial_messages` of it), and
/// messages there reach that chat. The alias of a portal that already has a room leads to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_chat_alias_creates_its_portal() {
    let history = "    history: 3\nbackfill:\n  initial_messages: 2\n";
    let (_slot, synapse, running, alice, lobby) = loopback("alias", history).await;
    // The lobby's portal existed before anyone asked for its alias: the alias is added to it,
    // and a user who was never invited can join through it.
    let bob = synapse.register_user("bob", false).await.expect("bob");
    let joined = bob
        .join("#_loopback_lobby:localhost")
        .await
        .expect("the alias of an existing portal resolves, and the portal lets bob in");
    assert_eq!(
        joined, lobby,
        "the alias leads to the existing portal, not a new one"
    );
    let room = alice
        .join("#_loopback_side:localhost")
        .await
        .expect("the alias resolves to a new portal");
    let shown: Vec<(String, i64)> = timeline(&alice, &room)
        .await
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            let body = e["content"]["body"].as_str().unwrap_or_default().to_owned();
            (body, e["origin_server_ts"].as_i64().unwrap_or_default())
        })
        .collect();
    let bodies: Vec<&str> = shown.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(bodies, ["history 2 of 3", "history 3 of 3"], "oldest first");
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let ages: Vec<i64> = shown.iter().map(|(_, ts)| (now_ms - ts) / 60_000).collect();
    assert_eq!(ages, [2, 1], "shown as sent, minutes ago: {shown:?}");
    let name = alice
        .get(&format!("/rooms/{}/state/m.room.name/", encode(&room)))
        .await
        .expect("room name");
    assert_eq!(name["name"], "Loopback side");
    let avatar = alice
        .get(&format!("/rooms/{}/state/m.room.avatar/", encode(&room)))
        .await
        .expect("room avatar");
    let url = avatar["url"].as_str().expect("mxc");
    assert_eq!(
        alice.download(url).await.expect("the avatar").get(..6),
        Some(&b"GIF89a"[..])
    );
    alice.send_text(&room, "hello side").await.expect("sent");
    wait_for(&alice, &room, "echo in the aliased portal", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: hello side"
    })
    .await;
    let again = alice
        .join("#_loopback_side:localhost")
        .await
        .expect("joined again");
    assert_eq!(again, room, "one portal per chat");
    running.stop().await.expect("clean stop");
}

/// When a portal room is upgraded, the portal follows it: the bot joins the replacement room
/// and messages there are bridged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_follows_its_room_upgrade() {
    let (slot, _synapse, running, alice, _lobby) = loopback("upgrade", PERMISSIONS).await;
    let bot = slot.bot();
    let room = alice
        .create_room(json!({ "preset": "public_chat", "invite": [bot] }))
        .await
        .expect("room");
    alice
        .wait_for_event(&room, WAIT, |e| {
            e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
        })
        .await
        .expect("the bot joins");
    assert_eq!(
        command_answer(&alice, &room, &bot, "!loopback bridge up").await,
        "This room is now bridged to up on Loopback."
    );
    let upgraded = alice
        .post(
            &format!("/rooms/{}/upgrade", encode(&room)),
            &json!({ "new_version": "10" }),
        )
        .await
        .expect("upgraded");
    let new_room = upgraded["replacement_room"]
        .as_str()
        .expect("room id")
        .to_owned();
    alice
        .wait_for_event(&new_room, WAIT, |e| {
            e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
        })
        .await
        .expect("the bot follows into the new room");
    alice
        .send_text(&new_room, "after upgrade")
        .await
        .expect("sent");
    wait_for(&alice, &new_room, "echo in the upgraded room", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: after upgrade"
    })
    .await;
    running.stop().await.expect("clean stop");
}

/// Echo's answer to alice's login mentions her (notified, with a pill); her pill for echo's
/// puppet reaches the plain-text network as `@echo`.
async fn mentions_go_both_ways(alice: &MatrixUser, portal: &str, answer: &Value) {
    // Echo mentions her login, which is alice in Matrix: notified, with a pill.
    assert_eq!(
        answer["content"]["m.mentions"],
        json!({ "user_ids": [alice.user_id] })
    );
    let pill = format!(
        "<a href=\"https://matrix.to/#/{}\">alice-remote</a>",
        alice.user_id
    );
    assert_eq!(
        answer["content"]["formatted_body"],
        format!("echo: for {pill}: hello again")
    );
    // Her pill for echo's puppet reaches the plain-text network as `@echo`.
    let html = format!("<b>hey</b> <a href=\"https://matrix.to/#/{ECHO}\">Loopback echo</a>");
    let content = json!({
        "msgtype": "m.text", "body": "hey Loopback echo",
        "format": "org.matrix.custom.html", "formatted_body": html,
    });
    alice
        .send_event(portal, "m.room.message", &content)
        .await
        .expect("sent");
    wait_for(alice, portal, "the mention on the network", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: for alice-remote: hey @echo"
    })
    .await;
}

/// `sync` brings the portal up to date with its chat: the chat's members (echo) join and its
/// topic and avatar are set, through the bridge's remote events; and a Matrix user's joining
/// reached the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_brings_the_portal_up_to_date() {
    let (slot, _synapse, running, alice, portal) = loopback("sync", "").await;
    assert_eq!(
        command_answer(&alice, &portal, &slot.bot(), "!loopback sync").await,
        "Synced with the loopback network."
    );
    let topic = alice
        .get(&format!("/rooms/{}/state/m.room.topic/", encode(&portal)))
        .await
        .expect("topic");
    assert_eq!(topic["topic"], "Echo answers everything said in lobby");
    let avatar = alice
        .get(&format!("/rooms/{}/state/m.room.avatar/", encode(&portal)))
        .await
        .expect("the chat's avatar");
    assert!(
        avatar["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("mxc://")),
        "{avatar}"
    );
    let members = alice.joined_members(&portal).await.expect("members");
    assert!(members.iter().any(|m| m == ECHO), "{members:?}");
    // Alice's join reached the network, which keeps its members in the portal's data.
    assert_eq!(
        command_answer(&alice, &portal, &slot.bot(), "!loopback who").await,
        format!("In lobby: {}", alice.user_id)
    );
    running.stop().await.expect("clean stop");
}

/// The room's ephemeral events of `event_type` in a full sync.
async fn ephemeral(user: &MatrixUser, room: &str, event_type: &str) -> Vec<Value> {
    let Ok(sync) = user.get("/sync?timeout=0").await else {
        return Vec::new();
    };
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == event_type)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Typing and read receipts reach the network: echo types while alice types, and once she
/// has read echo's answer, echo has read her message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_read_receipts_reach_the_network() {
    let (_slot, _synapse, running, alice, portal) = loopback("presence", "").await;
    let hi = alice.send_text(&portal, "hi").await.expect("sent");
    let answer = wait_for(&alice, &portal, "echo's answer", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: hi"
    })
    .await;
    let typing = format!(
        "/rooms/{}/typing/{}",
        encode(&portal),
        encode(&alice.user_id)
    );
    alice
        .put(&typing, &json!({ "typing": true, "timeout": 30000 }))
        .await
        .expect("typing");
    wait_until(WAIT, "echo typing", || async {
        ephemeral(&alice, &portal, "m.typing")
            .await
            .iter()
            .any(|e| {
                e["content"]["user_ids"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|u| u == ECHO))
            })
            .then_some(())
    })
    .await
    .expect("echo types while alice types");
    let answer_id = answer["event_id"].as_str().expect("id");
    alice
        .post(
            &format!(
                "/rooms/{}/receipt/m.read/{}",
                encode(&portal),
                encode(answer_id)
            ),
            &json!({}),
        )
        .await
        .expect("receipt");
    wait_until(WAIT, "echo's read receipt", || async {
        ephemeral(&alice, &portal, "m.receipt")
            .await
            .iter()
            .any(|e| !e["content"][hi.as_str()]["m.read"][ECHO].is_null())
            .then_some(())
    })
    .await
    .expect("echo has read alice's message");
    running.stop().await.expect("clean stop");
}

/// A message in a thread reaches the network with its thread, and echo answers in the same
/// thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_go_both_ways() {
    let (_slot, _synapse, running, alice, portal) = loopback("thread", "").await;
    let root = alice.send_text(&portal, "root").await.expect("sent");
    wait_for(&alice, &portal, "echo's answer to the root", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: root"
    })
    .await;
    let in_thread = alice
        .send_event(
            &portal,
            "m.room.message",
            &json!({
                "msgtype": "m.text", "body": "in the thread",
                "m.relates_to": {
                    "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                    "m.in_reply_to": { "event_id": root },
                },
            }),
        )
        .await
        .expect("sent");
    let answer = wait_for(&alice, &portal, "echo's answer in the thread", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: in the thread"
    })
    .await;
    let relation = &answer["content"]["m.relates_to"];
    assert_eq!(relation["rel_type"], "m.thread", "{answer}");
    assert_eq!(relation["event_id"], root.as_str());
    assert_eq!(relation["m.in_reply_to"]["event_id"], in_thread.as_str());
    assert_eq!(relation["is_falling_back"], false);
    running.stop().await.expect("clean stop");
}

/// A shared location reaches the network as a location, and echo shares the same place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_go_both_ways() {
    let (_slot, _synapse, running, alice, portal) = loopback("geo", "").await;
    let content =
        json!({ "msgtype": "m.location", "body": "the office", "geo_uri": "geo:52.52,13.40" });
    alice
        .send_event(&portal, "m.room.message", &content)
        .await
        .expect("sent");
    let answer = wait_for(&alice, &portal, "echo's location", |e| {
        e["sender"] == ECHO && e["content"]["msgtype"] == "m.location"
    })
    .await;
    assert_eq!(answer["content"]["geo_uri"], "geo:52.52,13.40");
    assert_eq!(answer["content"]["body"], "echo: the office");
    running.stop().await.expect("clean stop");
}

/// The membership of `user` in `room` once it is `membership`, waited for.
async fn membership_of(viewer: &MatrixUser, room: &str, user: &str, membership: &str) -> Value {
    viewer
        .wait_for_event(room, WAIT, |e| {
            e["type"] == "m.room.member"
                && e["state_key"] == user
                && e["content"]["membership"] == membership
        })
        .await
        .unwrap_or_else(|e| panic!("{user} {membership} in {room}: {e}"))
}

/// Inviting a puppet starts a direct chat on the network: the puppet joins with the remote
/// user's name, brings the bot, and the remote user answers there. Invites of an unknown
/// remote user, by a relay-level user, and to a second chat with the same person are declined
/// with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inviting_a_puppet_starts_a_direct_chat() {
    let (slot, synapse, running, alice, _lobby) = loopback("dm", PERMISSIONS).await;
    let carol = "@_loopback_carol:localhost";
    let dm = alice
        .create_room(
            json!({ "is_direct": true, "preset": "trusted_private_chat", "invite": [carol] }),
        )
        .await
        .expect("a direct chat with carol's puppet");
    membership_of(&alice, &dm, carol, "join").await;
    membership_of(&alice, &dm, &slot.bot(), "join").await;
    let profile = alice
        .get(&format!("/profile/{}", encode(carol)))
        .await
        .expect("carol's profile");
    assert_eq!(profile["displayname"], "Loopback carol");
    alice.send_text(&dm, "hi carol").await.expect("sent");
    wait_for(&alice, &dm, "carol's answer", |e| {
        e["sender"] == carol && e["content"]["body"] == "echo: hi carol"
    })
    .await;

    let nobody = "@_loopback_nobody:localhost";
    let room = alice
        .create_room(json!({ "is_direct": true, "invite": [nobody] }))
        .await
        .expect("a chat with nobody");
    let left = membership_of(&alice, &room, nobody, "leave").await;
    let reason = left["content"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not a user of Loopback"), "{reason}");

    let again = alice
        .create_room(json!({ "is_direct": true, "invite": [carol] }))
        .await
        .expect("a second chat with carol");
    let left = membership_of(&alice, &again, carol, "leave").await;
    let reason = left["content"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&dm), "points at the first chat: {reason}");

    let bob = synapse.register_user("bob", false).await.expect("bob");
    let dave = "@_loopback_dave:localhost";
    let relayed = bob
        .create_room(json!({ "is_direct": true, "invite": [dave] }))
        .await
        .expect("bob's chat with dave");
    let left = membership_of(&bob, &relayed, dave, "leave").await;
    let reason = left["content"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("may not start chats"), "{reason}");
    running.stop().await.expect("clean stop");
}

/// With two logins, a user's messages in a portal go through the login that owns it there:
/// the oldest until they choose another with `use-login`, which is kept for that portal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_answers_through_the_login_that_owns_it() {
    let extra = format!("    require_login: true\n{PERMISSIONS}");
    let (slot, _synapse, running, alice, portal) = loopback("owner", &extra).await;
    let bot = slot.bot();
    for name in ["alice-one", "alice-two"] {
        command_answer(&alice, &portal, &bot, "!loopback login").await;
        command_answer(&alice, &portal, &bot, name).await;
        alice.send_text(&portal, "loopback").await.expect("sent");
        wait_for(&alice, &portal, "the login", |e| {
            e["content"]["body"] == format!("Logged in as {name}.").as_str()
        })
        .await;
    }
    alice.send_text(&portal, "first").await.expect("sent");
    wait_for(&alice, &portal, "echo through the oldest login", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: for alice-one: first"
    })
    .await;
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback use-login user:nobody").await,
        "You have no login user:nobody; see `!loopback list-logins`."
    );
    assert_eq!(
        command_answer(&alice, &portal, &bot, "!loopback use-login user:alice-two").await,
        "Your messages in this room now go through alice-two."
    );
    alice.send_text(&portal, "second").await.expect("sent");
    wait_for(&alice, &portal, "echo through the chosen login", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: for alice-two: second"
    })
    .await;
    running.stop().await.expect("clean stop");
    // The choice is stored with the portal: it holds after a restart.
    let running = slot.start().await.expect("Switchboard starts again");
    alice.send_text(&portal, "third").await.expect("sent");
    wait_for(
        &alice,
        &portal,
        "echo through the chosen login after the restart",
        |e| e["sender"] == ECHO && e["content"]["body"] == "echo: for alice-two: third",
    )
    .await;
    running.stop().await.expect("clean stop");
}

/// Third-party lookups through a real Synapse: the protocol with its fields and instance, a
/// user found by name (as their puppet), a chat found by name (as its portal alias, which a
/// user then joins); and the reverse lookups, asked of Switchboard as the homeserver would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_lookups_follow_the_spec_through_synapse() {
    let (slot, _synapse, running, alice, _lobby) = loopback("3pid", "").await;
    assert_eq!(slot.registration.protocols, ["loopback"]);

    let protocols = alice.get("/thirdparty/protocols").await.expect("protocols");
    let loopback = &protocols["loopback"];
    assert_eq!(loopback["user_fields"], json!(["user"]), "{protocols}");
    assert_eq!(loopback["location_fields"], json!(["chat"]));
    assert_eq!(loopback["field_types"]["chat"]["placeholder"], "lobby");
    let instance = &loopback["instances"][0];
    assert_eq!(instance["desc"], "The loopback network");
    assert!(
        instance["instance_id"]
            .as_str()
            .is_some_and(|id| id.contains("loopback")),
        "Synapse gives the instance its directory id: {instance}"
    );
    assert_eq!(
        alice
            .get("/thirdparty/protocol/loopback")
            .await
            .expect("one protocol"),
        *loopback
    );

    let users = alice
        .get("/thirdparty/user/loopback?user=bob")
        .await
        .expect("users");
    assert_eq!(
        users,
        json!([{ "userid": "@_loopback_bob:localhost", "protocol": "loopback", "fields": { "user": "bob" } }])
    );
    let nobody = alice
        .get("/thirdparty/user/loopback?user=nobody-here")
        .await
        .expect("an empty answer");
    assert_eq!(nobody, json!([]));

    let locations = alice
        .get("/thirdparty/location/loopback?chat=garden")
        .await
        .expect("locations");
    assert_eq!(
        locations,
        json!([{ "alias": "#_loopback_garden:localhost", "protocol": "loopback", "fields": { "chat": "garden" } }])
    );
    let garden = alice
        .join("#_loopback_garden:localhost")
        .await
        .expect("the alias found leads to the chat's portal");
    assert!(garden.starts_with('!'));

    // The reverse lookups, as the homeserver asks them.
    let http = reqwest::Client::new();
    let ask = |path: &str| {
        http.get(format!(
            "{}/_matrix/app/v1/thirdparty/{path}",
            slot.as_url()
        ))
        .bearer_auth(&slot.registration.hs_token)
        .send()
    };
    let by_id: Value = ask("user?userid=%40_loopback_bob%3Alocalhost")
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(by_id[0]["fields"], json!({ "user": "bob" }));
    let by_alias: Value = ask("location?alias=%23_loopback_garden%3Alocalhost")
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(by_alias[0]["fields"], json!({ "chat": "garden" }));
    let unknown = ask("protocol/irc").await.expect("answered");
    assert_eq!(unknown.status(), 404);
    running.stop().await.expect("clean stop");
}

/// Switchboard was down longer than `outage_notices.after_secs` while alice wrote in a portal:
/// after the restart her message is delivered, and the portal is told once that messages from
/// that time arrive late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_is_told_once_that_messages_from_a_downtime_arrive_late() {
    let extra = "outage_notices:\n  after_secs: 2\n";
    let (slot, _synapse, running, alice, portal) = loopback("downtime", extra).await;
    let bot = slot.bot();
    running.stop().await.expect("stopped");
    alice
        .send_text(&portal, "while you were away")
        .await
        .expect("sent while Switchboard is down");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let running = slot.start().await.expect("Switchboard starts again");
    wait_for(&alice, &portal, "the late message echoed", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: while you were away"
    })
    .await;
    let told = wait_for(&alice, &portal, "the downtime notice", |e| {
        e["sender"] == bot.as_str()
            && e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("ℹ️ Switchboard was offline from "))
    })
    .await;
    assert!(
        told["content"]["body"]
            .as_str()
            .is_some_and(|b| b.ends_with("are being delivered to Loopback now, late.")),
        "{told}"
    );
    alice.send_text(&portal, "and now").await.expect("sent");
    wait_for(&alice, &portal, "the next message echoed", |e| {
        e["sender"] == ECHO && e["content"]["body"] == "echo: and now"
    })
    .await;
    let notices = alice
        .count_events(&portal, |e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("ℹ️ Switchboard was offline"))
        })
        .await
        .expect("timeline");
    assert_eq!(notices, 1, "told once");
    running.stop().await.expect("clean stop");
}

/// A 40 MiB file goes through the loopback bridge and back (alice → Switchboard → the network
/// → echo's copy uploaded again) in the real binary, whose peak memory stays far below the
/// file's size: downloads and uploads are streamed through a temporary file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_mib_file_is_streamed_both_ways_without_being_held_in_memory() {
    const SIZE: usize = 40 * 1024 * 1024;
    let config = "bridges:\n  loopback:\n    enabled: true\n    invite: [\"@alice:localhost\"]\n";
    let slot = Slot::with_config("bigfile", config).expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    let alice = synapse.register_user("alice", false).await.expect("alice");
    slot.point_at(&synapse.base_url()).expect("config");
    let child = slot.spawn_process().await.expect("Switchboard runs");
    let portal = alice.join_invite(WAIT).await.expect("the lobby");
    let pid = child.id().expect("running");
    let peak_kib = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
    };
    let before = peak_kib();

    let file: Vec<u8> = (0..=252u8).cycle().take(SIZE).collect();
    let mxc = alice
        .upload(file.clone(), "application/octet-stream", "big.bin")
        .await
        .expect("uploaded");
    let content = json!({
        "msgtype": "m.file", "body": "big.bin", "url": mxc, "info": { "size": SIZE },
    });
    alice
        .send_event(&portal, "m.room.message", &content)
        .await
        .expect("sent");
    let back = alice
        .wait_for_event(&portal, Duration::from_mins(2), |e| {
            e["sender"] == ECHO && e["content"]["body"] == "echo-big.bin"
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", slot.process_log()));
    let url = back["content"]["url"].as_str().expect("mxc");
    assert_eq!(back["content"]["info"]["size"], SIZE);
    let copy = alice.download(url).await.expect("echo's copy");
    assert!(copy == file, "the same 40 MiB came back");

    let after = peak_kib();
    eprintln!(
        "big file: Switchboard's peak RSS {before} KiB before, {after} KiB after 40 MiB both ways"
    );
    assert!(
        after < before + 16 * 1024,
        "peak memory grew by {} KiB for a 40 MiB file",
        after - before
    );
}
