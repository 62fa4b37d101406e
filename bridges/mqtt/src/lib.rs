//! The MQTT bridge: each configured mapping is a portal room tied to topic filters. What
//! devices publish appears in the room from the device's puppet (a topic level names the
//! device), rendered by the mapping's template; what people say in the room is published to
//! the mapping's topic, with MQTT 5 user properties naming the sender and the event.
//!
//! A retained message (the latest value of a topic, delivered when the bridge subscribes)
//! becomes a state event of the room (`org.switchboard.mqtt.retained`, keyed by topic) instead
//! of a timeline message; a mapping's `offline_payload` (what devices set as their last will)
//! is shown as a notice that the device went offline.
//!
//! The bridge keeps a persistent session at the broker (clean start off, QoS 1 by default)
//! and acknowledges a message only once it is in Matrix, so nothing published while
//! Switchboard was down is lost; it reconnects with backoff and reports its connection
//! through the bridge status. A redelivery (also after a crash between showing and
//! acknowledging) is shown once.
//!
//! It speaks MQTT 5 or 3.1.1 (module `link`), over TLS for `mqtts://`, or starts a broker of
//! its own on loopback when none is configured (module `embedded`); chatty topics can be
//! throttled per mapping (module `throttle`).

mod embedded;
mod link;
mod settings;
mod throttle;
mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use switchboard_api::bridge::{
    Bridge, BridgeCommand, BridgeContext, EditHandler, RedactionHandler,
};
use switchboard_api::command::{CommandReply, CommandSpec};
use switchboard_api::connection::{Connector, Link};
use switchboard_api::event::TextKind;
use switchboard_api::factory::{BridgeFactory, BuildContext};
use switchboard_api::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use switchboard_api::matrix::{MatrixEdit, MatrixMessage, MatrixRedaction};
use switchboard_api::remote::{
    BridgeInfo, MediaKind, PortalInfo, PuppetProfile, RemoteEvent, RemoteMedia, RemoteText,
};
use switchboard_api::ruma::UserId;
use switchboard_api::serde_json::{self, Value, json};
use switchboard_api::{Backoff, PluginError, Secret};

pub use link::Protocol;
use link::{Client, ConnectOptions, Events, Incoming, LinkEvent, Properties};
use settings::{Broker, Mapping};
pub use settings::{Change, Direction, MappingSettings, MqttSettings};
use throttle::{Admission, Throttles};
pub use throttle::{Throttle, TooSoon};

/// The state event type holding a topic's retained value (state key: the topic).
pub const RETAINED_EVENT: &str = "org.switchboard.mqtt.retained";

/// The pauses between reconnection attempts: 1 s, doubling to 30 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// The MQTT bridge.
#[derive(Debug)]
pub struct MqttBridge {
    settings: MqttSettings,
    broker: Broker,
    mappings: Arc<Vec<Mapping>>,
    client: OnceLock<Client>,
    connected: Arc<AtomicBool>,
    /// The latest text seen on each topic (for `!mqtt last`).
    last: Arc<Mutex<HashMap<String, String>>>,
    /// Filters rooms subscribed to by command, by mapping (kept in the portal's data).
    extra: Extra,
    /// Response topics of recent device messages.
    responses: Responses,
}

/// Refuses `sender` unless they may publish from `mapping`'s room to `topic`: one of its
/// `publishers`, with the `publish_power_level` it asks for (read from the room now).
async fn may_publish(
    ctx: &BridgeContext,
    mapping: &Mapping,
    sender: &UserId,
    topic: &str,
) -> Result<(), PluginError> {
    if !mapping.may_publish(sender) {
        return Err(PluginError::permanent(format!(
            "{sender} may not publish to {topic}"
        )));
    }
    if let Some(needed) = mapping.settings.publish_power_level {
        let key = PortalKey::shared(mapping.settings.name.as_str());
        let level = ctx.matrix().power_level(&key, sender).await?;
        if level < needed {
            return Err(PluginError::permanent(format!(
                "{sender} may not publish to {topic}: it takes power level {needed} in this \
                 room, and they have {level}"
            )));
        }
    }
    Ok(())
}

/// Filters rooms subscribed to by command, by mapping name.
type Extra = Arc<std::sync::RwLock<HashMap<String, Vec<String>>>>;

/// Where replies to a device's message go: the response topic and correlation data the
/// device gave (MQTT 5), by the message's remote id; the latest [`RESPONSES_KEPT`] only.
type Responses = Arc<Mutex<std::collections::VecDeque<(String, String, Option<bytes::Bytes>)>>>;

/// How many messages' response topics are remembered.
const RESPONSES_KEPT: usize = 1000;

/// What the bridge keeps in a portal's data.
#[derive(
    Debug, Default, switchboard_api::serde::Deserialize, switchboard_api::serde::Serialize,
)]
#[serde(crate = "switchboard_api::serde")]
struct RoomTopics {
    /// Filters added with `!mqtt subscribe`.
    topics: Vec<String>,
}

/// Every filter a mapping's room receives: the configured ones and those added by command.
fn filters_of(mapping: &Mapping, extra: &Extra) -> Vec<String> {
    let added = extra
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&mapping.settings.name)
        .cloned()
        .unwrap_or_default();
    mapping
        .settings
        .topics
        .iter()
        .cloned()
        .chain(added)
        .collect()
}

/// The largest packet the bridge accepts from the broker: four times `max_payload_bytes`, at
/// least 1 MiB.
fn receive_limit(max_payload_bytes: usize) -> u32 {
    u32::try_from(max_payload_bytes.saturating_mul(4))
        .unwrap_or(u32::MAX)
        .max(1 << 20)
}

impl MqttBridge {
    /// Where a change (edit, deletion) of a room message in `portal` is published: `None`
    /// when the mapping ignores such changes (`which` picks the setting), `Err` when `sender`
    /// may not publish.
    async fn change_target(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        which: impl Fn(&MappingSettings) -> Change,
        sender: &UserId,
    ) -> Result<Option<(&Mapping, &String)>, PluginError> {
        let Some(mapping) = self.mapping(portal.chat.as_str()) else {
            return Ok(None);
        };
        let Some(topic) = mapping
            .settings
            .publish_to
            .as_ref()
            .filter(|_| which(&mapping.settings) == Change::Publish)
        else {
            return Ok(None);
        };
        may_publish(ctx, mapping, sender, topic).await?;
        Ok(Some((mapping, topic)))
    }

