//! The appservice side of the load: pushes transactions of `m.room.message` events to
//! Switchboard one at a time (each after the previous one was acknowledged), over one
//! keep-alive connection, as a homeserver does.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::homeserver::HsState;
use crate::switchboard::SERVER_NAME;
use crate::switchboard::Switchboard;

/// Longest the sending of one phase may take (a bound, far above any plausible run).
const SEND_TIMEOUT: Duration = Duration::from_mins(15);
/// Timeout of one transaction request (above Switchboard's 30 s back-pressure wait).
const TXN_TIMEOUT: Duration = Duration::from_mins(1);
/// Consecutive connection failures after which Switchboard is taken for dead.
const MAX_CONNECTION_FAILURES: u32 = 5;

/// What sending a range of events (or publishing a range of MQTT messages) took.
pub(crate) struct Sent {
    /// Transactions acknowledged (MQTT: publishes acknowledged by the broker).
    pub(crate) txns: u64,
    /// When the first was sent (`HsState::now_ns` scale).
    pub(crate) first_sent_ns: u64,
    /// When the last acknowledgement arrived.
    pub(crate) last_ack_ns: u64,
}

/// The load generator: pushes transactions one at a time, like a homeserver.
pub(crate) struct Load {
    client: reqwest::Client,
    url: String,
    hs_token: String,
    state: Arc<HsState>,
    /// The rooms events go to (event `N` to room `N mod len`).
    rooms: Vec<String>,
    /// Event `N` is sent by `@user<N mod users>`.
    users: u64,
    /// The body of event `N` is `<verb> <N>`.
    verb: &'static str,
    batch: u64,
    /// Events per second, at most (each transaction waits for its first event's turn).
    rate: Option<u64>,
    next_txn: u64,
    /// Transactions not acknowledged at the first attempt.
    pub(crate) retries: u64,
    /// What went wrong (the first few retries).
    pub(crate) problems: Vec<String>,
}

impl Load {
    /// A load generator for Switchboard's appservice API at `as_url`: `batch` events per
    /// transaction, event `N` into `rooms[N mod len]` from `@user<N mod users>` saying
    /// `<verb> <N>`.
    pub(crate) fn new(
        as_url: &str,
        hs_token: &str,
        state: Arc<HsState>,
        rooms: Vec<String>,
        users: u64,
        verb: &'static str,
        batch: u64,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(TXN_TIMEOUT)
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(Self {
            client,
            url: format!("{as_url}/_matrix/app/v1/transactions/"),
            hs_token: hs_token.to_owned(),
            state,
            rooms,
            users: users.max(1),
            verb,
            batch: batch.max(1),
            rate: None,
            next_txn: 0,
            retries: 0,
            problems: Vec::new(),
        })
    }

    /// Sends at most `rate` events a second (default: each transaction as soon as the previous
    /// one was acknowledged).
    pub(crate) fn with_rate(mut self, rate: Option<u64>) -> Self {
        self.rate = rate;
        self
    }

    /// The body of a transaction carrying events `from..to`.
    fn transaction(&self, from: u64, to: u64) -> String {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut body = String::with_capacity(usize::try_from(to - from).unwrap_or(0) * 200 + 16);
        body.push_str("{\"events\":[");
        let rooms = self.rooms.len() as u64;
        for n in from..to {
            let room = usize::try_from(n % rooms.max(1))
                .ok()
                .and_then(|i| self.rooms.get(i))
                .map_or("", String::as_str);
            let k = n % self.users;
            let verb = self.verb;
            if n > from {
                body.push(',');
            }
            let _ = write!(
                body,
                "{{\"type\":\"m.room.message\",\"room_id\":\"{room}\",\"event_id\":\"{id}\",\
                 \"sender\":\"@user{k}:{SERVER_NAME}\",\"origin_server_ts\":{ts},\
                 \"content\":{{\"msgtype\":\"m.text\",\"body\":\"{verb} {n}\"}}}}",
                id = crate::ids::event_id(n)
            );
        }
        body.push_str("]}");
        body
    }

