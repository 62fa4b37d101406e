//! The MQTT bridge against a real Mosquitto and a real Synapse: what a device publishes
//! appears in the room from the device's puppet, templated; what a Matrix user says is
//! published with the right payload and MQTT 5 user properties; nothing published while the
//! broker restarts or while Switchboard is down is lost.

use std::time::Duration;

use crate::common::mosquitto::Mosquitto;
use crate::common::proxy::{Proxy, SendMode};
use crate::common::switchboard_instance::{Running, Slot};
use crate::common::{MatrixUser, Synapse};
use serde_json::Value;
use switchboard_testing::synapse::encode;

const WAIT: Duration = Duration::from_secs(30);

/// Switchboard with an MQTT bridge on `broker` whose mapping `sensors` takes
/// `sensors/+/temp` (the second level names the device) and publishes to `commands/sensors`,
/// and alice in its room.
async fn bridged(name: &str, broker: &Mosquitto) -> (Slot, Synapse, Running, MatrixUser, String) {
    bridged_with(name, broker, "").await
}

/// Like [`bridged`], with more settings for the mapping (each line indented 8 spaces).
async fn bridged_with(
    name: &str,
    broker: &Mosquitto,
    mapping: &str,
) -> (Slot, Synapse, Running, MatrixUser, String) {
    bridged_by(name, &mqtt_config(name, broker, "", mapping)).await
}

/// Switchboard with `config` (see [`mqtt_config`]), and alice in the mapping's room.
async fn bridged_by(name: &str, config: &str) -> (Slot, Synapse, Running, MatrixUser, String) {
    let slot = Slot::with_config(name, config).expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    let alice = synapse.register_user("alice", false).await.expect("alice");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let room = alice
        .join_invite(WAIT)
        .await
        .expect("alice is invited to the mapping's room");
    connected(&slot).await;
    (slot, synapse, running, alice, room)
}

/// The config of an MQTT bridge on `broker` with more `bridge` settings (each line indented 4
/// spaces) and the `sensors` mapping of [`bridged`] with more `mapping` settings.
fn mqtt_config(name: &str, broker: &Mosquitto, bridge: &str, mapping: &str) -> String {
    let credentials = broker
        .credentials
        .as_ref()
        .map_or_else(String::new, |(u, p)| {
            format!("    username: {u}\n    password: {p}\n")
        })
        + &broker.tls.as_ref().map_or_else(String::new, |(_, files)| {
            format!(
                "    ca_file: {}\n    client_cert_file: {}\n    client_key_file: {}\n",
                files.ca.display(),
                files.client_cert.display(),
                files.client_key.display()
            )
        });
    format!(
        "bridges:\n  mqtt:\n    enabled: true\n    broker: {url}\n    client_id: sb-{name}\n\
         {credentials}{bridge}    invite: [\"@alice:localhost\"]\n    mappings:\n      - name: sensors\n        \
         topics: [\"sensors/+/temp\"]\n        device_level: 1\n        \
         template: \"{{{{payload.temperature}}}} °C in {{{{topic.[1]}}}}\"\n        \
         publish_to: commands/sensors\n        envelope: true\n        offline_payload: offline\n{mapping}",
        url = broker.url(),
    )
}

/// Asserts that each of `bodies` is shown exactly once in `room`.
async fn shown_once(user: &MatrixUser, room: &str, bodies: &[String]) {
    let timeline = user.messages(room, 100).await.expect("timeline");
    for body in bodies {
        let copies = timeline
            .iter()
            .filter(|e| e["content"]["body"] == body.as_str())
            .count();
        assert_eq!(copies, 1, "{body} shown once");
    }
}

/// Waits until the bridge reports itself connected (its subscriptions confirmed).
async fn connected(slot: &Slot) {
    crate::common::wait_until(WAIT, "the MQTT bridge connected", || async {
        let state = slot
            .metric("switchboard_bridge_state{bridge=\"mqtt\",state=\"connected\"}")
            .await;
        (state > 0.5).then_some(())
    })
    .await
    .expect("connected to the broker");
}

