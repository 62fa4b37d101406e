//! The bench's own MQTT client (rumqttc, MQTT 5, on the same broker as the bridge): in
//! `mqtt-in` it publishes the devices' messages `in <N>` (QoS 1 by default) with a bounded
//! number unacknowledged by the broker, optionally also a bounded number not yet arrived at the
//! homeserver, or at a fixed rate; in `mqtt-out` it receives what the bridge publishes
//! (`out <N>`, user properties `event_id` (event `N`'s id) and `sender`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, Publish};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::homeserver::HsState;
use crate::load::Sent;
use crate::switchboard::Switchboard;

/// How long the broker may take to accept the connection or a subscription.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the broker may take to acknowledge a publish once the window is full.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the publisher waits for an arrival with its end-to-end window full.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The topic the bridge publishes room messages to (the mapping's `publish_to`).
pub(crate) const OUT_TOPIC: &str = "bench/out";

/// The topic device `k` publishes to (matched by the mapping's `bench/+/in`; level 1 names
/// the device, so it speaks as `@_mqtt_dev<k>`).
fn in_topic(k: u64) -> String {
    format!("bench/dev{k}/in")
}

/// How fast `mqtt-in` publishes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// Messages published and not yet arrived at the homeserver, at most (`None`: no limit
    /// beyond the broker window).
    pub(crate) window: Option<u64>,
    /// Publishes per second, at most.
    pub(crate) rate: Option<u64>,
    /// QoS of the publishes (0, 1 or 2); the bridge receives them at this QoS (it subscribes
    /// with 1).
    pub(crate) qos: u8,
}

impl Pace {
    /// The publishes' QoS as rumqttc names it.
    fn qos(self) -> QoS {
        match self.qos {
            0 => QoS::AtMostOnce,
            2 => QoS::ExactlyOnce,
            _ => QoS::AtLeastOnce,
        }
    }
}

/// What the event-loop task shares with the client.
struct Shared {
    state: Arc<HsState>,
    /// Permits for publishes not yet acknowledged by the broker.
    window: Semaphore,
    /// `PUBACK`s received.
    acks: AtomicU64,
    /// When the latest `PUBACK` arrived (`HsState::now_ns` scale).
    last_ack_ns: AtomicU64,
    connected: AtomicBool,
    subacks: AtomicU64,
    /// Senders of the room messages (`mqtt-out`): message `N` is from `@user<N mod users>`.
    users: u64,
    /// Why the connection ended, if it did.
    failure: Mutex<Option<String>>,
    /// Acknowledgements that were not a success (e.g. no subscriber matched), first ones.
    problems: Mutex<Vec<String>>,
}

/// A connected client; its event loop runs in a task until the client is dropped.
pub(crate) struct MqttClient {
    client: AsyncClient,
    shared: Arc<Shared>,
    in_flight: u32,
    task: JoinHandle<()>,
}

