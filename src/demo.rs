//! `switchboard demo`: everything on this machine, nothing to configure. Installs Synapse into a
//! venv (once), starts it on a free loopback port with a freshly generated registration, runs
//! Switchboard with the echo bot, creates a demo user who sends `ping hello`, prints the reply,
//! then stays up and says how to log in with any Matrix client.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use switchboard_framework::config::Config;
use switchboard_framework::{CancellationToken, runtime, telemetry};
use switchboard_registration::Registration;

use crate::synapse::{Synapse, free_port};

fn step(text: &str) {
    println!("==> {text}");
}

/// Runs the demo; with `once`, stops after the first pong.
pub async fn run(dir: &Path, once: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    step("installing Synapse into a local venv (first run only, about a minute)");
    crate::synapse::ensure_installed().await?;

    let work = tempfile::Builder::new()
        .prefix("switchboard-demo-")
        .tempdir_in(&dir)?;
    let as_port = free_port()?;
    let metrics_port = free_port()?;
    let mut config = Config::default();
    crate::synapse::SERVER_NAME.clone_into(&mut config.homeserver.server_name);
    config.appservice.listen = ([127, 0, 0, 1], as_port).into();
    config.appservice.url = format!("http://127.0.0.1:{as_port}");
    "echobot".clone_into(&mut config.appservice.bot_localpart);
    config.appservice.registration = work.path().join("registration.yaml");
    config.metrics.listen = ([127, 0, 0, 1], metrics_port).into();
    config.data_dir = work.path().join("data");
    "warn".clone_into(&mut config.logging.filter);
    let plugins = crate::plugins::enabled_plugins(&config)?;
    let registration = Registration::generate(&runtime::registration_spec(&config, &plugins), None);
    registration.save(&config.appservice.registration)?;

    step("starting Synapse with the generated registration");
    let synapse = Synapse::start(std::slice::from_ref(&config.appservice.registration)).await?;
    config.homeserver.url = synapse.base_url();
    config.validate()?;
    telemetry::init(&config.logging);

    step("starting Switchboard with the echo bot");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runtime::run(config.clone(), plugins, shutdown.clone()));
    let outcome = talk_to_the_bot(&synapse, &config, &registration, once).await;
    shutdown.cancel();
    let stopped = running.await.context("Switchboard's task failed")?;
    outcome?;
    stopped?;
    Ok(())
}

async fn talk_to_the_bot(
    synapse: &Synapse,
    config: &Config,
    registration: &Registration,
    once: bool,
) -> anyhow::Result<()> {
    let bot = format!(
        "@{}:{}",
        registration.sender_localpart, config.homeserver.server_name
    );
    let password = "demo-password";
    step("creating user @demo:localhost and a room, and inviting the echo bot");
    let user = synapse
        .register_user_with_password("demo", password, false)
        .await?;
    let room = user
        .create_room(serde_json::json!({ "name": "Switchboard demo", "invite": [bot] }))
        .await?;
    let joined = user
        .wait_for_event(&room, Duration::from_secs(30), |e| {
            e["type"] == "m.room.member"
                && e["state_key"] == bot.as_str()
                && e["content"]["membership"] == "join"
        })
        .await;
    if joined.is_err() {
        bail!("the echo bot did not join the room within 30 s; see the log above");
    }
    step("sending `ping hello`");
    let ping_id = user.send_text(&room, "ping hello").await?;
    let reply = user
        .wait_for_event(&room, Duration::from_secs(30), |e| {
            e["sender"] == bot.as_str()
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == ping_id.as_str()
        })
        .await
        .context("no reply from the echo bot within 30 s")?;
    println!(
        "\n    {bot} replied: {}\n",
        reply["content"]["body"].as_str().unwrap_or("?")
    );
    if once {
        return Ok(());
    }
    println!(
        "Switchboard and Synapse keep running. Log in with any Matrix client (e.g. Element):\n\
         \x20   homeserver: {}\n    user:       demo\n    password:   {password}\n\
         and write `ping <anything>` in the room \"Switchboard demo\" (or invite {bot} elsewhere).\n\
         Metrics: http://{}/metrics  — press Ctrl-C to stop.",
        synapse.base_url(),
        config.metrics.listen,
    );
    tokio::signal::ctrl_c().await?;
    step("stopping");
    Ok(())
}