    /// `!mqtt subscribe <filter>`: adds a filter the mapping's `subscribe_allow` covers.
    async fn subscribe_room(
        &self,
        ctx: &BridgeContext,
        mapping: &Mapping,
        filter: String,
    ) -> Result<CommandReply, PluginError> {
        let settings = &mapping.settings;
        let refuse = |why: String| Err(PluginError::permanent(why));
        if !topic::is_valid_filter(&filter) {
            return refuse(format!("{filter:?} is not a topic filter"));
        }
        if !settings.direction.inbound() {
            return refuse("this room only publishes to MQTT".to_owned());
        }
        if !settings
            .subscribe_allow
            .iter()
            .any(|allow| topic::matches(allow, &filter))
        {
            return refuse(format!(
                "{filter} is outside the topics this room may subscribe to"
            ));
        }
        if filters_of(mapping, &self.extra).contains(&filter) {
            return Ok(format!("This room receives {filter} already.").into());
        }
        self.change_extra(ctx, mapping, |topics| topics.push(filter.clone()))
            .await?;
        if let Some(client) = self.client.get() {
            client
                .subscribe(filter.clone(), settings.qos)
                .await
                .map_err(|e| PluginError::transient(format!("cannot subscribe: {e}")))?;
        }
        Ok(format!("This room now receives {filter}.").into())
    }

    /// `!mqtt unsubscribe <filter>`: removes a filter added by command.
    async fn unsubscribe_room(
        &self,
        ctx: &BridgeContext,
        mapping: &Mapping,
        filter: String,
    ) -> Result<CommandReply, PluginError> {
        if mapping.settings.topics.contains(&filter) {
            return Err(PluginError::permanent(format!(
                "{filter} is in the config; remove it there"
            )));
        }
        if !filters_of(mapping, &self.extra).contains(&filter) {
            return Err(PluginError::permanent(format!(
                "this room is not subscribed to {filter}"
            )));
        }
        self.change_extra(ctx, mapping, |topics| topics.retain(|t| *t != filter))
            .await?;
        let still_used = self
            .mappings
            .iter()
            .any(|m| filters_of(m, &self.extra).contains(&filter));
        if !still_used && let Some(client) = self.client.get() {
            client
                .unsubscribe(filter.clone())
                .await
                .map_err(|e| PluginError::transient(format!("cannot unsubscribe: {e}")))?;
        }
        Ok(format!("This room no longer receives {filter}.").into())
    }

    /// Changes the filters a mapping's room added by command, in memory and in the portal's
    /// data (so they survive a restart).
    async fn change_extra(
        &self,
        ctx: &BridgeContext,
        mapping: &Mapping,
        change: impl FnOnce(&mut Vec<String>),
    ) -> Result<(), PluginError> {
        let topics = {
            let mut extra = self.extra.write().unwrap_or_else(PoisonError::into_inner);
            let topics = extra.entry(mapping.settings.name.clone()).or_default();
            change(topics);
            topics.clone()
        };
        let key = PortalKey::shared(mapping.settings.name.as_str());
        ctx.matrix()
            .set_portal_data(&key, &RoomTopics { topics })
            .await?;
        Ok(())
    }

    /// The mapping named `name`.
    fn mapping(&self, name: &str) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.settings.name == name)
    }

    /// Publishes with the mapping's QoS and retain flag; transient while the broker is away.
    async fn publish(
        &self,
        mapping: &Mapping,
        topic: &str,
        payload: String,
        properties: Properties,
    ) -> Result<(), PluginError> {
        let (Some(client), true) = (self.client.get(), self.connected.load(Ordering::Relaxed))
        else {
            return Err(PluginError::network_down(
                "the MQTT broker is not reachable",
            ));
        };
        client
            .publish(
                topic.to_owned(),
                mapping.settings.qos,
                mapping.settings.retain,
                bytes::Bytes::from(payload),
                properties,
            )
            .await
            .map_err(|e| PluginError::transient(format!("cannot publish: {e}")))
    }

    /// The bridge from its checked settings.
    fn from_settings(settings: MqttSettings) -> Result<Self, String> {
        let (settings, broker, mappings) = settings::check(settings)?;
        Ok(Self {
            settings,
            broker,
            mappings: Arc::new(mappings),
            client: OnceLock::new(),
            connected: Arc::default(),
            last: Arc::default(),
            extra: Arc::default(),
            responses: Arc::default(),
        })
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            protocol: self.broker.protocol,
            client_id: self.settings.client_id.clone(),
            host: self.broker.host.clone(),
            port: self.broker.port,
            credentials: self.settings.username.clone().map(|user| {
                let password = self.settings.password.as_ref().map(Secret::expose);
                (user, password.cloned().unwrap_or_default())
            }),
            tls: self.broker.tls.clone(),
            // Read packets well over max_payload_bytes, so that an oversized message is
            // reported (not a broken connection); the broker drops bigger ones.
            max_packet_bytes: receive_limit(self.settings.max_payload_bytes),
        }
    }
}

#[switchboard_api::async_trait]
impl Bridge for MqttBridge {
    fn info(&self) -> BridgeInfo {
        BridgeInfo {
            id: "mqtt".to_owned(),
            displayname: "MQTT".to_owned(),
        }
    }

    async fn chat_info(&self, portal: &PortalKey) -> Result<PortalInfo, PluginError> {
        let mapping = self
            .mappings
            .iter()
            .find(|m| m.settings.name == portal.chat.as_str())
            .ok_or_else(|| {
                PluginError::permanent(format!("no mapping is named {}", portal.chat))
            })?;
        Ok(PortalInfo {
            name: Some(format!("MQTT {}", mapping.settings.name)),
            topic: Some(format!(
                "MQTT topics: {}",
                mapping.settings.topics.join(", ")
            )),
            invite: self.settings.invite.clone(),
            ..PortalInfo::default()
        })
    }