impl MqttClient {
    /// Connects to the broker on `port` (clean session) with at most `in_flight` publishes
    /// unacknowledged; `users` is the number of senders of `mqtt-out`.
    pub(crate) async fn connect(
        port: u16,
        state: Arc<HsState>,
        in_flight: u32,
        users: u64,
    ) -> Result<Self> {
        let mut options = MqttOptions::new(
            format!("switchboard-bench-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_max_packet_size(Some(1 << 20))
            // rumqttc keeps a slot per possible packet id (65,535 by default, ~15 MB).
            .set_outgoing_inflight_upper_limit(u16::try_from(in_flight).unwrap_or(u16::MAX));
        let capacity = usize::try_from(in_flight).unwrap_or(100) + 16;
        let (client, events) = AsyncClient::new(options, capacity);
        let shared = Arc::new(Shared {
            state,
            window: Semaphore::new(usize::try_from(in_flight).unwrap_or(100)),
            acks: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            subacks: AtomicU64::new(0),
            users,
            failure: Mutex::new(None),
            problems: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(drive(events, Arc::clone(&shared)));
        let connection = Self {
            client,
            shared,
            in_flight,
            task,
        };
        connection
            .wait_for("the connection", |s| s.connected.load(Ordering::Acquire))
            .await?;
        Ok(connection)
    }

    /// Waits until `done` holds, at most [`CONNECT_TIMEOUT`].
    async fn wait_for(&self, what: &str, done: impl Fn(&Shared) -> bool) -> Result<()> {
        let started = Instant::now();
        while !done(&self.shared) {
            self.check()?;
            if started.elapsed() > CONNECT_TIMEOUT {
                bail!(
                    "the broker did not acknowledge {what} within {} s",
                    CONNECT_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Fails if the connection ended.
    fn check(&self) -> Result<()> {
        match self.shared.failure.lock().ok().and_then(|f| f.clone()) {
            Some(why) => Err(anyhow!("the bench's MQTT connection failed: {why}")),
            None => Ok(()),
        }
    }

    /// Subscribes to [`OUT_TOPIC`] at QoS 1 and waits for the broker's acknowledgement.
    pub(crate) async fn subscribe_out(&self) -> Result<()> {
        let before = self.shared.subacks.load(Ordering::Acquire);
        self.client
            .subscribe(OUT_TOPIC, QoS::AtLeastOnce)
            .await
            .context("cannot subscribe")?;
        self.wait_for("the subscription", |s| {
            s.subacks.load(Ordering::Acquire) > before
        })
        .await
    }

    /// Publishes messages `from..to` (`in <N>` to device `N mod devices`, at `pace.qos`), each
    /// once a permit of the broker window is free and, with `pace.window`, once fewer than that
    /// many published messages have not arrived at the homeserver yet; at most `pace.rate` a
    /// second if given. Returns when the broker has acknowledged them all (QoS 0: when they
    /// are written).
    pub(crate) async fn publish(
        &self,
        from: u64,
        to: u64,
        devices: u64,
        pace: Pace,
        sb: &mut Switchboard,
    ) -> Result<Sent> {
        let started = tokio::time::Instant::now();
        let acks_before = self.shared.acks.load(Ordering::Acquire);
        let state = &self.shared.state;
        let arrived_before = state.arrived();
        let mut first_sent_ns = 0;
        for n in from..to {
            if let Some(rate) = pace.rate {
                let due = started + Duration::from_secs_f64((n - from) as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            if let Some(window) = pace.window {
                self.wait_window(n - from, window, arrived_before, sb)
                    .await?;
            }
            tokio::time::timeout(ACK_TIMEOUT, self.shared.window.acquire())
                .await
                .map_err(|_| anyhow!("the broker acknowledged nothing for {ACK_TIMEOUT:?}"))?
                .map_err(|_| {
                    self.check()
                        .err()
                        .unwrap_or_else(|| anyhow!("window closed"))
                })?
                .forget();
            let now = state.now_ns();
            state.mark_sent(n..n + 1, now);
            if n == from {
                first_sent_ns = now;
            }
            self.client
                .publish(
                    in_topic(n % devices.max(1)),
                    pace.qos(),
                    false,
                    format!("in {n}"),
                )
                .await
                .with_context(|| format!("cannot publish message {n}"))?;
            if pace.qos == 0 {
                // Nothing will be acknowledged: the permit is free again at once.
                self.shared.acks.fetch_add(1, Ordering::AcqRel);
                self.shared
                    .last_ack_ns
                    .store(state.now_ns(), Ordering::Release);
                self.shared.window.add_permits(1);
            }
            if n % 1000 == 0 {
                sb.check_alive()?;
            }
        }
        // All acknowledged: the whole window is free again (given back when dropped).
        let _all =
            tokio::time::timeout(ACK_TIMEOUT, self.shared.window.acquire_many(self.in_flight))
                .await
                .map_err(|_| anyhow!("the broker did not acknowledge every publish"))?
                .map_err(|_| {
                    self.check()
                        .err()
                        .unwrap_or_else(|| anyhow!("window closed"))
                })?;
        Ok(Sent {
            txns: self.shared.acks.load(Ordering::Acquire) - acks_before,
            first_sent_ns,
            last_ack_ns: self.shared.last_ack_ns.load(Ordering::Acquire),
        })
    }

    /// Waits until fewer than `window` of the `published` messages of this phase have not
    /// arrived at the homeserver; fails when nothing arrives for [`STALL_TIMEOUT`].
    async fn wait_window(
        &self,
        published: u64,
        window: u64,
        arrived_before: u64,
        sb: &mut Switchboard,
    ) -> Result<()> {
        let state = &self.shared.state;
        loop {
            let arrived = state.arrived().saturating_sub(arrived_before);
            if published.saturating_sub(arrived) < window {
                return Ok(());
            }
            if tokio::time::timeout(STALL_TIMEOUT, state.next_arrival())
                .await
                .is_err()
            {
                sb.check_alive()?;
                bail!(
                    "no message arrived at the homeserver for {} s while {} were on their way: \
                     the bridge stalled (see \"Known problem\" in bench/README.md)",
                    STALL_TIMEOUT.as_secs(),
                    published.saturating_sub(arrived)
                );
            }
        }
    }

    /// What went wrong on the connection, in words (failure, acknowledgements that were not
    /// a success).
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = self
            .shared
            .problems
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        if let Err(e) = self.check() {
            problems.push(format!("{e:#}"));
        }
        problems
    }
}

impl Drop for MqttClient {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
        self.task.abort();
    }
}

/// The event loop: counts acknowledgements (freeing the window), accounts received messages,
/// and records why the connection ended.
async fn drive(mut events: EventLoop, shared: Arc<Shared>) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                shared.connected.store(true, Ordering::Release);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                shared.subacks.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if ack.reason != PubAckReason::Success {
                    shared.problem(format!("the broker acknowledged a publish with {ack:?}"));
                }
                shared
                    .last_ack_ns
                    .store(shared.state.now_ns(), Ordering::Release);
                shared.acks.fetch_add(1, Ordering::AcqRel);
                shared.window.add_permits(1);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => shared.received(&publish),
            Ok(_) => {}
            Err(e) => {
                if let Ok(mut failure) = shared.failure.lock() {
                    *failure = Some(e.to_string());
                }
                shared.window.close();
                return;
            }
        }
    }
}

impl Shared {
    /// Keeps `what` for the report (the first few only).
    fn problem(&self, what: String) {
        if let Ok(mut problems) = self.problems.lock()
            && problems.len() < 5
        {
            problems.push(what);
        }
    }

    /// Accounts a message the bridge published (`mqtt-out`).
    fn received(&self, publish: &Publish) {
        let now_ns = self.state.now_ns();
        let property = |name: &str| {
            publish
                .properties
                .as_ref()
                .and_then(|p| p.user_properties.iter().find(|(k, _)| k == name))
                .map(|(_, v)| v.as_str())
        };
        let body = std::str::from_utf8(&publish.payload).unwrap_or_default();
        let topic = String::from_utf8_lossy(&publish.topic);
        let number = property("event_id").and_then(crate::ids::event_number);
        let (Some(n), OUT_TOPIC) = (number, topic.as_ref()) else {
            self.state.problem(
                &self.state.counters.bad_replies,
                format!(
                    "MQTT message on {topic} with event_id {:?}: {body:?}",
                    property("event_id")
                ),
            );
            return;
        };
        if !self
            .state
            .record_arrival(n, now_ns, &format!("MQTT message out {n}"))
        {
            return;
        }
        let sender = format!(
            "@user{}:{}",
            n % self.users.max(1),
            crate::switchboard::SERVER_NAME
        );
        if body != format!("out {n}") || property("sender") != Some(sender.as_str()) {
            self.state.problem(
                &self.state.counters.wrong_bodies,
                format!(
                    "MQTT message for event {n} has body {body:?} and sender {:?}, expected {sender}",
                    property("sender")
                ),
            );
        }
    }
}
