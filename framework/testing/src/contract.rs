//! The contract tests every bridge must pass, run against a real homeserver and the bridge's
//! real network or the in-process fake one ([`FakeNetwork`](crate::FakeNetwork)).
//!
//! A bridge's test starts Switchboard with the bridge, a homeserver, a Matrix user in a portal
//! and the network; it describes how to drive the network ([`ContractSubject`]) and how the
//! user acts ([`MatrixTester`]); then [`Contract::run_all`] checks, in that portal:
//!
//! - Matrix messages reach the network once each, in the order sent;
//! - a message the network sends twice (same id) appears once, from a puppet;
//! - what the bridge sends to Matrix is never bridged back (loop guard);
//! - an event the homeserver delivers twice, in two transactions, reaches the network once;
//! - messages sent while the network is down reach it, in order, once it is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A real Matrix user in the portal, as the contract tests drive them.
#[async_trait::async_trait]
pub trait MatrixTester: Send + Sync {
    /// The user's id.
    fn user_id(&self) -> String;
    /// Sends a text message to `room`; returns its event id.
    async fn send_text(&self, room: &str, body: &str) -> Result<String, String>;
    /// The room's events, oldest first.
    async fn timeline(&self, room: &str) -> Result<Vec<Value>, String>;
}

/// The bridge's network, as the contract tests drive and watch it.
#[async_trait::async_trait]
pub trait ContractSubject: Send + Sync {
    /// Makes the network send the message `id` with `text` into the portal's chat. Called
    /// twice with the same id, it is the network delivering the same message twice.
    async fn remote_send(&self, id: &str, text: &str) -> Result<(), String>;
    /// The texts of every message the network received from Matrix, in the order received.
    async fn received(&self) -> Result<Vec<String>, String>;
    /// Takes the network down (`false`) or brings it back (`true`).
    async fn set_reachable(&self, up: bool) -> Result<(), String>;
}

/// Pushes a transaction to Switchboard as the homeserver would.
#[async_trait::async_trait]
pub trait TransactionPusher: Send + Sync {
    /// `PUT /_matrix/app/v1/transactions/{txn_id}` with `body`; the HTTP status.
    async fn push(&self, txn_id: &str, body: &Value) -> Result<u16, String>;
}

/// Builds appservice transactions (`{"events": [...]}`) of room events with fresh ids.
#[derive(Debug, Default)]
pub struct TransactionBuilder {
    events: Vec<Value>,
}

impl TransactionBuilder {
    /// An empty transaction.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh, valid event id.
    #[must_use]
    pub fn event_id() -> String {
        format!("$testkit{:032x}", rand::random::<u128>())
    }

    /// Adds a room event; returns its event id.
    pub fn event(&mut self, room: &str, sender: &str, event_type: &str, content: &Value) -> String {
        let event_id = Self::event_id();
        let origin_server_ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.events.push(json!({
            "event_id": event_id, "room_id": room, "sender": sender, "type": event_type,
            "origin_server_ts": origin_server_ts, "content": content,
        }));
        event_id
    }

    /// Adds a text message; returns its event id.
    pub fn text(&mut self, room: &str, sender: &str, body: &str) -> String {
        self.event(
            room,
            sender,
            "m.room.message",
            &json!({ "msgtype": "m.text", "body": body }),
        )
    }

    /// The transaction body.
    #[must_use]
    pub fn build(&self) -> Value {
        json!({ "events": self.events })
    }
}

/// The contract tests, for one portal.
pub struct Contract<'a> {
    /// A user in the portal.
    pub user: &'a dyn MatrixTester,
    /// The portal room.
    pub room: String,
    /// The network.
    pub subject: &'a dyn ContractSubject,
    /// Pushes transactions as the homeserver.
    pub homeserver: &'a dyn TransactionPusher,
    /// How long to wait for something that should happen.
    pub timeout: Duration,
}

/// Waits until `check` gives `Some`, or fails with `what` after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A marker unique to one run, so contracts never see each other's messages.
fn unique(label: &str) -> String {
    format!("{label}-{:08x}", rand::random::<u32>())
}

