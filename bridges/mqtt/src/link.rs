//! The connection to the broker in either protocol version, MQTT 5 or 3.1.1, behind one
//! interface: what the bridge sends and receives, where the MQTT 5 extras (content type,
//! response topic, correlation data, user properties) are simply absent on 3.1.1.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{TlsConfiguration, Transport};
use switchboard_api::serde::Deserialize;
use switchboard_api::tls::TlsClientConfig;

/// The protocol version spoken with the broker: `5` or `"3.1.1"` in the config.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(crate = "switchboard_api::serde", try_from = "ProtocolSetting")]
pub enum Protocol {
    /// MQTT 5 (the default).
    #[default]
    V5,
    /// MQTT 3.1.1, for brokers without MQTT 5.
    V311,
}

/// The protocol version as written in the config: a number (`5`) or text (`3.1.1`).
#[derive(Deserialize)]
#[serde(crate = "switchboard_api::serde", untagged)]
enum ProtocolSetting {
    Number(u64),
    Text(String),
}

impl TryFrom<ProtocolSetting> for Protocol {
    type Error = String;

    fn try_from(setting: ProtocolSetting) -> Result<Self, String> {
        let text = match setting {
            ProtocolSetting::Number(n) => n.to_string(),
            ProtocolSetting::Text(text) => text,
        };
        match text.trim() {
            "5" | "5.0" => Ok(Self::V5),
            "3.1.1" | "4" => Ok(Self::V311),
            other => Err(format!(
                "{other:?} is not an MQTT version this bridge speaks: 5 or \"3.1.1\" is expected"
            )),
        }
    }
}

/// How to reach the broker and the session to keep there.
pub struct ConnectOptions {
    /// The protocol version.
    pub protocol: Protocol,
    /// The client id (names the persistent session).
    pub client_id: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// TLS settings, for `mqtts://`.
    pub tls: Option<Arc<TlsClientConfig>>,
    /// The largest packet read from the broker.
    pub max_packet_bytes: u32,
}

/// The MQTT 5 extras of a publication (left out on 3.1.1).
#[derive(Debug, Default)]
pub struct Properties {
    /// User properties (name, value).
    pub user: Vec<(String, String)>,
    /// The payload's content type.
    pub content_type: Option<String>,
    /// Correlation data, for an answer to a request.
    pub correlation_data: Option<Bytes>,
}

/// A message received from the broker.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// Its topic (MQTT 5 lets it be any bytes on the wire; 3.1.1 only UTF-8).
    pub topic: Bytes,
    /// Its payload.
    pub payload: Bytes,
    /// Whether it is a retained value (delivered on subscribing).
    pub retain: bool,
    /// Whether it is a redelivery.
    pub dup: bool,
    /// Its packet id (0 at QoS 0).
    pub pkid: u16,
    /// Its QoS (0–2).
    pub qos: u8,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 response topic: where answers go.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data, to be given back with answers.
    pub correlation_data: Option<Bytes>,
    /// MQTT 5 user properties (name, value).
    pub user_properties: Vec<(String, String)>,
}

/// What the connection reports.
#[derive(Debug)]
pub enum LinkEvent {
    /// The broker accepted the connection; whether it still had the session.
    Connected {
        /// The broker kept the session (subscriptions, queued messages).
        session_present: bool,
    },
    /// A subscription was confirmed.
    Subscribed,
    /// A message arrived.
    Message(Incoming),
    /// Anything else (acknowledgements, pings).
    Other,
}

/// The sending half of the connection.
#[derive(Clone, Debug)]
pub enum Client {
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
    /// MQTT 3.1.1.
    V311(rumqttc::AsyncClient),
}

/// The receiving half of the connection, which also drives it (reconnecting on `poll`).
pub enum Events {
    /// MQTT 5.
    V5(Box<rumqttc::v5::EventLoop>),
    /// MQTT 3.1.1.
    V311(Box<rumqttc::EventLoop>),
}

/// How many publications of the bridge may await the broker's acknowledgement at once.
const OUTGOING_IN_FLIGHT: u16 = 100;

/// How many requests may wait for the connection task.
const REQUEST_CAPACITY: usize = 64;