/// Sends `command` as `user` in `room`; the bot's answer.
async fn answer(user: &MatrixUser, room: &str, bot: &str, command: &str) -> String {
    let sent = user.send_text(room, command).await.expect("sent");
    let reply = user
        .wait_for_event(room, WAIT, |e| {
            e["sender"] == bot
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == sent.as_str()
        })
        .await
        .unwrap_or_else(|e| panic!("no answer to {command}: {e}"));
    reply["content"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits for a message with `body` in `room`; returns it.
async fn message(user: &MatrixUser, room: &str, body: &str) -> Value {
    user.wait_for_event(room, WAIT, |e| e["content"]["body"] == body)
        .await
        .unwrap_or_else(|e| panic!("{body:?} in the room: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_come_from_device_puppets_and_room_messages_are_published() {
    let broker = Mosquitto::start().expect("mosquitto");
    broker
        .publish("sensors/garage/temp", r#"{"temperature": 3}"#, &["-r"])
        .expect("a retained value before the bridge subscribes");
    let (slot, _synapse, running, alice, room) = bridged("mqttflow", &broker).await;
    let state = format!(
        "/rooms/{}/state/org.switchboard.mqtt.retained/{}",
        encode(&room),
        encode("sensors/garage/temp")
    );
    let retained =
        crate::common::wait_until(WAIT, "the retained value in the room state", || async {
            alice.get(&state).await.ok()
        })
        .await
        .expect("retained value as state");
    assert_eq!(retained["text"], "3 °C in garage");

    broker
        .publish("sensors/kitchen/temp", r#"{"temperature": 21.5}"#, &[])
        .expect("published");
    let reading = message(&alice, &room, "21.5 °C in kitchen").await;
    let kitchen = "@_mqtt_kitchen:localhost";
    assert_eq!(
        reading["sender"], kitchen,
        "the device speaks as its puppet"
    );
    let profile = alice
        .get(&format!("/profile/{}", encode(kitchen)))
        .await
        .expect("profile");
    assert_eq!(profile["displayname"], "kitchen");
    broker
        .publish("sensors/hall/humidity", "not mapped", &[])
        .expect("published");
    broker
        .publish("sensors/hall/temp", "not json", &[])
        .expect("published");
    let plain = message(&alice, &room, "not json").await;
    assert_eq!(
        plain["sender"], "@_mqtt_hall:localhost",
        "no JSON: the text as it is"
    );

    let mut listener = broker
        .subscribe("commands/sensors", "%p|%P", &[])
        .await
        .expect("mosquitto_sub");
    let sent = alice
        .send_text(&room, "open the window")
        .await
        .expect("sent");
    let line = listener
        .wait_for(WAIT, |l| l.contains("open the window"))
        .await
        .expect("published to commands/sensors");
    let (payload, properties) = line.split_once('|').expect("payload|properties");
    let envelope: Value = serde_json::from_str(payload).expect("a JSON envelope");
    assert_eq!(envelope["sender"], "@alice:localhost");
    assert_eq!(envelope["event_id"], sent.as_str());
    assert_eq!(envelope["room"], room.as_str());
    assert!(
        properties.contains("sender:@alice:localhost"),
        "{properties}"
    );
    assert!(
        properties.contains(&format!("event_id:{sent}")),
        "{properties}"
    );
    let porch = broker
        .subscribe(
            "porch/inbox",
            "%p",
            &[
                "--will-topic",
                "sensors/porch/temp",
                "--will-payload",
                "offline",
                "--will-qos",
                "1",
            ],
        )
        .await
        .expect("a device with a last will");
    drop(porch);
    let offline = message(&alice, &room, "porch went offline").await;
    assert_eq!(offline["content"]["msgtype"], "m.notice");
    assert_eq!(offline["sender"], "@_mqtt_porch:localhost");
    let timeline = alice.messages(&room, 50).await.expect("timeline");
    for absent in ["not mapped", "3 °C in garage"] {
        assert!(
            !timeline.iter().any(|e| e["content"]["body"] == absent),
            "{absent:?} is not in the timeline"
        );
    }
    drop(slot);
    running.stop().await.expect("clean stop");
}

/// QoS 1 with a persistent session: messages published while Switchboard is down, and while
/// the broker restarts, all arrive, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_published_during_a_restart_is_lost() {
    let mut broker = Mosquitto::start_with_password("bridge", "bridge-pass").expect("mosquitto");
    let (slot, _synapse, running, alice, room) = bridged("mqttrestart", &broker).await;
    broker
        .publish("sensors/a/temp", r#"{"temperature": 1}"#, &[])
        .expect("published");
    message(&alice, &room, "1 °C in a").await;

    running.stop().await.expect("stopped");
    for n in 2..=4 {
        broker
            .publish("sensors/a/temp", &format!(r#"{{"temperature": {n}}}"#), &[])
            .expect("published while Switchboard is down");
    }
    let running = slot.start().await.expect("Switchboard starts again");
    for n in 2..=4 {
        message(&alice, &room, &format!("{n} °C in a")).await;
    }

    broker.restart().expect("the broker restarts");
    connected(&slot).await;
    broker
        .publish("sensors/a/temp", r#"{"temperature": 5}"#, &[])
        .expect("published after the broker restarted");
    message(&alice, &room, "5 °C in a").await;
    let bodies: Vec<String> = (1..=5).map(|n| format!("{n} °C in a")).collect();
    shown_once(&alice, &room, &bodies).await;
    running.stop().await.expect("clean stop");
}

/// Two rooms with a large backlog each (more than the 64 places of rumqttc's request queue),
/// published at the broker while Switchboard is down: once it is back, each room shows all of
/// its readings, once each and in the order they were published, though the two rooms are
/// served at the same time (the acknowledgements once blocked the connection for good after
/// 65).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_arrives_whole_and_in_order_in_each_room() {
    const BACKLOG: usize = 150;
    let broker = Mosquitto::start().expect("mosquitto");
    let garden = "      - name: garden\n        topics: [\"garden/+/temp\"]\n        direction: in\n        \
                  device_level: 1\n        template: \"{{payload.temperature}} °C in {{topic.[1]}}\"\n";
    let (slot, _synapse, running, alice, first) =
        bridged_with("mqttbacklog", &broker, garden).await;
    let second = alice.join_invite(WAIT).await.expect("the second room");
    // Which room is which: a first reading tells.
    broker
        .publish("sensors/b/temp", r#"{"temperature": 0}"#, &[])
        .expect("published");
    let shows_it = |room: String| {
        let alice = &alice;
        async move {
            let timeline = alice.messages(&room, 10).await.ok()?;
            timeline
                .iter()
                .any(|e| e["content"]["body"] == "0 °C in b")
                .then_some(room)
        }
    };
    let sensors = crate::common::wait_until(WAIT, "the first reading", || async {
        match shows_it(first.clone()).await {
            Some(room) => Some(room),
            None => shows_it(second.clone()).await,
        }
    })
    .await
    .expect("the first reading arrives in one of the rooms");
    let garden = if sensors == first { second } else { first };
    running.stop().await.expect("stopped");
    let readings: Vec<String> = (1..=BACKLOG)
        .map(|n| format!(r#"{{"temperature": {n}}}"#))
        .collect();
    broker
        .publish_lines("sensors/b/temp", &readings)
        .expect("published while Switchboard is down");
    broker
        .publish_lines("garden/g/temp", &readings)
        .expect("published while Switchboard is down");
    let running = slot.start().await.expect("Switchboard starts again");
    for (room, device, first_reading) in [(&sensors, "b", 0), (&garden, "g", 1)] {
        let wanted: Vec<String> = (first_reading..=BACKLOG)
            .map(|n| format!("{n} °C in {device}"))
            .collect();
        alice
            .wait_for_event(room, Duration::from_mins(2), |e| {
                e["content"]["body"] == format!("{BACKLOG} °C in {device}").as_str()
            })
            .await
            .expect("the last of the backlog arrives");
        let shown = readings_shown(&alice, room, " °C in ").await;
        assert_eq!(
            shown, wanted,
            "every reading of {device} in its room, once each, in order"
        );
    }
    running.stop().await.expect("clean stop");
}

/// The bodies containing `marker` in `room`, oldest first.
async fn readings_shown(user: &MatrixUser, room: &str, marker: &str) -> Vec<String> {
    let mut shown = Vec::new();
    let mut from = None;
    loop {
        let (events, next) = user
            .messages_page(room, from.as_deref(), 100)
            .await
            .expect("timeline page");
        if events.is_empty() {
            break;
        }
        shown.extend(
            events
                .iter()
                .filter_map(|e| e["content"]["body"].as_str())
                .filter(|b| b.contains(marker))
                .map(str::to_owned),
        );
        match next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    shown.reverse();
    shown
}

/// Switchboard killed after a message was shown in the room but before the broker was told:
/// the broker delivers it again after the restart, and it is still shown once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_showing_and_acknowledging_shows_the_message_once() {
    let broker = Mosquitto::start().expect("mosquitto");
    let slot =
        Slot::with_config("mqttcrash", &mqtt_config("mqttcrash", &broker, "", "")).expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    let alice = synapse.register_user("alice", false).await.expect("alice");
    let proxy = Proxy::start(&synapse.base_url()).await.expect("proxy");
    slot.point_at(proxy.url()).expect("config");
    let mut child = slot.spawn_process().await.expect("switchboard runs");
    let room = alice.join_invite(WAIT).await.expect("invited");
    connected(&slot).await;
    broker
        .publish("sensors/a/temp", r#"{"temperature": 1}"#, &[])
        .expect("published");
    message(&alice, &room, "1 °C in a").await;

    // The homeserver shows the message, but its answer is lost: not acknowledged to the broker.
    proxy.set_send_mode(SendMode::ForwardThenFail);
    let before = proxy.sends_seen();
    broker
        .publish("sensors/a/temp", r#"{"temperature": 2}"#, &[])
        .expect("published");
    message(&alice, &room, "2 °C in a").await;
    crate::common::wait_until(WAIT, "the send whose answer is lost", || async {
        (proxy.sends_seen() > before).then_some(())
    })
    .await
    .expect("sent");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    proxy.set_send_mode(SendMode::Pass);

    let _child = slot.spawn_process().await.expect("switchboard restarts");
    connected(&slot).await;
    broker
        .publish("sensors/a/temp", r#"{"temperature": 3}"#, &[])
        .expect("published after the restart");
    message(&alice, &room, "3 °C in a").await;
    let bodies: Vec<String> = (1..=3).map(|n| format!("{n} °C in a")).collect();
    shown_once(&alice, &room, &bodies).await;
}

/// A mapping that takes a power level to publish: alice, at 0, is told why her message was
/// not published; raised to 50 by the room's admin (the bridge bot), she publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_takes_the_power_level_the_mapping_asks_for() {
    let broker = Mosquitto::start().expect("mosquitto");
    let (slot, synapse, running, alice, room) =
        bridged_with("mqttpower", &broker, "        publish_power_level: 50\n").await;
    let bot_id = slot.bot();
    let mut listener = broker
        .subscribe("commands/sensors", "%p", &[])
        .await
        .expect("mosquitto_sub");
    let refused = alice.send_text(&room, "open the door").await.expect("sent");
    let notice = alice
        .wait_for_event(&room, WAIT, |e| {
            e["sender"] == bot_id.as_str()
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == refused.as_str()
        })
        .await
        .expect("alice is told");
    let text = notice["content"]["body"].as_str().unwrap_or_default();
    assert!(
        text.contains("it takes power level 50 in this room, and they have 0"),
        "{text}"
    );

    let bot = MatrixUser::new(synapse.base_url(), &bot_id, &slot.registration.as_token)
        .expect("the bot's client");
    let path = format!("/rooms/{}/state/m.room.power_levels/", encode(&room));
    let mut levels = bot.get(&path).await.expect("power levels");
    levels["users"][alice.user_id.as_str()] = 50.into();
    bot.put(&path, &levels).await.expect("alice raised to 50");
    alice
        .send_text(&room, "close the door")
        .await
        .expect("sent");
    // The first door message on the topic is the second one: the refused one never came.
    let first = listener
        .wait_for(WAIT, |l| l.contains("the door"))
        .await
        .expect("published once alice has the power level");
    assert!(first.contains(r#""body":"close the door""#), "{first}");
    running.stop().await.expect("clean stop");
}

/// A throttled mapping shows the first reading of a topic at once and, of those that come
/// within the interval, only the newest, at its end; every other topic has its own interval.
/// The readings in between are acknowledged: they do not come back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_topic_is_coalesced_to_its_latest_reading() {
    let broker = Mosquitto::start().expect("mosquitto");
    let throttle = "        throttle: {interval_secs: 2}\n";
    let (slot, _synapse, running, alice, room) =
        bridged_with("mqttthrottle", &broker, throttle).await;
    for n in 1..=4 {
        broker
            .publish("sensors/a/temp", &format!(r#"{{"temperature": {n}}}"#), &[])
            .expect("published");
    }
    broker
        .publish("sensors/b/temp", r#"{"temperature": 9}"#, &[])
        .expect("published");
    message(&alice, &room, "9 °C in b").await;
    let latest = message(&alice, &room, "4 °C in a").await;
    let first = message(&alice, &room, "1 °C in a").await;
    let waited = latest["origin_server_ts"].as_u64().unwrap_or_default()
        - first["origin_server_ts"].as_u64().unwrap_or_default();
    assert!(
        (1500..10_000).contains(&waited),
        "the newest reading came at the end of the interval, {waited} ms after the first"
    );

    running.stop().await.expect("stopped");
    let running = slot.start().await.expect("Switchboard starts again");
    connected(&slot).await;
    broker
        .publish("sensors/a/temp", r#"{"temperature": 5}"#, &[])
        .expect("published after the restart");
    message(&alice, &room, "5 °C in a").await;
    let timeline = alice.messages(&room, 100).await.expect("timeline");
    for dropped in ["2 °C in a", "3 °C in a"] {
        assert!(
            !timeline.iter().any(|e| e["content"]["body"] == dropped),
            "{dropped} was coalesced away, also after the restart"
        );
    }
    let shown: Vec<String> = ["1 °C in a", "4 °C in a", "9 °C in b", "5 °C in a"]
        .map(str::to_owned)
        .to_vec();
    shown_once(&alice, &room, &shown).await;
    running.stop().await.expect("clean stop");
}

/// Over TLS (`mqtts://`) with a client certificate, to a broker that requires one: readings
/// arrive and room messages are published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_client_certificate() {
    let broker = Mosquitto::start_tls().expect("mosquitto with TLS");
    let (_slot, _synapse, running, alice, room) = bridged("mqtttls", &broker).await;
    broker
        .publish("sensors/vault/temp", r#"{"temperature": 12}"#, &[])
        .expect("published");
    message(&alice, &room, "12 °C in vault").await;
    let mut listener = broker
        .subscribe("commands/sensors", "%p", &[])
        .await
        .expect("mosquitto_sub");
    alice.send_text(&room, "lock it").await.expect("sent");
    listener
        .wait_for(WAIT, |l| l.contains(r#""body":"lock it""#))
        .await
        .expect("published over TLS");
    assert!(
        broker.log().contains("sb-mqtttls"),
        "the bridge's session is at the broker"
    );
    running.stop().await.expect("clean stop");
}

/// With MQTT 3.1.1 (no properties): readings arrive, room messages are published, and the
/// persistent session keeps what is published while Switchboard is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_bridges_both_ways_and_keeps_its_session() {
    let broker = Mosquitto::start().expect("mosquitto");
    let config = mqtt_config("mqtt311", &broker, "    protocol: \"3.1.1\"\n", "");
    let (slot, _synapse, running, alice, room) = bridged_by("mqtt311", &config).await;
    broker
        .publish("sensors/cellar/temp", r#"{"temperature": 8}"#, &[])
        .expect("published");
    message(&alice, &room, "8 °C in cellar").await;
    let mut listener = broker
        .subscribe("commands/sensors", "%p", &[])
        .await
        .expect("mosquitto_sub");
    alice.send_text(&room, "heat on").await.expect("sent");
    listener
        .wait_for(WAIT, |l| l.contains(r#""body":"heat on""#))
        .await
        .expect("published with MQTT 3.1.1");
    assert!(
        broker.log().contains("as sb-mqtt311 (p2,"),
        "the bridge connected with MQTT 3.1.1 (protocol level 4 shows as p2 in the log): {}",
        broker.log()
    );

    running.stop().await.expect("stopped");
    broker
        .publish("sensors/cellar/temp", r#"{"temperature": 7}"#, &[])
        .expect("published while Switchboard is down");
    let running = slot.start().await.expect("Switchboard starts again");
    message(&alice, &room, "7 °C in cellar").await;
    running.stop().await.expect("clean stop");
}

/// Without a broker of its own the bridge starts the embedded one: a device publishing there
/// (MQTT 3.1.1) reaches the room, and room messages reach its subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_the_embedded_one_serves() {
    let port = crate::common::free_port().expect("a free port");
    let clients = Mosquitto::clients_for(port).expect("the test's MQTT clients");
    let config = mqtt_config("mqttembedded", &clients, "", "").replace(
        &format!("broker: {}", clients.url()),
        &format!("embedded_listen: 127.0.0.1:{port}"),
    );
    assert!(!config.contains("broker:"), "{config}");
    let (_slot, _synapse, running, alice, room) = bridged_by("mqttembedded", &config).await;
    clients
        .publish("sensors/porch/temp", r#"{"temperature": 15}"#, &[])
        .expect("published to the embedded broker");
    message(&alice, &room, "15 °C in porch").await;
    let mut listener = clients
        .subscribe("commands/sensors", "%p", &[])
        .await
        .expect("mosquitto_sub");
    alice.send_text(&room, "lights on").await.expect("sent");
    listener
        .wait_for(WAIT, |l| l.contains(r#""body":"lights on""#))
        .await
        .expect("published through the embedded broker");
    running.stop().await.expect("clean stop");
}

/// Room commands: the room's topics, the last value of one of them (not of others), and a
/// publication; only the configured publishers may publish, from messages or commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_commands_and_who_may_publish() {
    let broker = Mosquitto::start().expect("mosquitto");
    let only_alice = "        publishers: [\"@alice:localhost\"]\n        \
                      publish_allow: [\"commands/#\"]\n";
    let (slot, synapse, running, alice, room) = bridged_with("mqttcmds", &broker, only_alice).await;
    let bot = slot.bot();
    let topics = answer(&alice, &room, &bot, "!mqtt topics").await;
    assert!(
        topics.contains("sensors/+/temp") && topics.contains("commands/sensors"),
        "{topics}"
    );
    broker
        .publish("sensors/attic/temp", r#"{"temperature": 30}"#, &[])
        .expect("published");
    message(&alice, &room, "30 °C in attic").await;
    let last = answer(&alice, &room, &bot, "!mqtt last sensors/attic/temp").await;
    assert_eq!(last, r#"sensors/attic/temp: {"temperature": 30}"#);
    let elsewhere = answer(&alice, &room, &bot, "!mqtt last secrets/door").await;
    assert!(
        elsewhere.contains("not one of this room's topics"),
        "{elsewhere}"
    );

    let mut listener = broker
        .subscribe("commands/#", "%t %p", &[])
        .await
        .expect("mosquitto_sub");
    let published = answer(&alice, &room, &bot, "!mqtt publish commands/fan on full").await;
    assert_eq!(published, "Published to commands/fan.");
    listener
        .wait_for(WAIT, |l| l == "commands/fan on full")
        .await
        .expect("the command's publication");
    let outside = answer(&alice, &room, &bot, "!mqtt publish secrets/door open").await;
    assert!(outside.contains("may not publish"), "{outside}");

    let bob = synapse.register_user("bob", false).await.expect("bob");
    alice
        .invite(&room, &bob.user_id)
        .await
        .expect("bob invited");
    bob.join(&room).await.expect("bob joins");
    let refused = bob.send_text(&room, "let me in").await.expect("sent");
    let notice = bob
        .wait_for_event(&room, WAIT, |e| {
            e["sender"] == bot.as_str()
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == refused.as_str()
        })
        .await
        .expect("bob is told");
    let text = notice["content"]["body"].as_str().unwrap_or_default();
    assert!(text.contains("@bob:localhost may not publish"), "{text}");
    running.stop().await.expect("clean stop");
}

/// A payload over the size limit and one the template cannot show are reported in the room
/// (once a minute per reason) and counted; the messages around them arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_reported_and_their_neighbours_arrive() {
    let broker = Mosquitto::start().expect("mosquitto");
    let (slot, _synapse, running, alice, room) = bridged("mqttbad", &broker).await;
    let big = format!(r#"{{"temperature": 1, "pad": "{}"}}"#, "x".repeat(70_000));
    broker
        .publish("sensors/big/temp", &big, &[])
        .expect("published");
    broker
        .publish("sensors/ok/temp", r#"{"temperature": 2}"#, &[])
        .expect("published");
    message(&alice, &room, "2 °C in ok").await;
    let bot = slot.bot();
    let too_large = alice
        .wait_for_event(&room, WAIT, |e| {
            e["sender"] == bot.as_str()
                && e["content"]["body"].as_str().is_some_and(|b| {
                    b.starts_with("⚠️ A message on sensors/big/temp was not shown")
                })
        })
        .await
        .expect("the oversized message is reported");
    assert_eq!(too_large["content"]["msgtype"], "m.notice");
    broker
        .publish("sensors/odd/temp", r#"{"humidity": 40}"#, &[])
        .expect("published");
    message(&alice, &room, r#"{"humidity": 40}"#).await;
    alice
        .wait_for_event(&room, WAIT, |e| {
            e["sender"] == bot.as_str()
                && e["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("The template of sensors failed"))
        })
        .await
        .expect("the template failure is reported");
    let skipped = slot
        .metric("switchboard_bridge_remote_skipped_total{bridge=\"mqtt\",reason=\"too_large\"}")
        .await;
    assert!(
        (skipped - 1.0).abs() < f64::EPSILON,
        "counted once: {skipped}"
    );
    running.stop().await.expect("clean stop");
}

/// A room subscribes to more topics within its allow-list, keeps them across a restart, and
/// unsubscribes; it cannot take what the config does not allow or drop configured filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_subscribes_within_its_allow_list() {
    let broker = Mosquitto::start().expect("mosquitto");
    let allow = "        subscribe_allow: [\"garden/#\"]\n";
    let (slot, _synapse, running, alice, room) = bridged_with("mqttsub", &broker, allow).await;
    let bot = slot.bot();
    let outside = answer(&alice, &room, &bot, "!mqtt subscribe secrets/#").await;
    assert!(
        outside.contains("outside the topics this room may subscribe to"),
        "{outside}"
    );
    let added = answer(&alice, &room, &bot, "!mqtt subscribe garden/+/moisture").await;
    assert_eq!(added, "This room now receives garden/+/moisture.");
    broker
        .publish("garden/bed1/moisture", r#"{"temperature": 9}"#, &[])
        .expect("published");
    message(&alice, &room, "9 °C in bed1").await;

    running.stop().await.expect("stopped");
    let running = slot.start().await.expect("Switchboard starts again");
    connected(&slot).await;
    broker
        .publish("garden/bed2/moisture", r#"{"temperature": 8}"#, &[])
        .expect("published");
    message(&alice, &room, "8 °C in bed2").await;

    let configured = answer(&alice, &room, &bot, "!mqtt unsubscribe sensors/+/temp").await;
    assert!(configured.contains("is in the config"), "{configured}");
    let removed = answer(&alice, &room, &bot, "!mqtt unsubscribe garden/+/moisture").await;
    assert_eq!(removed, "This room no longer receives garden/+/moisture.");
    broker
        .publish("garden/bed3/moisture", r#"{"temperature": 7}"#, &[])
        .expect("published");
    broker
        .publish("sensors/marker/temp", r#"{"temperature": 6}"#, &[])
        .expect("published");
    message(&alice, &room, "6 °C in marker").await;
    let timeline = alice.messages(&room, 100).await.expect("timeline");
    assert!(
        !timeline
            .iter()
            .any(|e| e["content"]["body"] == "7 °C in bed3"),
        "unsubscribed topics stay out"
    );
    running.stop().await.expect("clean stop");
}

/// A reply to a device's message that named a response topic (MQTT 5) goes to that topic,
/// with the device's correlation data, instead of the mapping's publish topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_goes_to_the_devices_response_topic() {
    let broker = Mosquitto::start().expect("mosquitto");
    let (_slot, _synapse, running, alice, room) =
        bridged_with("mqttreply", &broker, "        device_property: device\n").await;
    // A user property names the device, before the topic level does.
    broker
        .publish(
            "sensors/boiler/temp",
            r#"{"temperature": 80}"#,
            &[
                "-D",
                "publish",
                "user-property",
                "device",
                "heating",
                "-D",
                "publish",
                "response-topic",
                "replies/boiler",
                "-D",
                "publish",
                "correlation-data",
                "req-7",
            ],
        )
        .expect("published with a response topic");
    let asked = message(&alice, &room, "80 °C in boiler").await;
    assert_eq!(asked["sender"], "@_mqtt_heating:localhost");
    let mut replies = broker
        .subscribe("#", "%t|%D|%p", &[])
        .await
        .expect("mosquitto_sub");
    let reply = alice
        .send_event(
            &room,
            "m.room.message",
            &serde_json::json!({
                "msgtype": "m.text",
                "body": "turn it down",
                "m.relates_to": { "m.in_reply_to": { "event_id": asked["event_id"] } },
            }),
        )
        .await
        .expect("replied");
    let line = replies
        .wait_for(WAIT, |l| l.contains("turn it down"))
        .await
        .expect("the reply is published");
    let mut parts = line.splitn(3, '|');
    assert_eq!(parts.next(), Some("replies/boiler"), "{line}");
    assert_eq!(parts.next(), Some("req-7"), "{line}");
    let envelope: Value = serde_json::from_str(parts.next().unwrap_or_default()).expect("JSON");
    assert_eq!(envelope["event_id"], reply.as_str());
    running.stop().await.expect("clean stop");
}

/// With `on_edit: publish` and `on_redaction: publish`, an edit is published with what it
/// replaces and a deletion as `{"redacts"}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletions_are_published_when_configured() {
    let broker = Mosquitto::start().expect("mosquitto");
    let changes = "        on_edit: publish\n        on_redaction: publish\n";
    let (_slot, _synapse, running, alice, room) = bridged_with("mqttedit", &broker, changes).await;
    let mut listener = broker
        .subscribe("commands/sensors", "%p", &[])
        .await
        .expect("mosquitto_sub");
    let original = alice.send_text(&room, "heat to 20").await.expect("sent");
    listener
        .wait_for(WAIT, |l| l.contains("heat to 20"))
        .await
        .expect("the message");
    let edit = alice
        .send_event(
            &room,
            "m.room.message",
            &serde_json::json!({
                "msgtype": "m.text",
                "body": "* heat to 21",
                "m.new_content": { "msgtype": "m.text", "body": "heat to 21" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": original },
            }),
        )
        .await
        .expect("edited");
    let line = listener
        .wait_for(WAIT, |l| l.contains("heat to 21"))
        .await
        .expect("the edit is published");
    let edited: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(edited["replaces"], original.as_str());
    assert_eq!(edited["event_id"], edit.as_str());
    alice
        .put(
            &format!("/rooms/{}/redact/{}/t1", encode(&room), encode(&original)),
            &serde_json::json!({ "reason": "wrong" }),
        )
        .await
        .expect("redacted");
    let line = listener
        .wait_for(WAIT, |l| l.contains("redacts"))
        .await
        .expect("the deletion is published");
    let deleted: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(deleted["redacts"], original.as_str());
    assert_eq!(deleted["sender"], "@alice:localhost");
    running.stop().await.expect("clean stop");
}

/// The broker stays down longer than `outage_notices.after_secs`: the portal is told once that
/// MQTT is unreachable, and once that it is back — with a real Mosquitto stopped and started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_is_told_once_and_its_end_too() {
    let mut broker = Mosquitto::start_with_password("bridge", "bridge-pass").expect("mosquitto");
    let config = mqtt_config("mqttoutage", &broker, "", "") + "outage_notices:\n  after_secs: 2\n";
    let (slot, _synapse, running, alice, room) = bridged_by("mqttoutage", &config).await;
    let bot = slot.bot();
    let notices = |user: &MatrixUser, text: &'static str| {
        let user = user.clone();
        let room = room.clone();
        let bot = bot.clone();
        async move {
            user.count_events(&room, |e| {
                e["sender"] == bot.as_str()
                    && e["content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.contains(text))
            })
            .await
            .expect("timeline")
        }
    };

    broker.stop();
    alice
        .wait_for_event(&room, WAIT, |e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("⚠️ MQTT is unreachable since "))
        })
        .await
        .expect("the outage is told");
    // Reconnect attempts go on meanwhile: they tell nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(notices(&alice, "is unreachable since").await, 1);

    broker.start_again().expect("the broker is back");
    connected(&slot).await;
    alice
        .wait_for_event(&room, WAIT, |e| {
            e["content"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("✅ MQTT is reachable again"))
        })
        .await
        .expect("its end is told");
    assert_eq!(notices(&alice, "is unreachable since").await, 1);
    assert_eq!(notices(&alice, "is reachable again").await, 1);
    running.stop().await.expect("clean stop");
}