    async fn start(&self, ctx: BridgeContext) -> Result<(), PluginError> {
        if let Some(listen) = self.broker.embedded {
            // The broker takes what the bridge reads, so that a message over
            // max_payload_bytes is reported in the room rather than refused.
            let accepted = receive_limit(self.settings.max_payload_bytes);
            embedded::start(listen, usize::try_from(accepted).unwrap_or(usize::MAX))
                .await
                .map_err(PluginError::permanent)?;
        }
        for mapping in self.mappings.iter() {
            let key = PortalKey::shared(mapping.settings.name.as_str());
            ctx.matrix().ensure_portal(&key).await?;
            let added: RoomTopics = ctx.matrix().portal_data(&key).await?;
            self.extra
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(mapping.settings.name.clone(), added.topics);
        }
        let (client, events) = link::connect(self.connect_options());
        self.client
            .set(client.clone())
            .map_err(|_| PluginError::permanent("the MQTT bridge was started twice"))?;
        let inbound = Inbound {
            ctx: ctx.clone(),
            mappings: Arc::clone(&self.mappings),
            max_payload_bytes: self.settings.max_payload_bytes,
            sequence: AtomicU64::new(0),
            last: Arc::clone(&self.last),
            extra: Arc::clone(&self.extra),
            responses: Arc::clone(&self.responses),
            throttles: Mutex::default(),
        };
        ctx.spawn(
            "mqtt link",
            run(inbound, events, client, Arc::clone(&self.connected)),
        );
        Ok(())
    }

    async fn handle_matrix_message(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, PluginError> {
        let Some(mapping) = self
            .mappings
            .iter()
            .find(|m| m.settings.name == portal.chat.as_str())
        else {
            return Err(PluginError::permanent(format!(
                "no MQTT mapping is named {}",
                portal.chat
            )));
        };
        let settings = &mapping.settings;
        // A reply to a device's message that named a response topic goes there.
        let response = message.reply_to.as_ref().and_then(|id| {
            self.responses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|(known, _, _)| known == id.as_str())
                .map(|(_, topic, correlation)| (topic.clone(), correlation.clone()))
        });
        let Some(topic) = response.as_ref().map(|(topic, _)| topic).or_else(|| {
            settings
                .publish_to
                .as_ref()
                .filter(|_| settings.direction.outbound())
        }) else {
            return Err(PluginError::permanent("this room only receives from MQTT"));
        };
        may_publish(ctx, mapping, &message.sender, topic).await?;
        let payload = if settings.envelope {
            json!({
                "sender": message.sender,
                "room": message.room_id,
                "event_id": message.event_id,
                "body": message.body,
            })
            .to_string()
        } else {
            message.body.clone()
        };
        let properties = Properties {
            correlation_data: response.as_ref().and_then(|(_, c)| c.clone()),
            user: vec![
                ("sender".to_owned(), message.sender.to_string()),
                ("event_id".to_owned(), message.event_id.to_string()),
            ],
            content_type: Some(
                if settings.envelope {
                    "application/json"
                } else {
                    "text/plain"
                }
                .to_owned(),
            ),
        };
        self.publish(mapping, topic, payload, properties).await?;
        Ok(RemoteMessageId(format!("pub-{}", message.event_id)))
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![
            CommandSpec::new("topics", "Shows the topics this room is mapped to").max_args(0),
            CommandSpec::new(
                "last",
                "Shows the latest value seen on one of this room's topics",
            )
            .args("<topic>")
            .min_args(1)
            .max_args(1),
            CommandSpec::new(
                "subscribe",
                "Makes this room receive a topic filter it may take",
            )
            .args("<filter>")
            .min_args(1)
            .max_args(1),
            CommandSpec::new(
                "unsubscribe",
                "Stops this room receiving a filter it subscribed to",
            )
            .args("<filter>")
            .min_args(1)
            .max_args(1),
            CommandSpec::new(
                "publish",
                "Publishes a payload to a topic this room may publish to",
            )
            .args("<topic> <payload>")
            .min_args(2),
        ]
    }

    fn edits(&self) -> Option<&dyn EditHandler> {
        Some(self)
    }

    fn redactions(&self) -> Option<&dyn RedactionHandler> {
        Some(self)
    }

    async fn handle_command(
        &self,
        ctx: &BridgeContext,
        command: &BridgeCommand,
    ) -> Result<CommandReply, PluginError> {
        let Some(mapping) = command
            .portal
            .as_ref()
            .and_then(|p| self.mapping(p.chat.as_str()))
        else {
            return Ok("This room is not mapped to MQTT topics.".into());
        };
        let settings = &mapping.settings;
        let topic = command.invocation.args.first().cloned().unwrap_or_default();
        match command.invocation.name.as_str() {
            "topics" => Ok(format!(
                "{}: from {} ({:?}); room messages go to {}.",
                settings.name,
                filters_of(mapping, &self.extra).join(", "),
                settings.direction,
                settings.publish_to.as_deref().unwrap_or("nowhere")
            )
            .into()),
            "subscribe" => self.subscribe_room(ctx, mapping, topic).await,
            "unsubscribe" => self.unsubscribe_room(ctx, mapping, topic).await,
            "last" => {
                if !filters_of(mapping, &self.extra)
                    .iter()
                    .any(|f| topic::matches(f, &topic))
                {
                    return Err(PluginError::permanent(format!(
                        "{topic} is not one of this room's topics"
                    )));
                }
                let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(last
                    .get(&topic)
                    .map_or_else(
                        || format!("Nothing seen on {topic} since the start."),
                        |value| format!("{topic}: {value}"),
                    )
                    .into())
            }
            _ => {
                if !mapping.may_publish_to(&topic) {
                    return Err(PluginError::permanent(format!(
                        "{} may not publish to {topic} from this room",
                        command.sender
                    )));
                }
                may_publish(ctx, mapping, &command.sender, &topic).await?;
                let payload = command
                    .invocation
                    .raw_args
                    .split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_owned())
                    .unwrap_or_default();
                let properties = Properties {
                    user: vec![("sender".to_owned(), command.sender.to_string())],
                    ..Properties::default()
                };
                self.publish(mapping, &topic, payload, properties).await?;
                Ok(format!("Published to {topic}.").into())
            }
        }
    }
}