/// Sets up the connection (it is made on the first [`Events::poll`]): a persistent session
/// (clean start off; MQTT 5 keeps it a week offline), manual acknowledgements.
#[must_use]
pub fn connect(options: ConnectOptions) -> (Client, Events) {
    let transport = options
        .tls
        .map(|tls| Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    match options.protocol {
        Protocol::V5 => {
            let mut mqtt =
                rumqttc::v5::MqttOptions::new(options.client_id, options.host, options.port);
            mqtt.set_keep_alive(Duration::from_secs(30))
                .set_clean_start(false)
                .set_session_expiry_interval(Some(7 * 24 * 3600))
                .set_manual_acks(true)
                .set_max_packet_size(Some(options.max_packet_bytes))
                // rumqttc sets aside a slot per possible packet id in flight (65,535 by
                // default, ~14 MB); the bridge publishes one message at a time per task.
                .set_outgoing_inflight_upper_limit(OUTGOING_IN_FLIGHT);
            if let Some(transport) = transport {
                mqtt.set_transport(transport);
            }
            if let Some((user, password)) = options.credentials {
                mqtt.set_credentials(user, password);
            }
            let (client, events) = rumqttc::v5::AsyncClient::new(mqtt, REQUEST_CAPACITY);
            (Client::V5(client), Events::V5(Box::new(events)))
        }
        Protocol::V311 => {
            let mut mqtt = rumqttc::MqttOptions::new(options.client_id, options.host, options.port);
            let max = usize::try_from(options.max_packet_bytes).unwrap_or(usize::MAX);
            mqtt.set_keep_alive(Duration::from_secs(30))
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_max_packet_size(max, max)
                .set_inflight(OUTGOING_IN_FLIGHT);
            if let Some(transport) = transport {
                mqtt.set_transport(transport);
            }
            if let Some((user, password)) = options.credentials {
                mqtt.set_credentials(user, password);
            }
            let (client, events) = rumqttc::AsyncClient::new(mqtt, REQUEST_CAPACITY);
            (Client::V311(client), Events::V311(Box::new(events)))
        }
    }
}

/// The QoS of a level (anything above 2 is taken as 1).
fn qos_v5(level: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// The QoS of a level for 3.1.1 (anything above 2 is taken as 1).
fn qos_v311(level: u8) -> rumqttc::QoS {
    use rumqttc::QoS;
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

impl Client {
    /// Subscribes to `filter` at QoS `qos`.
    pub async fn subscribe(&self, filter: String, qos: u8) -> Result<(), String> {
        match self {
            Self::V5(client) => client
                .subscribe(filter, qos_v5(qos))
                .await
                .map_err(|e| e.to_string()),
            Self::V311(client) => client
                .subscribe(filter, qos_v311(qos))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Ends the subscription to `filter`.
    pub async fn unsubscribe(&self, filter: String) -> Result<(), String> {
        match self {
            Self::V5(client) => client.unsubscribe(filter).await.map_err(|e| e.to_string()),
            Self::V311(client) => client.unsubscribe(filter).await.map_err(|e| e.to_string()),
        }
    }

    /// Publishes `payload` to `topic`; `properties` only go out on MQTT 5.
    pub async fn publish(
        &self,
        topic: String,
        qos: u8,
        retain: bool,
        payload: Bytes,
        properties: Properties,
    ) -> Result<(), String> {
        match self {
            Self::V5(client) => {
                let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    user_properties: properties.user,
                    content_type: properties.content_type,
                    correlation_data: properties.correlation_data,
                    ..Default::default()
                };
                client
                    .publish_bytes_with_properties(topic, qos_v5(qos), retain, payload, properties)
                    .await
                    .map_err(|e| e.to_string())
            }
            Self::V311(client) => client
                .publish_bytes(topic, qos_v311(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Acknowledges `message` to the broker (nothing to do at QoS 0) without waiting;
    /// `false` when the connection's request queue is full: try again once the connection
    /// has made progress. (Waiting here could deadlock: the queue empties only while the
    /// connection is polled, and the poll may be waiting for this message's handler.)
    #[must_use]
    pub fn try_ack(&self, message: &Incoming) -> bool {
        match self {
            Self::V5(client) => {
                let mut ack = rumqttc::v5::mqttbytes::v5::Publish::new(
                    "",
                    qos_v5(message.qos),
                    Vec::new(),
                    None,
                );
                ack.pkid = message.pkid;
                client.try_ack(&ack).is_ok()
            }
            Self::V311(client) => {
                let mut ack = rumqttc::Publish::new("", qos_v311(message.qos), Vec::new());
                ack.pkid = message.pkid;
                client.try_ack(&ack).is_ok()
            }
        }
    }
}

impl Events {
    /// Drives the connection until it has something to report; an error is a lost connection
    /// (the next call reconnects).
    pub async fn poll(&mut self) -> Result<LinkEvent, String> {
        match self {
            Self::V5(events) => {
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::Packet;
                Ok(match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => LinkEvent::Connected {
                        session_present: ack.session_present,
                    },
                    Event::Incoming(Packet::SubAck(_)) => LinkEvent::Subscribed,
                    Event::Incoming(Packet::Publish(publish)) => {
                        let properties = publish.properties.unwrap_or_default();
                        LinkEvent::Message(Incoming {
                            topic: publish.topic,
                            payload: publish.payload,
                            retain: publish.retain,
                            dup: publish.dup,
                            pkid: publish.pkid,
                            qos: publish.qos as u8,
                            content_type: properties.content_type,
                            response_topic: properties.response_topic,
                            correlation_data: properties.correlation_data,
                            user_properties: properties.user_properties,
                        })
                    }
                    _ => LinkEvent::Other,
                })
            }
            Self::V311(events) => {
                use rumqttc::{Event, Packet};
                Ok(match events.poll().await.map_err(|e| e.to_string())? {
                    Event::Incoming(Packet::ConnAck(ack)) => LinkEvent::Connected {
                        session_present: ack.session_present,
                    },
                    Event::Incoming(Packet::SubAck(_)) => LinkEvent::Subscribed,
                    Event::Incoming(Packet::Publish(publish)) => LinkEvent::Message(Incoming {
                        topic: Bytes::from(publish.topic),
                        payload: publish.payload,
                        retain: publish.retain,
                        dup: publish.dup,
                        pkid: publish.pkid,
                        qos: publish.qos as u8,
                        content_type: None,
                        response_topic: None,
                        correlation_data: None,
                        user_properties: Vec::new(),
                    }),
                    _ => LinkEvent::Other,
                })
            }
        }
    }
}
