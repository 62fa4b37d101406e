//! The workloads: what Switchboard runs (the echo bot, or the MQTT bridge on a real broker),
//! how the bench loads it, and where each message's arrival is observed.
//!
//! - `echo`: transactions of `ping <N>` → the echo bot's reply `pong <N>` at the fake
//!   homeserver;
//! - `mqtt-in`: MQTT publishes `in <N>` → the device puppet's message at the fake homeserver;
//! - `mqtt-out`: transactions of `out <N>` in the bridge's portal room → the bridge's MQTT
//!   message at the bench's subscriber.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::homeserver::{HsState, Sends};
use crate::load::{Load, Sent};
use crate::mqtt::{MqttClient, OUT_TOPIC, Pace};
use crate::switchboard::Switchboard;
use crate::switchboard::{self, SERVER_NAME};

/// How long the bridge may take, after Switchboard is ready, to create its portal room and
/// connect to the broker.
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Publishes the `mqtt-out` subscriber lets the broker have unacknowledged (it publishes
/// nothing; the value only sizes its request channel).
const SUBSCRIBER_WINDOW: u32 = 16;

/// What is measured.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Workload {
    /// The echo bot answers `ping <N>` in `rooms` rooms, `batch` events per transaction.
    Echo {
        /// Events per transaction.
        batch: u64,
        /// Rooms (and senders) the events are spread over.
        rooms: u64,
    },
    /// MQTT → Matrix: the bench publishes to `bench/dev<k>/in`.
    MqttIn {
        /// Devices the messages are spread over.
        devices: u64,
        /// Rooms (one mapping each) the devices are spread over: device `k` in room `k mod
        /// rooms`.
        rooms: u64,
        /// Publishes the broker has not acknowledged yet, at most.
        in_flight: u32,
        /// How fast to publish.
        pace: Pace,
        /// Mosquitto's `max_inflight_messages`.
        broker_inflight: u16,
    },
    /// Matrix → MQTT: room messages in the portal room, published to `bench/out`.
    MqttOut {
        /// Events per transaction.
        batch: u64,
        /// Matrix users the messages are spread over.
        users: u64,
        /// Events per second, if limited.
        rate: Option<u64>,
        /// Mosquitto's `max_inflight_messages`.
        broker_inflight: u16,
    },
}