/// The Matrix event a remote id of a published message stands for (`pub-<event id>`).
fn published_event(id: &RemoteMessageId) -> &str {
    id.as_str().strip_prefix("pub-").unwrap_or(id.as_str())
}

/// Edits are published when the mapping says so (`on_edit: publish`), else ignored.
#[switchboard_api::async_trait]
impl EditHandler for MqttBridge {
    async fn handle_matrix_edit(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        edit: &MatrixEdit,
    ) -> Result<(), PluginError> {
        let Some((mapping, topic)) = self
            .change_target(ctx, portal, |s| s.on_edit, &edit.sender)
            .await?
        else {
            return Ok(());
        };
        let settings = &mapping.settings;
        let replaces = published_event(&edit.target);
        let payload = if settings.envelope {
            json!({
                "sender": edit.sender,
                "event_id": edit.event_id,
                "replaces": replaces,
                "body": edit.body,
            })
            .to_string()
        } else {
            edit.body.clone()
        };
        let properties = Properties {
            user: vec![
                ("sender".to_owned(), edit.sender.to_string()),
                ("event_id".to_owned(), edit.event_id.to_string()),
                ("replaces".to_owned(), replaces.to_owned()),
            ],
            ..Properties::default()
        };
        self.publish(mapping, topic, payload, properties).await
    }
}

/// Deletions are published when the mapping says so (`on_redaction: publish`), else ignored.
#[switchboard_api::async_trait]
impl RedactionHandler for MqttBridge {
    async fn handle_matrix_redaction(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        redaction: &MatrixRedaction,
    ) -> Result<(), PluginError> {
        if redaction.reaction.is_some() {
            return Ok(());
        }
        let Some((mapping, topic)) = self
            .change_target(ctx, portal, |s| s.on_redaction, &redaction.sender)
            .await?
        else {
            return Ok(());
        };
        let redacts = published_event(&redaction.target);
        let payload = json!({ "redacts": redacts, "sender": redaction.sender }).to_string();
        let properties = Properties {
            user: vec![
                ("sender".to_owned(), redaction.sender.to_string()),
                ("redacts".to_owned(), redacts.to_owned()),
            ],
            content_type: Some("application/json".to_owned()),
            ..Properties::default()
        };
        self.publish(mapping, topic, payload, properties).await
    }
}

/// A message being brought in under a packet id, as stored until the packet id is reused.
#[derive(switchboard_api::serde::Deserialize, switchboard_api::serde::Serialize)]
#[serde(crate = "switchboard_api::serde")]
struct InFlight {
    /// The message's remote id.
    id: String,
    /// Its topic (a redelivery on another topic is another message).
    topic: String,
}

/// A message on its way into one room: the message, its topic and its id.
struct Arrival<'a> {
    message: Arc<Pending>,
    topic: &'a str,
    id: Arc<str>,
}

/// A message from the broker on its way into Matrix: acknowledged when the last mapping is
/// done with it (shown, dropped or replaced by a newer one), unless one could not show it.
struct Pending {
    publish: Incoming,
    /// A mapping could not show it: it must not be acknowledged.
    failed: AtomicBool,
}

/// A message held by a throttle: the message and its remote id.
type Held = (Arc<Pending>, String);

/// Messages brought in together, at most (their delivery state is stored in one write).
const INBOUND_BATCH: usize = 64;

/// How long a held message that could not be shown waits before the next try.
const HELD_RETRY: Duration = Duration::from_secs(5);

/// What the connection task needs to bring MQTT messages into Matrix.
struct Inbound {
    ctx: BridgeContext,
    mappings: Arc<Vec<Mapping>>,
    max_payload_bytes: usize,
    sequence: AtomicU64,
    /// The latest text seen on each topic.
    last: Arc<Mutex<HashMap<String, String>>>,
    /// Filters rooms subscribed to by command.
    extra: Extra,
    /// Response topics of recent device messages.
    responses: Responses,
    /// The throttles of chatty topics, with the messages they hold.
    throttles: Mutex<Throttles<Held>>,
}

