//! End-to-end tests against a real Synapse: a real user talks to the echo bot through the real
//! homeserver, and Switchboard is crashed, replayed and starved to prove it loses and doubles
//! nothing. Each test starts its own Synapse (about 3 s) so tests stay independent.

use std::time::Duration;

use crate::common::proxy::{Proxy, SendMode};
use crate::common::switchboard_instance::Slot;
use crate::common::{MatrixUser, Synapse, wait_until};
use serde_json::{Value, json};
use switchboard_runtime::HomeserverClient;
use switchboard_runtime::client::{ClientConfig, ClientMetrics};
use switchboard_runtime::config::SqliteSync;
use switchboard_runtime::ruma::{OwnedRoomId, OwnedUserId};
use switchboard_runtime::store::Store;

const WAIT: Duration = Duration::from_secs(30);

/// The framework's homeserver client, acting for `slot`'s appservice.
async fn framework_client(synapse: &Synapse, slot: &Slot) -> (HomeserverClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("client.db").display()),
        2,
        SqliteSync::Normal,
    )
    .await
    .expect("store");
    let bot = OwnedUserId::try_from(slot.bot()).expect("bot id");
    let client = HomeserverClient::new(
        &synapse.base_url(),
        &slot.registration.as_token,
        bot,
        ClientConfig::default(),
        ClientMetrics::default(),
        std::sync::Arc::new(store),
    )
    .expect("client");
    (client, dir)
}

async fn synapse_with(slots: &[&Slot]) -> Synapse {
    let files: Vec<_> = slots.iter().map(|s| s.registration_path()).collect();
    Synapse::start(&files).await.expect("Synapse starts")
}

/// A real user, and a room the bot was invited to and has joined.
async fn user_in_room_with_bot(
    synapse: &Synapse,
    slot: &Slot,
    localpart: &str,
) -> (MatrixUser, String) {
    let user = synapse
        .register_user(localpart, false)
        .await
        .expect("user registered");
    let bot = slot.bot();
    let room = user
        .create_room(json!({ "name": format!("e2e {localpart}"), "invite": [bot] }))
        .await
        .expect("room created");
    user.wait_for_event(&room, WAIT, |e| {
        e["type"] == "m.room.member"
            && e["state_key"] == bot.as_str()
            && e["content"]["membership"] == "join"
    })
    .await
    .expect("the bot accepts the invite");
    (user, room)
}