impl Workload {
    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Echo { .. } => "echo",
            Workload::MqttIn { .. } => "mqtt-in",
            Workload::MqttOut { .. } => "mqtt-out",
        }
    }

    /// Whether it needs a broker and the MQTT bridge.
    pub(crate) fn is_mqtt(self) -> bool {
        !matches!(self, Workload::Echo { .. })
    }

    /// The broker's `max_inflight_messages`, if the workload needs a broker.
    pub(crate) fn broker_max_inflight(self) -> Option<u16> {
        match self {
            Workload::Echo { .. } => None,
            Workload::MqttIn {
                broker_inflight, ..
            }
            | Workload::MqttOut {
                broker_inflight, ..
            } => Some(broker_inflight),
        }
    }

    /// The localpart of the appservice's bot.
    pub(crate) fn bot_localpart(self) -> &'static str {
        if self.is_mqtt() {
            "bridgebot"
        } else {
            "echobot"
        }
    }

    /// The sends the fake homeserver should expect.
    pub(crate) fn sends(self) -> Sends {
        match self {
            Workload::Echo { .. } => Sends::EchoReplies,
            Workload::MqttIn { devices, .. } => Sends::DeviceMessages { devices },
            Workload::MqttOut { .. } => Sends::Nothing,
        }
    }

    /// The plug-in part of the config (`bots`, and `bridges` with `broker` for MQTT; the echo
    /// bot, enabled by default, is turned off there).
    pub(crate) fn config_section(self, broker: Option<&str>) -> String {
        match (self, broker) {
            (Workload::Echo { .. }, _) | (_, None) => {
                "bots:\n  echo:\n    enabled: true\n".to_owned()
            }
            (Workload::MqttIn { devices, rooms, .. }, Some(broker)) => {
                let mut section = bridge_section(broker);
                for k in 0..rooms {
                    let topics = if rooms == 1 {
                        "\"bench/+/in\"".to_owned()
                    } else {
                        (k..devices)
                            .step_by(usize::try_from(rooms).unwrap_or(1))
                            .map(|d| format!("\"bench/dev{d}/in\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let _ = write!(
                        section,
                        "      - name: bench{k}
        topics: [{topics}]
        direction: in
        device_level: 1
        qos: 1
"
                    );
                }
                section
            }
            (_, Some(broker)) => {
                bridge_section(broker)
                    + &format!(
                        "      - name: bench
        topics: [\"bench/+/in\"]
        direction: both
        device_level: 1
        publish_to: {OUT_TOPIC}
        qos: 1
"
                    )
            }
        }
    }
}

/// The config of the MQTT bridge on `broker` up to its list of mappings (the echo bot off).
fn bridge_section(broker: &str) -> String {
    format!(
        "bots:
  echo:
    enabled: false
bridges:
  mqtt:
    enabled: true
    broker: {broker}
    client_id: switchboard-bench
    mappings:
"
    )
}

/// Where the load goes.
pub(crate) struct Target<'a> {
    /// Switchboard's appservice API.
    pub(crate) as_url: &'a str,
    /// The token for it.
    pub(crate) hs_token: &'a str,
    /// Its metrics listener.
    pub(crate) metrics_port: u16,
    /// The broker's port (MQTT workloads).
    pub(crate) broker_port: Option<u16>,
}

/// The load generator of a workload, connected and ready.
pub(crate) enum Driver {
    /// Transactions to Switchboard (`echo`; `mqtt-out` with the bench's subscriber).
    Transactions {
        /// The transactions.
        load: Load,
        /// The bench's MQTT subscriber (`mqtt-out`), kept connected during the run.
        subscriber: Option<MqttClient>,
    },
    /// MQTT publishes (`mqtt-in`).
    Publishes {
        /// The bench's MQTT client.
        client: MqttClient,
        /// Devices the messages are spread over.
        devices: u64,
        /// How fast to publish.
        pace: Pace,
    },
}

impl Driver {
    /// Prepares `workload`: for MQTT waits for the bridge's portal room and connection, then
    /// connects the bench's own client.
    pub(crate) async fn start(
        workload: Workload,
        state: &Arc<HsState>,
        target: &Target<'_>,
        sb: &mut Switchboard,
    ) -> Result<Self> {
        let broker_port = || target.broker_port.context("no broker was started");
        match workload {
            Workload::Echo { batch, rooms } => {
                let room_ids = (0..rooms).map(|k| format!("!r{k}:{SERVER_NAME}")).collect();
                let load = Load::new(
                    target.as_url,
                    target.hs_token,
                    Arc::clone(state),
                    room_ids,
                    rooms,
                    "ping",
                    batch,
                )?;
                Ok(Driver::Transactions {
                    load,
                    subscriber: None,
                })
            }
            Workload::MqttIn {
                devices,
                rooms,
                in_flight,
                pace,
                ..
            } => {
                wait_bridge(state, rooms, target.metrics_port, sb).await?;
                let client =
                    MqttClient::connect(broker_port()?, Arc::clone(state), in_flight, 1).await?;
                Ok(Driver::Publishes {
                    client,
                    devices,
                    pace,
                })
            }
            Workload::MqttOut {
                batch, users, rate, ..
            } => {
                let room = wait_bridge(state, 1, target.metrics_port, sb).await?;
                let client = MqttClient::connect(
                    broker_port()?,
                    Arc::clone(state),
                    SUBSCRIBER_WINDOW,
                    users,
                )
                .await?;
                client.subscribe_out().await?;
                let load = Load::new(
                    target.as_url,
                    target.hs_token,
                    Arc::clone(state),
                    vec![room],
                    users,
                    "out",
                    batch,
                )?
                .with_rate(rate);
                Ok(Driver::Transactions {
                    load,
                    subscriber: Some(client),
                })
            }
        }
    }

    /// Sends messages `from..to`.
    pub(crate) async fn send(&mut self, from: u64, to: u64, sb: &mut Switchboard) -> Result<Sent> {
        match self {
            Driver::Transactions { load, .. } => load.send(from, to, sb).await,
            Driver::Publishes {
                client,
                devices,
                pace,
            } => client.publish(from, to, *devices, *pace, sb).await,
        }
    }

    /// Transactions Switchboard did not acknowledge at the first attempt so far.
    pub(crate) fn retries(&self) -> u64 {
        match self {
            Driver::Transactions { load, .. } => load.retries,
            Driver::Publishes { .. } => 0,
        }
    }

    /// What went wrong while loading, in words.
    pub(crate) fn problems(&mut self) -> Vec<String> {
        match self {
            Driver::Transactions { load, subscriber } => {
                let mut problems = std::mem::take(&mut load.problems);
                if let Some(client) = subscriber {
                    problems.extend(client.problems());
                }
                problems
            }
            Driver::Publishes { client, .. } => client.problems(),
        }
    }
}

/// Waits until the MQTT bridge has created its `rooms` portal rooms and is connected to the
/// broker with its subscriptions confirmed; returns the first room.
async fn wait_bridge(
    state: &HsState,
    rooms: u64,
    metrics_port: u16,
    sb: &mut Switchboard,
) -> Result<String> {
    let started = Instant::now();
    loop {
        sb.check_alive()?;
        if let Some(room) = state.first_room().filter(|_| state.room_count() >= rooms) {
            let text = switchboard::metrics_text(metrics_port)
                .await
                .unwrap_or_default();
            let connected = switchboard::metric_sum(
                &text,
                "switchboard_bridge_state{bridge=\"mqtt\",state=\"connected\"}",
            );
            if connected >= 1.0 {
                eprintln!(
                    "  bridge connected with portal room {room} in {} ms",
                    started.elapsed().as_millis()
                );
                return Ok(room);
            }
        }
        if started.elapsed() > BRIDGE_TIMEOUT {
            bail!(
                "the MQTT bridge did not create its {rooms} room(s) and connect within {} s \
                 (rooms created: {})",
                BRIDGE_TIMEOUT.as_secs(),
                state.room_count()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mqtt_config_maps_the_bench_topics_both_ways() {
        let workload = Workload::MqttOut {
            batch: 1,
            users: 1,
            rate: None,
            broker_inflight: 20,
        };
        let section = workload.config_section(Some("mqtt://127.0.0.1:1883"));
        let value: serde_json::Value = serde_norway::from_str(&section).expect("YAML");
        let mqtt = &value["bridges"]["mqtt"];
        assert_eq!(mqtt["broker"], "mqtt://127.0.0.1:1883");
        assert_eq!(mqtt["mappings"][0]["topics"][0], "bench/+/in");
        assert_eq!(mqtt["mappings"][0]["publish_to"], "bench/out");
        assert_eq!(mqtt["mappings"][0]["direction"], "both");
        assert_eq!(value["bots"]["echo"]["enabled"], false);
        assert_eq!(workload.bot_localpart(), "bridgebot");
    }

    #[test]
    fn mqtt_in_spreads_the_devices_over_one_mapping_per_room() {
        let workload = Workload::MqttIn {
            devices: 5,
            rooms: 2,
            in_flight: 10,
            pace: Pace {
                window: None,
                rate: None,
                qos: 1,
            },
            broker_inflight: 20,
        };
        let section = workload.config_section(Some("mqtt://127.0.0.1:1883"));
        let value: serde_json::Value = serde_norway::from_str(&section).expect("YAML");
        let mappings = &value["bridges"]["mqtt"]["mappings"];
        let topics = |k: usize| mappings[k]["topics"].clone();
        assert_eq!(
            topics(0),
            serde_json::json!(["bench/dev0/in", "bench/dev2/in", "bench/dev4/in"])
        );
        assert_eq!(
            topics(1),
            serde_json::json!(["bench/dev1/in", "bench/dev3/in"])
        );
        assert_eq!(mappings[1]["name"], "bench1");
        assert!(mappings[2].is_null());
    }
}