/// Runs the bridge's side of the connection until shutdown: (re)subscribes when the broker
/// lost the session, brings each message into Matrix before acknowledging it, and shows the
/// messages throttles held when they are due.
async fn run(inbound: Inbound, events: Events, client: Client, connected: Arc<AtomicBool>) {
    let shutdown = inbound.ctx.shutdown().clone();
    // The connection is polled in a task of its own (kept up by the framework), so that a
    // due throttle never cancels a poll halfway. Messages are brought in as many as have
    // arrived at once (at most INBOUND_BATCH), so that what is stored for them is stored in
    // one write; the broker's flow control stays in charge, as nothing is acknowledged
    // before it is in Matrix.
    let (reports, mut received) = tokio::sync::mpsc::channel(INBOUND_BATCH);
    let connection = BrokerConnection {
        events: tokio::sync::Mutex::new(events),
        reports,
    };
    let link = inbound
        .ctx
        .keep_connected("mqtt link", RECONNECT, Arc::new(connection));
    // Subscriptions sent and not yet acknowledged: the bridge counts as connected once the
    // broker confirmed them all.
    let mut awaiting_subacks = 0_usize;
    let mut acks = UnsentAcks::default();
    // A report taken from the channel while gathering messages, handled next.
    let mut next: Option<Result<LinkEvent, String>> = None;
    // Messages shown whose records are not yet known to be stored. While more messages wait,
    // they are stored with the next batch's delivery state (one write for both); once
    // nothing waits, they are stored and acknowledged.
    let mut unsettled: Vec<Arc<Pending>> = Vec::new();
    loop {
        if !unsettled.is_empty()
            && ((next.is_none() && received.is_empty()) || unsettled.len() >= 4 * INBOUND_BATCH)
        {
            let done = std::mem::take(&mut unsettled);
            unsettled = acks.release_settled(&inbound.ctx, &client, done).await;
        }
        acks.hand_over(&client);
        let next_due = inbound.next_due();
        let event = if let Some(event) = next.take() {
            event
        } else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep_until_due(next_due) => {
                    let done = inbound.show_due().await;
                    unsettled.extend(acks.release_settled(&inbound.ctx, &client, done).await);
                    continue;
                }
                () = tokio::time::sleep(ACK_RETRY), if acks.waiting() => continue,
                // Storing what the messages recorded failed: try again in a while.
                () = tokio::time::sleep(SETTLE_RETRY), if !unsettled.is_empty() => continue,
                event = received.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
            }
        };
        match event {
            Ok(LinkEvent::Connected { session_present }) => {
                connected.store(true, Ordering::Relaxed);
                awaiting_subacks = if session_present {
                    0
                } else {
                    subscribe(&client, &inbound.mappings, &inbound.extra).await
                };
                if awaiting_subacks == 0 {
                    link.connected();
                }
                tracing::info!(session_present, "connected to the MQTT broker");
            }
            Ok(LinkEvent::Subscribed) if awaiting_subacks > 0 => {
                awaiting_subacks -= 1;
                if awaiting_subacks == 0 {
                    link.connected();
                }
            }
            Ok(LinkEvent::Message(publish)) => {
                let mut batch = vec![publish];
                while batch.len() < INBOUND_BATCH
                    && let Ok(event) = received.try_recv()
                {
                    match event {
                        Ok(LinkEvent::Message(publish)) => batch.push(publish),
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                unsettled.extend(inbound.bring_in(batch).await);
            }
            Ok(_) => {}
            Err(_) => {
                connected.store(false, Ordering::Relaxed);
                // The broker delivers what was not acknowledged again after the reconnection
                // (then it is recognised and acknowledged once); an acknowledgement from before
                // could meet a packet id the broker has given to another message since.
                unsettled.clear();
                acks.clear();
            }
        }
    }
}

/// The broker connection as the framework keeps it up: polled until it drops, each report
/// handed to the bridge's loop ([`run`]); after a drop the framework waits ([`RECONNECT`]:
/// 1 s, doubling to 30 s) before the next poll reconnects.
struct BrokerConnection {
    events: tokio::sync::Mutex<Events>,
    reports: tokio::sync::mpsc::Sender<Result<LinkEvent, String>>,
}

#[switchboard_api::async_trait]
impl Connector for BrokerConnection {
    async fn run(&self, _link: &Link) -> Result<(), PluginError> {
        let mut events = self.events.lock().await;
        loop {
            let event = events.poll().await;
            let lost = event.as_ref().err().cloned();
            if self.reports.send(event).await.is_err() {
                // The bridge's loop ended: Switchboard is stopping.
                return Ok(());
            }
            if let Some(e) = lost {
                return Err(PluginError::network_down(format!(
                    "the MQTT connection was lost: {e}"
                )));
            }
        }
    }
}

/// Sleeps until `due`; forever when nothing is due.
async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Acknowledgements not yet handed to the connection (its request queue was full), oldest
/// first.
#[derive(Default)]
struct UnsentAcks(std::collections::VecDeque<Incoming>);

impl UnsentAcks {
    /// Lets go of messages once what bringing them into Matrix recorded is stored (see
    /// [`UnsentAcks::release`]). If it cannot be stored now, they are not acknowledged yet:
    /// they are handed back, to be let go later.
    async fn release_settled(
        &mut self,
        ctx: &BridgeContext,
        client: &Client,
        messages: Vec<Arc<Pending>>,
    ) -> Vec<Arc<Pending>> {
        if messages.is_empty() {
            return messages;
        }
        if let Err(e) = ctx.matrix().settle().await {
            tracing::warn!(error = %e, "cannot store which MQTT messages are in Matrix yet; they are acknowledged once it is");
            return messages;
        }
        for message in messages {
            self.release(client, message);
        }
        Vec::new()
    }

    /// Forgets the acknowledgements not handed over yet (the connection they were for is gone).
    fn clear(&mut self) {
        self.0.clear();
    }

    /// Lets go of a message: once no mapping holds it any more, it is acknowledged to the
    /// broker (after those waiting already), unless a mapping could not show it (then the
    /// broker delivers it again).
    fn release(&mut self, client: &Client, message: Arc<Pending>) {
        let Some(message) = Arc::into_inner(message) else {
            return;
        };
        if message.failed.load(Ordering::Relaxed) {
            return;
        }
        self.0.push_back(message.publish);
        self.hand_over(client);
    }

    /// Hands the waiting acknowledgements to the connection, in order, as far as it takes
    /// them.
    fn hand_over(&mut self, client: &Client) {
        while let Some(message) = self.0.front() {
            if !client.try_ack(message) {
                return;
            }
            self.0.pop_front();
        }
    }

    /// Whether some wait.
    fn waiting(&self) -> bool {
        !self.0.is_empty()
    }
}

/// How long waiting acknowledgements wait before the next try.
const ACK_RETRY: Duration = Duration::from_millis(5);
/// How long before storing what shown messages recorded is tried again after a failure.
const SETTLE_RETRY: Duration = Duration::from_secs(1);

/// Subscribes to every inbound filter; returns how many subscriptions were sent.
async fn subscribe(client: &Client, mappings: &[Mapping], extra: &Extra) -> usize {
    let mut sent = 0;
    for mapping in mappings.iter().filter(|m| m.settings.direction.inbound()) {
        for filter in &filters_of(mapping, extra) {
            match client.subscribe(filter.clone(), mapping.settings.qos).await {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(filter, error = %e, "cannot subscribe"),
            }
        }
    }
    sent
}

