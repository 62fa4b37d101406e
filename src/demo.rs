//! `switchboard demo`: everything on this machine, nothing to configure. Installs Synapse into a
//! venv (once), starts it on a free loopback port with a freshly generated registration, runs
//! Switchboard with the echo bot (and the MQTT bridge on its embedded broker), creates a demo
//! user who sends `ping hello`, prints the reply, publishes a sensor reading over MQTT and
//! prints how it appears in Matrix, then stays up and says how to log in with any Matrix
//! client.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use switchboard_registration::Registration;
use switchboard_runtime::config::{Config, PluginSection};
use switchboard_runtime::{CancellationToken, runtime, telemetry};

use switchboard_testing::process::free_port;
use switchboard_testing::synapse::{self, MatrixUser, Synapse};

fn step(text: &str) {
    println!("==> {text}");
}

/// Runs the demo; with `once`, stops after the first pong.
pub async fn run(dir: &Path, once: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    step("installing Synapse into a local venv (first run only, about a minute)");
    synapse::ensure_installed().await?;

    let work = tempfile::Builder::new()
        .prefix("switchboard-demo-")
        .tempdir_in(&dir)?;
    let as_port = free_port()?;
    let metrics_port = free_port()?;
    let mut config = Config::default();
    synapse::SERVER_NAME.clone_into(&mut config.homeserver.server_name);
    config.appservice.listen = ([127, 0, 0, 1], as_port).into();
    config.appservice.url = format!("http://127.0.0.1:{as_port}");
    "echobot".clone_into(&mut config.appservice.bot_localpart);
    config.appservice.registration = work.path().join("registration.yaml");
    config.metrics.listen = ([127, 0, 0, 1], metrics_port).into();
    config.data_dir = work.path().join("data");
    "warn".clone_into(&mut config.logging.filter);
    config.bots.insert(
        "echo".to_owned(),
        PluginSection {
            enabled: true,
            ..PluginSection::default()
        },
    );
    #[cfg(feature = "bridge-mqtt")]
    let mqtt_port = {
        let port = free_port()?;
        config
            .bridges
            .insert("mqtt".to_owned(), mqtt::section(port, &config)?);
        port
    };
    let plugins = crate::plugins::enabled_plugins(&config)?;
    let registration = Registration::generate(&runtime::registration_spec(&config, &plugins), None);
    registration.save(&config.appservice.registration)?;

    step("starting Synapse with the generated registration");
    let synapse = Synapse::start(std::slice::from_ref(&config.appservice.registration)).await?;
    config.homeserver.url = synapse.base_url();
    config.validate()?;
    telemetry::init(&config.logging);
    step("creating user @demo:localhost");
    let user = synapse
        .register_user_with_password("demo", PASSWORD, false)
        .await?;

    step("starting Switchboard with the echo bot and the MQTT bridge (embedded broker)");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runtime::run(config.clone(), plugins, shutdown.clone()));
    let outcome = async {
        talk_to_the_bot(&user, &config, &registration).await?;
        #[cfg(feature = "bridge-mqtt")]
        mqtt::show_a_reading(&user, mqtt_port).await?;
        if !once {
            stay_up(&synapse, &config, &registration).await?;
        }
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let stopped = running.await.context("Switchboard's task failed")?;
    outcome?;
    stopped?;
    Ok(())
}

/// The demo user's password.
const PASSWORD: &str = "demo-password";

/// The bot's user id.
fn bot_of(config: &Config, registration: &Registration) -> String {
    format!(
        "@{}:{}",
        registration.sender_localpart, config.homeserver.server_name
    )
}

async fn talk_to_the_bot(
    user: &MatrixUser,
    config: &Config,
    registration: &Registration,
) -> anyhow::Result<()> {
    let bot = bot_of(config, registration);
    step("creating a room and inviting the echo bot");
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
    Ok(())
}

/// Says how to log in, and waits for Ctrl-C.
async fn stay_up(
    synapse: &Synapse,
    config: &Config,
    registration: &Registration,
) -> anyhow::Result<()> {
    let bot = bot_of(config, registration);
    println!(
        "Switchboard and Synapse keep running. Log in with any Matrix client (e.g. Element):\n\
         \x20   homeserver: {}\n    user:       demo\n    password:   {PASSWORD}\n\
         and write `ping <anything>` in the room \"Switchboard demo\" (or invite {bot} elsewhere).\n\
         Metrics: http://{}/metrics  — press Ctrl-C to stop.",
        synapse.base_url(),
        config.metrics.listen,
    );
    tokio::signal::ctrl_c().await?;
    step("stopping");
    Ok(())
}

/// The demo's MQTT part: readings published on the embedded broker appear in the room
/// "MQTT demo", each device speaking as its own puppet.
#[cfg(feature = "bridge-mqtt")]
mod mqtt {
    use std::time::Duration;

    use anyhow::{Context, bail};
    use switchboard_runtime::config::{Config, PluginSection};

    use super::{MatrixUser, step};

    /// The bridge's config: the embedded broker on `port`, one mapping `demo`.
    pub fn section(port: u16, config: &Config) -> anyhow::Result<PluginSection> {
        let yaml = format!(
            "enabled: true\nembedded_listen: 127.0.0.1:{port}\nclient_id: switchboard-demo\n\
             invite: [\"@demo:{server}\"]\nmappings:\n  - name: demo\n    \
             topics: [\"demo/+/temp\"]\n    device_level: 1\n    \
             template: \"{{{{payload.temperature}}}} °C in the {{{{topic.[1]}}}}\"\n    \
             publish_to: demo/commands\n",
            server = config.homeserver.server_name,
        );
        Ok(switchboard_runtime::config::from_yaml(&yaml)?)
    }

    /// Joins the bridge's room, publishes a reading as a device would, and prints how it
    /// appears.
    pub async fn show_a_reading(user: &MatrixUser, port: u16) -> anyhow::Result<()> {
        let room = user
            .join_invite(Duration::from_secs(30))
            .await
            .context("no invitation to the MQTT room within 30 s")?;
        step("publishing {\"temperature\": 21.5} to demo/kitchen/temp on the embedded MQTT broker");
        publish(port, "demo/kitchen/temp", r#"{"temperature": 21.5}"#).await?;
        let reading = user
            .wait_for_event(&room, Duration::from_secs(30), |e| {
                e["type"] == "m.room.message" && e["sender"] != user.user_id.as_str()
            })
            .await
            .context("the reading did not appear in the MQTT room within 30 s")?;
        println!(
            "\n    {} said in \"MQTT demo\": {}\n\n\
             Publish more: mosquitto_pub -h 127.0.0.1 -p {port} -V mqttv311 -t demo/hall/temp \
             -m '{{\"temperature\": 19}}'\n\
             What you write in \"MQTT demo\" is published to demo/commands.\n",
            reading["sender"].as_str().unwrap_or("?"),
            reading["content"]["body"].as_str().unwrap_or("?"),
        );
        Ok(())
    }

    /// Publishes `payload` to `topic` at QoS 1 as a device would, and waits for the broker's
    /// acknowledgement.
    async fn publish(port: u16, topic: &str, payload: &str) -> anyhow::Result<()> {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let options = MqttOptions::new("switchboard-demo-device", "127.0.0.1", port);
        let (client, mut events) = AsyncClient::new(options, 10);
        client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await?;
        let acknowledged = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match acknowledged {
            Ok(Ok(())) => {
                let _ = client.disconnect().await;
                Ok(())
            }
            Ok(Err(e)) => bail!("cannot publish to the embedded broker: {e}"),
            Err(_) => bail!("the embedded broker did not acknowledge within 10 s"),
        }
    }
}
