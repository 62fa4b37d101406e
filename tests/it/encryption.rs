//! End-to-bridge encryption against a real Synapse and a real end-to-end-encrypted client
//! (matrix-nio with vodozemac): what a user sees in an encrypted DM with a bot.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testing::synapse::nio::run_e2ee_client;

use crate::common::Synapse;
use crate::common::switchboard_instance::Slot;

const CLIENT_TIMEOUT: Duration = Duration::from_mins(3);

/// Runs the E2EE client as `user` (password `password`, keys in `store`): in `room` (a new
/// encrypted DM with `peer` when `None`), sends `send` and waits for `peer`'s answer holding
/// `expect`. Returns the client's report, checked: no error, the answer decrypted.
async fn exchange(
    synapse: &Synapse,
    user: &str,
    store: &std::path::Path,
    peer: &str,
    room: Option<&str>,
    (send, expect): (&str, &str),
    log: impl Fn() -> String,
) -> Value {
    let base_url = synapse.base_url();
    let store = store.display().to_string();
    let mut args = vec![
        "dm",
        "--homeserver",
        &base_url,
        "--user",
        user,
        "--password",
        "password-1",
        "--store",
        &store,
        "--peer",
        peer,
        "--send",
        send,
        "--expect",
        expect,
        "--timeout",
        "90",
    ];
    if let Some(room) = room {
        args.extend(["--room", room]);
    }
    let result = run_e2ee_client(&args, CLIENT_TIMEOUT)
        .await
        .expect("the client ran");
    assert_eq!(result["error"], Value::Null, "{result}\n{}", log());
    assert_eq!(result["reply"], expect, "{result}");
    assert_eq!(result["reply_was_encrypted"], true, "{result}");
    assert_eq!(result["undecryptable"], json!([]), "{result}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_dm_with_the_echo_bot_gets_an_encrypted_pong() {
    let slot = Slot::with_config(
        "e2ee",
        "encryption:\n  enabled: true\n  trust: unverified\n",
    )
    .expect("slot");
    assert_eq!(slot.registration.msc4190, Some(true), "devices by MSC4190");
    assert_eq!(
        slot.registration.msc3202,
        Some(true),
        "key counts by MSC3202"
    );
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let alice = synapse
        .register_user_with_password("alice", "password-1", false)
        .await
        .expect("alice");
    let store = tempfile::tempdir().expect("client store");
    let bot = slot.bot();
    let result = exchange(
        &synapse,
        &alice.user_id,
        store.path(),
        &bot,
        None,
        ("ping in secret", "pong in secret"),
        String::new,
    )
    .await;

    // What the homeserver holds is ciphertext only: the bot's answer is `m.room.encrypted`.
    let room = result["room_id"].as_str().expect("room id");
    let bot_messages = alice
        .count_events(room, |e| {
            e["sender"] == bot.as_str() && e["type"] == "m.room.encrypted"
        })
        .await
        .expect("timeline");
    assert!(
        bot_messages >= 1,
        "the bot's answer is encrypted on the server"
    );
    let plaintext = alice
        .count_events(room, |e| e["content"]["body"] == "pong in secret")
        .await
        .expect("timeline");
    assert_eq!(plaintext, 0, "no plain text of the answer on the server");

    // The bot's device is signed by its own cross-signing keys, as clients see it.
    let keys = alice
        .post(
            "/keys/query",
            &json!({ "device_keys": { bot.as_str(): [] } }),
        )
        .await
        .expect("keys/query");
    let self_signing = keys["self_signing_keys"][&bot]["keys"]
        .as_object()
        .and_then(|k| k.keys().next().cloned())
        .unwrap_or_else(|| panic!("the bot has a self-signing key: {keys}"));
    assert!(keys["master_keys"][&bot].is_object(), "{keys}");
    let devices = keys["device_keys"][&bot].as_object().expect("bot devices");
    assert_eq!(devices.len(), 1, "one device: {keys}");
    let device = devices.values().next().expect("device");
    assert!(
        device["signatures"][&bot][&self_signing].is_string(),
        "the device is cross-signed: {keys}"
    );
    running.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_the_bot_still_reads_and_answers_the_encrypted_dm() {
    let slot = Slot::with_config(
        "e2eekill",
        "encryption:\n  enabled: true\n  trust: unverified\n",
    )
    .expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    slot.point_at(&synapse.base_url()).expect("config");
    let mut child = slot.spawn_process().await.expect("Switchboard runs");
    let bob = synapse
        .register_user_with_password("bob", "password-1", false)
        .await
        .expect("bob");
    let store = tempfile::tempdir().expect("client store");
    let bot = slot.bot();
    let log = || slot.process_log();
    let first = exchange(
        &synapse,
        &bob.user_id,
        store.path(),
        &bot,
        None,
        ("ping before", "pong before"),
        log,
    )
    .await;
    let room = first["room_id"].as_str().expect("room").to_owned();

    // SIGKILL: nothing is saved on the way out. The sessions used so far must already be
    // in the database.
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");
    let _child = slot.spawn_process().await.expect("Switchboard restarts");
    // The client keeps its Megolm session (the bot holds its key from before the kill), and
    // the bot answers with its own session from before.
    exchange(
        &synapse,
        &bob.user_id,
        store.path(),
        &bot,
        Some(&room),
        ("ping after", "pong after"),
        log,
    )
    .await;
    let devices = bob
        .post(
            "/keys/query",
            &json!({ "device_keys": { bot.as_str(): [] } }),
        )
        .await
        .expect("keys/query");
    assert_eq!(
        devices["device_keys"][&bot]
            .as_object()
            .map(serde_json::Map::len),
        Some(1),
        "the restarted bot reuses its device: {devices}"
    );
}