impl Inbound {
    /// The id of a message: new, or the one it had when first delivered if this is a
    /// redelivery (`dup`: its acknowledgement was lost in a broker restart, or Switchboard
    /// stopped between showing and acknowledging it). The id of each packet id's latest
    /// message is stored before the message is shown, so the redelivery after a crash is
    /// shown once.
    async fn message_id(&self, publish: &Incoming, topic: &str) -> String {
        let key = format!("in-flight/{}", publish.pkid);
        if publish.dup && publish.pkid != 0 {
            match self
                .ctx
                .matrix()
                .bridge_data::<Option<InFlight>>(&key)
                .await
            {
                Ok(Some(known)) if known.topic == topic => return known.id,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the id of a redelivered MQTT message");
                }
            }
        }
        let now_ms = self.ctx.clock().now_ms();
        let id = format!(
            "{topic}@{now_ms}-{}",
            self.sequence.fetch_add(1, Ordering::Relaxed)
        );
        if publish.pkid != 0 {
            let in_flight = InFlight {
                id: id.clone(),
                topic: topic.to_owned(),
            };
            if let Err(e) = self
                .ctx
                .matrix()
                .set_bridge_data(&key, &Some(in_flight))
                .await
            {
                tracing::warn!(error = %e, "cannot record an MQTT message as in flight; a redelivery after a crash may show it twice");
            }
        }
        id
    }

    /// The inbound mappings whose filters (configured, or added by command) match `topic`.
    fn matching(&self, topic: &str) -> Vec<&Mapping> {
        let extra = self.extra.read().unwrap_or_else(PoisonError::into_inner);
        self.mappings
            .iter()
            .filter(|m| {
                m.settings.direction.inbound()
                    && (m.settings.topics.iter().any(|f| topic::matches(f, topic))
                        || extra
                            .get(&m.settings.name)
                            .is_some_and(|added| added.iter().any(|f| topic::matches(f, topic))))
            })
            .collect()
    }

    /// Brings messages that arrived together into the rooms whose filters match them, or
    /// hands them to their throttles; their ids (and delivery state) are recorded in one write
    /// first. Each room gets its messages in the order they arrived, and the rooms are served
    /// at the same time (one room's round trips to the homeserver do not wait for another's).
    /// Returns the messages this is done with, to be released.
    async fn bring_in(&self, publishes: Vec<Incoming>) -> Vec<Arc<Pending>> {
        // Every message of the batch, in arrival order: released in that order (MQTT wants
        // acknowledgements in the order messages came).
        let mut in_order = Vec::with_capacity(publishes.len());
        let mut admitted = Vec::with_capacity(publishes.len());
        for publish in publishes {
            let message = Arc::new(Pending {
                publish,
                failed: AtomicBool::new(false),
            });
            if let Some((topic, mappings)) = self.admit(&message.publish).await {
                admitted.push((Arc::clone(&message), topic, mappings));
            }
            in_order.push(message);
        }
        // Recorded together: the writes of one moment are stored in one group.
        let ids = futures_util::future::join_all(
            admitted
                .iter()
                .map(|(message, topic, _)| self.message_id(&message.publish, topic)),
        )
        .await;
        let mut lanes: Vec<(&Mapping, Vec<Arrival>)> = Vec::new();
        for ((message, topic, mappings), id) in admitted.iter().zip(ids) {
            self.remember(&message.publish, topic, &id);
            let id: Arc<str> = id.into();
            for &mapping in mappings {
                let arrival = Arrival {
                    message: Arc::clone(message),
                    topic: topic.as_str(),
                    id: Arc::clone(&id),
                };
                match lanes.iter_mut().find(|(m, _)| std::ptr::eq(*m, mapping)) {
                    Some((_, lane)) => lane.push(arrival),
                    None => lanes.push((mapping, vec![arrival])),
                }
            }
        }
        let replaced =
            futures_util::future::join_all(lanes.into_iter().map(|(mapping, lane)| async move {
                let mut replaced = Vec::new();
                for arrival in lane {
                    replaced.extend(self.show_or_hold(mapping, arrival).await);
                }
                replaced
            }))
            .await;
        // Those a throttle let go in their place came earlier.
        let mut released: Vec<Arc<Pending>> = replaced.into_iter().flatten().collect();
        released.extend(in_order);
        released
    }

    /// The topic of a message to bring in and the mappings it is for, or `None` when it is not
    /// for any room (no mapping matches it, its topic is not UTF-8, it is too large: then it
    /// is reported and dropped).
    async fn admit(&self, publish: &Incoming) -> Option<(String, Vec<&Mapping>)> {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            tracing::warn!("skipped an MQTT message whose topic is not UTF-8");
            return None;
        };
        let matching = self.matching(topic);
        if matching.is_empty() {
            return None;
        }
        if publish.payload.len() > self.max_payload_bytes {
            let detail = format!(
                "A message on {topic} was not shown: its {} bytes are more than \
                 max_payload_bytes ({}).",
                publish.payload.len(),
                self.max_payload_bytes
            );
            for mapping in matching {
                let key = PortalKey::shared(mapping.settings.name.as_str());
                self.ctx
                    .matrix()
                    .report_skipped(&key, "too_large", &detail)
                    .await;
            }
            return None;
        }
        Some((topic.to_owned(), matching))
    }

    /// Shows one message in `mapping`'s room, or hands it to the room's throttle; returns the
    /// message the throttle let go in its place, if any, to be released.
    async fn show_or_hold(&self, mapping: &Mapping, arrival: Arrival<'_>) -> Option<Arc<Pending>> {
        let Arrival { message, topic, id } = arrival;
        let publish = &message.publish;
        let throttle = mapping.settings.throttle.filter(|_| {
            // A last will always shows.
            mapping
                .settings
                .offline_payload
                .as_deref()
                .map(str::as_bytes)
                != Some(&publish.payload[..])
        });
        if let Some(throttle) = throttle {
            let admission = self
                .throttles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .admit(
                    &mapping.settings.name,
                    throttle,
                    topic,
                    tokio::time::Instant::now(),
                    (Arc::clone(&message), id.to_string()),
                );
            match admission {
                Admission::Show(_) => {}
                Admission::Held { replaced } => return replaced.map(|(old, _)| old),
                Admission::Drop(_) => {
                    let detail = format!(
                        "Messages on {topic} come more often than once every {} s, the \
                         throttle of {}: those in between are not shown.",
                        throttle.interval_secs, mapping.settings.name
                    );
                    let key = PortalKey::shared(mapping.settings.name.as_str());
                    self.ctx
                        .matrix()
                        .report_skipped(&key, "rate_limited", &detail)
                        .await;
                    return None;
                }
            }
        }
        if !self.show(mapping, topic, publish, &id).await {
            message.failed.store(true, Ordering::Relaxed);
        }
        None
    }

    /// Remembers the latest text of the message's topic (for `!mqtt last`) and where replies
    /// to it go (the MQTT 5 response topic and correlation data it gave, if any).
    fn remember(&self, publish: &Incoming, topic: &str, id: &str) {
        if let Ok(text) = std::str::from_utf8(&publish.payload) {
            self.last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(topic.to_owned(), text.to_owned());
        }
        if let Some(response_topic) = publish.response_topic.clone() {
            let correlation = publish.correlation_data.clone();
            let mut responses = self
                .responses
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if responses.len() >= RESPONSES_KEPT {
                responses.pop_front();
            }
            responses.push_back((id.to_owned(), response_topic, correlation));
        }
    }

    /// When the next message held by a throttle is due.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_due()
    }

    /// Shows the held messages whose interval ended (one that cannot be shown is held a while
    /// longer); returns those shown, to be released.
    async fn show_due(&self) -> Vec<Arc<Pending>> {
        let now = tokio::time::Instant::now();
        let due = self
            .throttles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_due(now, |name| {
                self.mapping(name)
                    .and_then(|m| m.settings.throttle)
                    .map_or(Duration::ZERO, |t| Duration::from_secs(t.interval_secs))
            });
        let mut released = Vec::with_capacity(due.len());
        for (name, topic, (message, id)) in due {
            let shown = match self.mapping(&name) {
                Some(mapping) => self.show(mapping, &topic, &message.publish, &id).await,
                None => true,
            };
            if shown {
                released.push(message);
            } else {
                self.throttles
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .hold_again(name, topic, now + HELD_RETRY, (message, id));
            }
        }
        released
    }

    /// The mapping called `name`.
    fn mapping(&self, name: &str) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.settings.name == name)
    }

    /// Shows one message in `mapping`'s room; `false` when Matrix could not take it.
    async fn show(&self, mapping: &Mapping, topic: &str, publish: &Incoming, id: &str) -> bool {
        let (event, problem) = event_for(mapping, topic, publish, RemoteMessageId(id.to_owned()));
        let key = PortalKey::shared(mapping.settings.name.as_str());
        if let Some(problem) = problem {
            let detail = format!(
                "The template of {} failed on a message on {topic} ({problem}); it is \
                 shown as sent.",
                mapping.settings.name
            );
            self.ctx
                .matrix()
                .report_skipped(&key, "template", &detail)
                .await;
        }
        if let Err(e) = self.ctx.matrix().apply(&key, &event).await {
            tracing::warn!(topic, error = %e, "cannot bring an MQTT message into Matrix; the broker will deliver it again");
            return false;
        }
        true
    }
}