    /// Sends events `from..to` in transactions of `batch`, each after the previous one was
    /// acknowledged (and, with a rate, not before its first event's turn).
    pub(crate) async fn send(&mut self, from: u64, to: u64, sb: &mut Switchboard) -> Result<Sent> {
        let deadline = Instant::now() + SEND_TIMEOUT;
        let mut sent = Sent {
            txns: 0,
            first_sent_ns: 0,
            last_ack_ns: 0,
        };
        let mut n = from;
        let started = tokio::time::Instant::now();
        while n < to {
            if let Some(rate) = self.rate {
                let due = started + Duration::from_secs_f64((n - from) as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            let end = (n + self.batch).min(to);
            let body = self.transaction(n, end);
            let txn_id = format!("bench{}", self.next_txn);
            self.next_txn += 1;
            let url = format!("{}{txn_id}", self.url);
            let now = self.state.now_ns();
            self.state.mark_sent(n..end, now);
            if sent.txns == 0 {
                sent.first_sent_ns = now;
            }
            let mut connection_failures = 0;
            loop {
                if Instant::now() > deadline {
                    bail!("sending took longer than {} s", SEND_TIMEOUT.as_secs());
                }
                let result = self
                    .client
                    .put(&url)
                    .bearer_auth(&self.hs_token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => {
                        // Read the body so that the connection is reused.
                        let _ = r.bytes().await;
                        break;
                    }
                    Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        self.retry(format!("transaction {txn_id} answered {status}: {text}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        bail!("Switchboard refused transaction {txn_id}: {status} {text}");
                    }
                    Err(e) => {
                        sb.check_alive()?;
                        connection_failures += 1;
                        if connection_failures >= MAX_CONNECTION_FAILURES {
                            return Err(e).context(format!("cannot send transaction {txn_id}"));
                        }
                        self.retry(format!("transaction {txn_id} failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            sent.last_ack_ns = self.state.now_ns();
            sent.txns += 1;
            n = end;
        }
        Ok(sent)
    }

    fn retry(&mut self, what: String) {
        self.retries += 1;
        if self.problems.len() < 5 {
            self.problems.push(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::homeserver::{HomeserverSetup, Sends};

    /// A fake homeserver's state with no run behind it, expecting `sends`.
    fn empty_state(sends: Sends) -> HsState {
        HsState::new(HomeserverSetup {
            as_token: String::new(),
            hs_token: String::new(),
            appservice_id: String::new(),
            bot_user_id: String::new(),
            as_url: String::new(),
            total_events: 0,
            warmup: 0,
            sends,
        })
        .expect("state")
    }

    #[test]
    fn transactions_spread_events_over_rooms() {
        let state = empty_state(Sends::EchoReplies);
        let rooms = vec!["!r0:bench.local".to_owned(), "!r1:bench.local".to_owned()];
        let load = Load::new("", "", Arc::new(state), rooms, 2, "ping", 3).expect("load");
        let body: serde_json::Value =
            serde_json::from_str(&load.transaction(4, 7)).expect("valid JSON");
        let events = body["events"].as_array().expect("events");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["room_id"], "!r0:bench.local");
        assert_eq!(events[1]["event_id"], crate::ids::event_id(5).as_str());
        assert_eq!(events[1]["sender"], "@user1:bench.local");
        assert_eq!(events[2]["content"]["body"], "ping 6");
    }

    #[test]
    fn one_room_many_senders() {
        let state = empty_state(Sends::Nothing);
        let rooms = vec!["!room0:bench.local".to_owned()];
        let load = Load::new("", "", Arc::new(state), rooms, 3, "out", 50).expect("load");
        let body: serde_json::Value =
            serde_json::from_str(&load.transaction(4, 6)).expect("valid JSON");
        let events = body["events"].as_array().expect("events");
        assert_eq!(events[0]["room_id"], "!room0:bench.local");
        assert_eq!(events[1]["room_id"], "!room0:bench.local");
        assert_eq!(events[0]["sender"], "@user1:bench.local");
        assert_eq!(events[1]["sender"], "@user2:bench.local");
        assert_eq!(events[1]["content"]["body"], "out 5");
    }
}