impl Contract<'_> {
    /// How many times the network received `text`.
    async fn received_count(&self, text: &str) -> Result<usize, String> {
        Ok(self
            .subject
            .received()
            .await?
            .iter()
            .filter(|t| *t == text)
            .count())
    }

    /// Runs every contract; the first failure names the contract and what went wrong.
    pub async fn run_all(&self) -> Result<(), String> {
        let named = |name: &'static str| move |e: String| format!("contract `{name}`: {e}");
        self.matrix_messages_reach_the_network_once_in_order()
            .await
            .map_err(named("matrix messages reach the network once, in order"))?;
        self.remote_messages_appear_once_even_when_resent()
            .await
            .map_err(named("remote messages appear once"))?;
        self.nothing_is_bridged_back()
            .await
            .map_err(named("loop guard"))?;
        self.a_redelivered_event_reaches_the_network_once()
            .await
            .map_err(named("redelivered events"))?;
        self.messages_wait_for_an_outage_and_arrive_in_order()
            .await
            .map_err(named("outbox after an outage"))?;
        Ok(())
    }

    /// Waits until the network has received each of `texts`, then checks once each, in the
    /// order given.
    async fn all_received_once(&self, texts: &[String]) -> Result<(), String> {
        for text in texts {
            eventually(
                self.timeout,
                &format!("the network to receive {text:?}"),
                || async { Ok((self.received_count(text).await? > 0).then_some(())) },
            )
            .await?;
        }
        let received = self.subject.received().await?;
        let mut positions = Vec::with_capacity(texts.len());
        for text in texts {
            let count = received.iter().filter(|t| *t == text).count();
            if count != 1 {
                return Err(format!("the network received {text:?} {count} times"));
            }
            positions.extend(received.iter().position(|t| t == text));
        }
        if positions.is_sorted() {
            Ok(())
        } else {
            Err(format!(
                "the network received them out of order: {received:?}"
            ))
        }
    }

    /// Waits until a message with `body` is in the room; returns its sender.
    async fn wait_for_body(&self, body: &str) -> Result<String, String> {
        eventually(self.timeout, &format!("{body:?} in Matrix"), || async {
            Ok(self
                .bodies()
                .await?
                .into_iter()
                .find(|(_, b)| b == body)
                .map(|(sender, _)| sender))
        })
        .await
    }

    /// The bodies of the room's messages, oldest first.
    async fn bodies(&self) -> Result<Vec<(String, String)>, String> {
        Ok(self
            .user
            .timeline(&self.room)
            .await?
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| {
                Some((
                    e["sender"].as_str()?.to_owned(),
                    e["content"]["body"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Five messages sent quickly reach the network once each; their Matrix order is kept.
    pub async fn matrix_messages_reach_the_network_once_in_order(&self) -> Result<(), String> {
        let texts: Vec<String> = (1..=5).map(|n| unique(&format!("order{n}"))).collect();
        for text in &texts {
            self.user.send_text(&self.room, text).await?;
        }
        self.all_received_once(&texts).await
    }

    /// A message the network delivers twice appears once in Matrix, from a puppet.
    pub async fn remote_messages_appear_once_even_when_resent(&self) -> Result<(), String> {
        let id = unique("remote-id");
        let text = unique("from-the-network");
        self.subject.remote_send(&id, &text).await?;
        self.subject.remote_send(&id, &text).await?;
        let sender = self.wait_for_body(&text).await?;
        if sender == self.user.user_id() {
            return Err("the remote message appeared as the test user".to_owned());
        }
        // A marker sent after it arrives after it: by then a second copy would show.
        let marker = unique("after-resend");
        self.subject.remote_send(&unique("marker"), &marker).await?;
        self.wait_for_body(&marker).await?;
        let copies = self
            .bodies()
            .await?
            .iter()
            .filter(|(_, b)| b == &text)
            .count();
        if copies == 1 {
            Ok(())
        } else {
            Err(format!("the resent message appears {copies} times"))
        }
    }

    /// What the bridge sent to Matrix (a remote message) is not sent back to the network.
    pub async fn nothing_is_bridged_back(&self) -> Result<(), String> {
        let text = unique("not-back");
        self.subject.remote_send(&unique("id"), &text).await?;
        self.wait_for_body(&text).await?;
        // A Matrix message sent after it reaches the network after it would have.
        let marker = unique("loop-marker");
        self.user.send_text(&self.room, &marker).await?;
        self.all_received_once(std::slice::from_ref(&marker))
            .await?;
        match self.received_count(&text).await? {
            0 => Ok(()),
            n => Err(format!("the network got its own message back {n} times")),
        }
    }

    /// An event the homeserver delivers again in another transaction reaches the network once.
    pub async fn a_redelivered_event_reaches_the_network_once(&self) -> Result<(), String> {
        let text = unique("redelivered");
        let mut transaction = TransactionBuilder::new();
        transaction.text(&self.room, &self.user.user_id(), &text);
        let body = transaction.build();
        for attempt in 0..2 {
            let status = self
                .homeserver
                .push(&unique(&format!("txn{attempt}")), &body)
                .await?;
            if status != 200 {
                return Err(format!("the transaction was answered {status}"));
            }
        }
        let marker = unique("redelivery-marker");
        self.user.send_text(&self.room, &marker).await?;
        self.all_received_once(&[text, marker]).await
    }

    /// Messages sent while the network is down reach it once it is back, in order, once each.
    pub async fn messages_wait_for_an_outage_and_arrive_in_order(&self) -> Result<(), String> {
        self.subject.set_reachable(false).await?;
        let texts: Vec<String> = (1..=3).map(|n| unique(&format!("outage{n}"))).collect();
        for text in &texts {
            self.user.send_text(&self.room, text).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for text in &texts {
            if self.received_count(text).await? > 0 {
                return Err(format!("{text:?} reached a network that is down"));
            }
        }
        self.subject.set_reachable(true).await?;
        self.all_received_once(&texts).await
    }
}