/// The Matrix event for one MQTT message in one mapping: text (templated) or, for a payload
/// that is not UTF-8, a file; and why the template could not be used, if it could not.
fn event_for(
    mapping: &Mapping,
    topic: &str,
    publish: &Incoming,
    id: RemoteMessageId,
) -> (RemoteEvent, Option<String>) {
    let settings = &mapping.settings;
    let levels: Vec<&str> = topic.split('/').collect();
    let named_by_property = settings.device_property.as_ref().and_then(|name| {
        publish
            .user_properties
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    });
    let device = named_by_property
        .or_else(|| {
            settings
                .device_level
                .and_then(|level| levels.get(level).copied())
        })
        .filter(|d| !d.is_empty())
        .unwrap_or(&settings.name)
        .to_owned();
    let sender = RemoteUserId(device.clone());
    let profile = PuppetProfile {
        displayname: Some(device.clone()),
        avatar_url: None,
    };
    let Ok(text) = std::str::from_utf8(&publish.payload) else {
        let file = RemoteEvent::Media(RemoteMedia {
            id,
            part: String::new(),
            sender,
            sender_profile: profile,
            kind: MediaKind::File,
            filename: format!("{}.bin", levels.last().copied().unwrap_or("payload")),
            mimetype: publish
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            data: publish.payload.clone().into(),
            sent_at_ms: None,
        });
        return (file, None);
    };
    if settings.offline_payload.as_deref() == Some(text) {
        let notice = RemoteEvent::Message(RemoteText {
            kind: TextKind::Notice,
            ..RemoteText::text(id, sender, profile, format!("{device} went offline"))
        });
        return (notice, None);
    }
    let (body, problem) = match render(mapping, topic, &levels, text, &device) {
        Ok(body) => (body, None),
        Err(problem) => (text.to_owned(), Some(problem)),
    };
    if publish.retain {
        // A retained value is the topic's latest state, not news: it goes into the room's
        // state (one event per topic) instead of the timeline.
        let state = RemoteEvent::State {
            event_type: RETAINED_EVENT.to_owned(),
            state_key: topic.to_owned(),
            content: json!({ "topic": topic, "device": device, "text": body, "payload": text }),
        };
        return (state, problem);
    }
    let message = RemoteEvent::Message(RemoteText::text(id, sender, profile, body));
    (message, problem)
}

/// The text of a message: the mapping's template with the payload (parsed JSON, or the text),
/// or the text itself; `Err` says why the template failed on this payload.
fn render(
    mapping: &Mapping,
    topic: &str,
    levels: &[&str],
    text: &str,
    device: &str,
) -> Result<String, String> {
    let Some(template) = &mapping.template else {
        return Ok(text.to_owned());
    };
    let payload =
        serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    let data = json!({
        "payload": payload,
        "text": text,
        "topic": levels,
        "topic_name": topic,
        "device": device,
    });
    match template.try_render(&data) {
        Ok(rendered) if !rendered.trim().is_empty() => Ok(rendered),
        Ok(_) => Ok(text.to_owned()),
        Err(e) => Err(e),
    }
}