fn is_reply_from(event: &Value, sender: &str, to: &str, body: &str) -> bool {
    event["sender"] == sender
        && event["content"]["body"] == body
        && event["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == to
}

async fn replies(user: &MatrixUser, room: &str, bot: &str, body: &str) -> usize {
    user.count_events(room, |e| e["sender"] == bot && e["content"]["body"] == body)
        .await
        .expect("timeline readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_users_ping_gets_a_pong_reply() {
    let slot = Slot::new("pingpong").expect("slot");
    let synapse = synapse_with(&[&slot]).await;
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let (user, room) = user_in_room_with_bot(&synapse, &slot, "alice").await;

    let ping_id = user.send_text(&room, "ping 1").await.expect("sent");
    let bot = slot.bot();
    let reply = user
        .wait_for_event(&room, WAIT, |e| is_reply_from(e, &bot, &ping_id, "pong 1"))
        .await
        .expect("pong 1 arrives as a reply to ping 1");
    assert_eq!(reply["type"], "m.room.message");
    user.send_text(&room, "no ping here").await.expect("sent");
    user.send_text(&room, "ping 2").await.expect("sent");
    user.wait_for_event(&room, WAIT, |e| {
        e["sender"] == bot.as_str() && e["content"]["body"] == "pong 2"
    })
    .await
    .expect("pong 2");
    assert_eq!(
        user.count_events(&room, |e| e["sender"] == bot.as_str()
            && e["type"] == "m.room.message")
            .await
            .expect("count"),
        2,
        "the bot answers pings only, once each"
    );
    assert!(
        slot.metric("switchboard_transactions_total{outcome=\"new\"}")
            .await
            >= 3.0
    );
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_commands_are_answered_within_the_senders_permissions() {
    let slot = Slot::with_config(
        "botcmds",
        "permissions:\n  localhost: user\n  \"@root:localhost\": admin\n",
    )
    .expect("slot");
    let synapse = synapse_with(&[&slot]).await;
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let (alice, room) = user_in_room_with_bot(&synapse, &slot, "alice").await;
    let admin = synapse.register_user("root", false).await.expect("admin");
    alice
        .invite(&room, "@root:localhost")
        .await
        .expect("admin invited");
    admin.join(&room).await.expect("admin joins");
    let bot = slot.bot();
    let answer = |user: &MatrixUser, to: String| {
        let (user, room, bot) = (user.clone(), room.clone(), bot.clone());
        async move {
            user.wait_for_event(&room, WAIT, |e| {
                e["sender"] == bot.as_str()
                    && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == to.as_str()
            })
            .await
            .expect("the bot answers the command")["content"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };

    let say = alice
        .send_text(&room, "!echo say hi  there")
        .await
        .expect("sent");
    assert_eq!(answer(&alice, say).await, "hi  there");
    let help = alice.send_text(&room, "!echo help").await.expect("sent");
    let text = answer(&alice, help).await;
    assert!(text.contains("!echo say <text>"), "{text}");
    assert!(!text.contains("rooms"), "alice may not run `rooms`: {text}");
    let refused = alice.send_text(&room, "!echo rooms").await.expect("sent");
    let text = answer(&alice, refused).await;
    assert!(
        text.contains("admin"),
        "refused with the level needed: {text}"
    );
    let wrong = alice.send_text(&room, "!echo sya x").await.expect("sent");
    let text = answer(&alice, wrong).await;
    assert!(text.contains("!echo say"), "a suggestion: {text}");
    let rooms = admin.send_text(&room, "!echo rooms").await.expect("sent");
    assert_eq!(answer(&admin, rooms).await, "I am in 1 room(s).");
    let empty = alice.send_text(&room, "!echo say").await.expect("sent");
    let text = answer(&alice, empty).await;
    assert!(text.contains("!echo say <text>"), "usage shown: {text}");
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_transaction_is_acknowledged_and_answered_once() {
    let slot = Slot::new("replay").expect("slot");
    let synapse = synapse_with(&[&slot]).await;
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let (user, room) = user_in_room_with_bot(&synapse, &slot, "bob").await;

    // The homeserver delivers the same transaction twice (as after a lost acknowledgement).
    let txn = json!({ "events": [{
        "type": "m.room.message", "room_id": room, "sender": user.user_id,
        "event_id": format!("$replayed{}", rand::random::<u32>()), "origin_server_ts": 1,
        "content": { "msgtype": "m.text", "body": "ping 7" }
    }]});
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let answer = http
            .put(format!(
                "{}/_matrix/app/v1/transactions/replay-1",
                slot.as_url()
            ))
            .bearer_auth(&slot.registration.hs_token)
            .json(&txn)
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.json::<Value>().await.expect("json"), json!({}));
    }
    let bot = slot.bot();
    user.wait_for_event(&room, WAIT, |e| {
        e["sender"] == bot.as_str() && e["content"]["body"] == "pong 7"
    })
    .await
    .expect("pong 7");
    // Give a second handling time to show up if it were going to.
    user.send_text(&room, "ping 8").await.expect("sent");
    user.wait_for_event(&room, WAIT, |e| e["content"]["body"] == "pong 8")
        .await
        .expect("pong 8");
    assert_eq!(replies(&user, &room, &bot, "pong 7").await, 1);
    let duplicates = slot
        .metric("switchboard_transactions_total{outcome=\"duplicate\"}")
        .await;
    assert!(
        (duplicates - 1.0).abs() < f64::EPSILON,
        "one duplicate counted, got {duplicates}"
    );
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // a table of cases, one per row of the spec's error list
async fn hs_token_checks_and_errors_follow_the_spec() {
    let mut slot = Slot::new("auth").expect("slot");
    // The smallest limit allowed, so the oversized body below fits in the socket buffers and
    // the 413 is read before the server closes the connection.
    slot.max_body_bytes = Some(64 * 1024);
    let synapse = synapse_with(&[&slot]).await;
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let http = reqwest::Client::new();
    let base = slot.as_url();
    let token = slot.registration.hs_token.clone();
    let txn = |id: &str| format!("{base}/_matrix/app/v1/transactions/{id}");
    let empty = json!({ "events": [] });
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "no token",
            http.put(txn("a")).json(&empty),
            401,
            "M_UNAUTHORIZED",
        ),
        (
            "wrong bearer",
            http.put(txn("a")).bearer_auth("wrong").json(&empty),
            403,
            "M_FORBIDDEN",
        ),
        (
            "wrong query token",
            http.put(format!("{}?access_token=wrong", txn("a")))
                .json(&empty),
            403,
            "M_FORBIDDEN",
        ),
        (
            "header and query disagree",
            http.put(format!("{}?access_token=wrong", txn("a")))
                .bearer_auth(&token)
                .json(&empty),
            403,
            "M_FORBIDDEN",
        ),
        (
            "unknown route",
            http.get(format!("{base}/_matrix/app/v1/nothing"))
                .bearer_auth(&token),
            404,
            "M_UNRECOGNIZED",
        ),
        (
            "wrong method",
            http.post(txn("b")).bearer_auth(&token).json(&empty),
            405,
            "M_UNRECOGNIZED",
        ),
        (
            "not JSON",
            http.put(txn("c")).bearer_auth(&token).body("{not json"),
            400,
            "M_NOT_JSON",
        ),
        (
            "not a transaction",
            http.put(txn("d"))
                .bearer_auth(&token)
                .json(&json!({"events": 5})),
            400,
            "M_BAD_JSON",
        ),
        (
            "too large",
            http.put(txn("e"))
                .bearer_auth(&token)
                .body(vec![b' '; 64 * 1024 + 1024]),
            413,
            "M_TOO_LARGE",
        ),
        (
            "user outside the namespace",
            http.get(format!("{base}/_matrix/app/v1/users/@stranger:localhost"))
                .bearer_auth(&token),
            404,
            "M_NOT_FOUND",
        ),
        (
            "unknown protocol",
            http.get(format!("{base}/_matrix/app/v1/thirdparty/protocol/none"))
                .bearer_auth(&token),
            404,
            "M_NOT_FOUND",
        ),
        (
            "unstable third-party route",
            http.get(format!("{base}/_matrix/app/unstable/thirdparty/user?x=1"))
                .bearer_auth(&token),
            404,
            "M_NOT_FOUND",
        ),
        (
            "third-party location",
            http.get(format!("{base}/_matrix/app/v1/thirdparty/location/none"))
                .bearer_auth(&token),
            404,
            "M_NOT_FOUND",
        ),
    ];
    for (what, request, status, errcode) in cases {
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: Value = response.json().await.expect("JSON error body");
        assert_eq!(body["errcode"], errcode, "{what}: {body}");
    }
    let legacy = http
        .put(format!("{base}/transactions/legacy-1?access_token={token}"))
        .json(&empty)
        .send()
        .await
        .expect("request");
    assert_eq!(legacy.status(), 200, "legacy route with the query token");
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inviting_a_namespaced_user_creates_the_puppet_and_the_homeserver_ping_reaches_us() {
    let slot = Slot::new("query").expect("slot");
    let synapse = synapse_with(&[&slot]).await;
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let user = synapse.register_user("carol", false).await.expect("user");
    let room = user
        .create_room(json!({ "name": "query" }))
        .await
        .expect("room");
    let puppet = "@_echo_query_dave:localhost";
    user.invite(&room, puppet)
        .await
        .expect("the homeserver asked Switchboard, which created the user");
    // Synapse asks Switchboard about the invited user before it pushes the invite event.
    let path = format!("/profile/{}", switchboard_testing::synapse::encode(puppet));
    wait_until(WAIT, "the puppet's profile", || async {
        let profile = user.get(&path).await.ok()?;
        (profile["displayname"] == "Echo dave").then_some(())
    })
    .await
    .expect("the puppet exists with its display name");

    // Joining a room the puppet was not invited to: the bot invites it, then it joins.
    let bot = slot.bot();
    user.invite(&room, &bot).await.expect("bot invited");
    user.wait_for_event(&room, WAIT, |e| {
        e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
    })
    .await
    .expect("bot joined");
    let (client, _store_dir) = framework_client(&synapse, &slot).await;
    let room_id = OwnedRoomId::try_from(room.as_str()).expect("room id");
    let puppet_id = OwnedUserId::try_from(puppet).expect("user id");
    client
        .ensure_joined(&room_id, &puppet_id)
        .await
        .expect("the puppet joins through the bot's invite");
    assert!(
        user.joined_members(&room)
            .await
            .expect("members")
            .contains(&puppet.to_owned())
    );

    let as_user = MatrixUser::new(
        synapse.base_url(),
        slot.bot(),
        slot.registration.as_token.clone(),
    )
    .expect("client");
    let pong = as_user
        .request(
            reqwest::Method::POST,
            &format!("/_matrix/client/v1/appservice/sb_{}/ping", slot.name),
            Some(&json!({ "transaction_id": "e2e" })),
        )
        .await
        .expect("the homeserver's ping reached Switchboard and was answered");
    assert!(pong["duration_ms"].is_u64(), "{pong}");
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_acknowledging_answers_once_after_restart() {
    let slot = Slot::new("kill").expect("slot");
    let synapse = synapse_with(&[&slot]).await;
    let proxy = Proxy::start(&synapse.base_url()).await.expect("proxy");
    slot.point_at(proxy.url()).expect("config");
    let mut child = slot.spawn_process().await.expect("switchboard runs");
    let (user, room) = user_in_room_with_bot(&synapse, &slot, "frank").await;
    let bot = slot.bot();

    // The transaction is acknowledged, but the reply cannot be sent yet.
    proxy.set_send_mode(SendMode::Refuse);
    let ping = user.send_text(&room, "ping 42").await.expect("sent");
    wait_until(WAIT, "the reply attempt", || async {
        (proxy.sends_seen() > 0).then_some(())
    })
    .await
    .expect("Switchboard tried to reply, so the transaction was acknowledged");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    proxy.set_send_mode(SendMode::Pass);

    let _child = slot.spawn_process().await.expect("switchboard restarts");
    user.wait_for_event(&room, WAIT, |e| is_reply_from(e, &bot, &ping, "pong 42"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", slot.process_log()));
    user.send_text(&room, "ping 43").await.expect("sent");
    user.wait_for_event(&room, WAIT, |e| e["content"]["body"] == "pong 43")
        .await
        .expect("pong 43");
    assert_eq!(
        replies(&user, &room, &bot, "pong 42").await,
        1,
        "answered exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_send_answer_is_retried_without_double_posting() {
    let slot = Slot::new("lost").expect("slot");
    let synapse = synapse_with(&[&slot]).await;
    let proxy = Proxy::start(&synapse.base_url()).await.expect("proxy");
    slot.point_at(proxy.url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let (user, room) = user_in_room_with_bot(&synapse, &slot, "grace").await;
    let bot = slot.bot();

    // Synapse posts the reply but Switchboard never hears so, and retries.
    proxy.set_send_mode(SendMode::ForwardThenFail);
    let ping = user.send_text(&room, "ping 9").await.expect("sent");
    wait_until(WAIT, "two send attempts", || async {
        (proxy.sends_seen() >= 2).then_some(())
    })
    .await
    .expect("Switchboard retried the send");
    proxy.set_send_mode(SendMode::Pass);
    user.wait_for_event(&room, WAIT, |e| is_reply_from(e, &bot, &ping, "pong 9"))
        .await
        .expect("pong 9");
    user.send_text(&room, "ping 10").await.expect("sent");
    user.wait_for_event(&room, WAIT, |e| e["content"]["body"] == "pong 10")
        .await
        .expect("pong 10");
    assert_eq!(
        replies(&user, &room, &bot, "pong 9").await,
        1,
        "shown exactly once"
    );
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_restart_mid_run_loses_no_message() {
    let slot = Slot::new("hsrestart").expect("slot");
    let mut synapse = synapse_with(&[&slot]).await;
    let proxy = Proxy::start(&synapse.base_url()).await.expect("proxy");
    slot.point_at(proxy.url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let (user, room) = user_in_room_with_bot(&synapse, &slot, "heidi").await;
    let bot = slot.bot();

    user.send_text(&room, "ping a").await.expect("sent");
    user.wait_for_event(&room, WAIT, |e| e["content"]["body"] == "pong a")
        .await
        .expect("pong a");
    // ping b is acknowledged by Switchboard, but its reply cannot go out before the homeserver
    // goes down; Switchboard keeps retrying through the outage.
    proxy.set_send_mode(SendMode::Refuse);
    let sends_before = proxy.sends_seen();
    user.send_text(&room, "ping b").await.expect("sent");
    wait_until(WAIT, "a reply attempt for ping b", || async {
        (proxy.sends_seen() > sends_before).then_some(())
    })
    .await
    .expect("ping b was acknowledged");
    synapse.stop().await;
    proxy.set_send_mode(SendMode::Pass);
    tokio::time::sleep(Duration::from_secs(1)).await;
    synapse.start_again().await.expect("Synapse restarts");
    user.send_text(&room, "ping c")
        .await
        .expect("sent after the restart");
    for body in ["pong b", "pong c"] {
        if let Err(e) = user
            .wait_for_event(&room, Duration::from_mins(1), |e| {
                e["content"]["body"] == body
            })
            .await
        {
            let timeline: Vec<String> = user
                .messages(&room, 50)
                .await
                .unwrap_or_default()
                .iter()
                .map(|e| format!("{} {} {}", e["sender"], e["type"], e["content"]["body"]))
                .collect();
            panic!(
                "{body}: {e}\ntimeline (newest first):\n{}",
                timeline.join("\n")
            );
        }
    }
    for body in ["pong a", "pong b", "pong c"] {
        assert_eq!(
            replies(&user, &room, &bot, body).await,
            1,
            "{body} shown once"
        );
    }
    running.stop().await.expect("clean shutdown");
}

/// A bot with a bug: it panics on every event whose body is `trigger`.
struct PanicsOn {
    trigger: &'static str,
}

#[switchboard_runtime::async_trait]
impl switchboard_runtime::Bot for PanicsOn {
    fn id(&self) -> &'static str {
        "panicky"
    }

    async fn on_room_event(
        &self,
        _ctx: &switchboard_runtime::BotContext,
        event: &switchboard_runtime::RoomEvent,
    ) -> Result<(), switchboard_runtime::PluginError> {
        let body = event.text_message().map(|(_, body)| body);
        assert!(body.as_deref() != Some(self.trigger), "a bug in the bot");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_panics_costs_one_event_and_every_room_goes_on() {
    let mut slot = Slot::new("panics").expect("slot");
    let mut plugins =
        switchboard::plugins::enabled_plugins(&slot.config().expect("config")).expect("plugins");
    plugins
        .bots
        .push(std::sync::Arc::new(PanicsOn { trigger: "ping 1" }));
    slot.register(&plugins).expect("registration");
    let synapse = synapse_with(&[&slot]).await;
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start_with(plugins).await.expect("Switchboard starts");
    let (alice, room_a) = user_in_room_with_bot(&synapse, &slot, "alice").await;
    let (bob, room_b) = user_in_room_with_bot(&synapse, &slot, "bob").await;
    let bot = slot.bot();

    // The echo bot runs before the broken one: it answers the very event the other panics on.
    alice.send_text(&room_a, "ping 1").await.expect("sent");
    bob.send_text(&room_b, "ping 2").await.expect("sent");
    alice.send_text(&room_a, "ping 3").await.expect("sent");
    for (user, room, pong) in [
        (&bob, &room_b, "pong 2"),
        (&alice, &room_a, "pong 1"),
        (&alice, &room_a, "pong 3"),
    ] {
        user.wait_for_event(room, WAIT, |e| {
            e["sender"] == bot.as_str() && e["content"]["body"] == pong
        })
        .await
        .unwrap_or_else(|e| panic!("{pong} arrives: {e}"));
    }
    assert_eq!(
        replies(&alice, &room_a, &bot, "pong 1").await,
        1,
        "the retries after the panic do not answer twice"
    );
    let panics = slot
        .metric("switchboard_handler_panics_total{plugin=\"panicky\"}")
        .await;
    assert!(
        (panics - 3.0).abs() < 0.5,
        "each attempt's panic is counted, then the event is given up: {panics}"
    );
    running.stop().await.expect("clean shutdown");
}