impl BridgeFactory for MqttBridge {
    const ID: &'static str = "mqtt";
    type Config = MqttSettings;

    fn example_config() -> &'static str {
        "# mqtt://host[:port], mqtts://host[:port] (TLS: ca_file, client_cert_file,\n\
         # client_key_file), or left out: a broker inside Switchboard on embedded_listen\n\
         # (127.0.0.1:1883, MQTT 3.1.1, loopback only).\n\
         broker: mqtt://127.0.0.1:1883\n\
         invite: [\"@you:example.org\"]\n\
         mappings:\n\
         \x20 - name: sensors\n\
         \x20   topics: [\"sensors/+/temp\"]\n\
         \x20   device_level: 1\n\
         \x20   template: \"{{payload.temperature}} °C in {{topic.[1]}}\"\n\
         \x20   publish_to: commands/sensors\n"
    }

    fn build(settings: MqttSettings, _ctx: &BuildContext<'_>) -> Result<Self, PluginError> {
        Self::from_settings(settings).map_err(PluginError::permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        let section: switchboard_api::config::PluginSection = switchboard_api::config::from_yaml(
            &format!("broker: mqtt://x\nmappings:\n  - {yaml}\n"),
        )
        .expect("yaml");
        settings::check(section.typed("bridges.mqtt").expect("settings"))
            .expect("valid")
            .2
            .into_iter()
            .next()
            .expect("a mapping")
    }

    fn publish(topic: &str, payload: &[u8]) -> Incoming {
        Incoming {
            topic: bytes::Bytes::copy_from_slice(topic.as_bytes()),
            payload: bytes::Bytes::copy_from_slice(payload),
            retain: false,
            dup: false,
            pkid: 1,
            qos: 1,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }
    }

    fn text_of(event: &RemoteEvent) -> (String, String) {
        match event {
            RemoteEvent::Message(text) => (text.sender.to_string(), text.body.clone()),
            other => panic!("not a text: {other:?}"),
        }
    }

    #[test]
    fn json_fields_and_topic_levels_fill_the_template_and_a_level_names_the_device() {
        let m = mapping(
            "{name: sensors, topics: [\"sensors/+/temp\"], direction: in, device_level: 1, \
             template: \"{{payload.temperature}} °C in {{topic.[1]}}\"}",
        );
        let p = publish("sensors/kitchen/temp", br#"{"temperature": 21.5}"#);
        let (event, _) = event_for(&m, "sensors/kitchen/temp", &p, RemoteMessageId::from("1"));
        assert_eq!(
            text_of(&event),
            ("kitchen".into(), "21.5 °C in kitchen".into())
        );
    }

    #[test]
    fn a_user_property_names_the_device_before_the_topic_level() {
        let m = mapping(
            "{name: sensors, topics: [\"sensors/#\"], direction: in, device_level: 1, \
             device_property: device}",
        );
        let mut p = publish("sensors/kitchen/temp", b"21");
        p.user_properties = vec![("device".to_owned(), "oven".to_owned())];
        let (event, _) = event_for(&m, "sensors/kitchen/temp", &p, RemoteMessageId::from("1"));
        assert_eq!(text_of(&event), ("oven".into(), "21".into()));
        p.user_properties.clear();
        let (event, _) = event_for(&m, "sensors/kitchen/temp", &p, RemoteMessageId::from("2"));
        assert_eq!(text_of(&event), ("kitchen".into(), "21".into()));
    }

    #[test]
    fn without_a_template_the_text_is_shown_and_binary_becomes_a_file() {
        let m = mapping("{name: alerts, topics: [\"ci/#\"], direction: in}");
        let p = publish("ci/build", b"build 42 failed");
        let (event, _) = event_for(&m, "ci/build", &p, RemoteMessageId::from("1"));
        assert_eq!(text_of(&event), ("alerts".into(), "build 42 failed".into()));
        let binary = publish("ci/build", &[0xff, 0xfe, 0x00]);
        match event_for(&m, "ci/build", &binary, RemoteMessageId::from("2")).0 {
            RemoteEvent::Media(media) => {
                assert_eq!(media.filename, "build.bin");
                assert_eq!(media.data, vec![0xff, 0xfe, 0x00].into());
            }
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn retained_values_become_state_and_the_last_will_a_notice() {
        let m = mapping(
            "{name: s, topics: [\"s/+\"], direction: in, device_level: 1, offline_payload: offline}",
        );
        let mut retained = publish("s/garage", b"3");
        retained.retain = true;
        match event_for(&m, "s/garage", &retained, RemoteMessageId::from("1")).0 {
            RemoteEvent::State {
                event_type,
                state_key,
                content,
            } => {
                assert_eq!(event_type, RETAINED_EVENT);
                assert_eq!(state_key, "s/garage");
                assert_eq!(content["text"], "3");
            }
            other => panic!("not state: {other:?}"),
        }
        let will = publish("s/porch", b"offline");
        match event_for(&m, "s/porch", &will, RemoteMessageId::from("2")).0 {
            RemoteEvent::Message(text) => {
                assert_eq!(text.kind, TextKind::Notice);
                assert_eq!(text.body, "porch went offline");
            }
            other => panic!("not a notice: {other:?}"),
        }
    }

    #[test]
    fn a_template_naming_a_missing_value_shows_the_text() {
        let m = mapping(
            "{name: a, topics: [a], direction: in, template: \"{{payload.missing}} degrees\"}",
        );
        let p = publish("a", b"plain words");
        let (event, problem) = event_for(&m, "a", &p, RemoteMessageId::from("1"));
        assert_eq!(text_of(&event).1, "plain words");
        assert!(
            problem.is_some_and(|p| p.contains("missing")),
            "the failure is reported"
        );
    }
}
