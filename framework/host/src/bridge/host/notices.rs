//! Outage and gap notices: when a bridge's connection to its network (or a login's) stays down
//! longer than `outage_notices.after_secs`, its rooms get one short notice from the bridge bot,
//! and one when it is back — never more than one of each per room and outage; and when
//! Switchboard itself had been down, each portal whose messages from then are delivered late
//! is told once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ruma::OwnedRoomId;
use ruma::events::room::message::RoomMessageEventContent;
use switchboard_api::event::RoomEvent;

use super::HostedBridge;
use crate::bridge::status::OutageSubject;
use crate::client::{Identity, derive_txn_id};
use crate::options::Downtime;

/// When the host tells rooms about outages and downtime.
#[derive(Debug, Default)]
pub(crate) struct NoticePolicy {
    /// How long a connection stays down before its rooms are told (`None`: never).
    pub(crate) outage_after: Option<Duration>,
    /// Switchboard's last downtime, if its rooms are to be told.
    pub(crate) downtime: Option<Downtime>,
    /// Rooms told about that downtime already.
    pub(crate) downtime_told: Mutex<HashSet<OwnedRoomId>>,
}

/// `HH:MM UTC` of a time in ms since the epoch.
fn clock_time(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

impl HostedBridge {
    /// Watches the bridge's connections until shutdown: one that has been down for `after`
    /// gets its notice, and its "back" notice when it reconnects.
    pub(super) async fn watch_outages(self: Arc<Self>, after: Duration) {
        let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let shutdown = self.ctx.shutdown().clone();
        let mut announced: HashMap<OutageSubject, i64> = HashMap::new();
        loop {
            let now = self.ctx.clock().now_ms();
            let outages = self.status.outages();
            // Announced, and no longer down since that time: it came back.
            let back: Vec<(OutageSubject, i64)> = announced
                .iter()
                .filter(|(subject, since)| outages.get(*subject) != Some(since))
                .map(|(subject, since)| (subject.clone(), *since))
                .collect();
            for (subject, since) in back {
                announced.remove(&subject);
                self.announce(&subject, since, Some(now)).await;
            }
            let mut next_due: Option<i64> = None;
            for (subject, since) in outages {
                if announced.contains_key(&subject) {
                    continue;
                }
                let due = since.saturating_add(after_ms);
                if now >= due {
                    self.announce(&subject, since, None).await;
                    announced.insert(subject, since);
                } else {
                    next_due = Some(next_due.map_or(due, |n| n.min(due)));
                }
            }
            let pause = next_due.map_or(Duration::from_hours(1), |due| {
                Duration::from_millis(u64::try_from(due - now).unwrap_or(0))
            });
            tokio::select! {
                () = self.status.outages_changed() => {}
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Tells the rooms of `subject` that it is down since `since`, or (`back` set) that it
    /// is back.
    async fn announce(&self, subject: &OutageSubject, since: i64, back: Option<i64>) {
        let network = &self.matrix.info().displayname;
        let (rooms, text) = match subject {
            None => {
                let text = match back {
                    None => format!(
                        "⚠️ {network} is unreachable since {} — messages sent here will be \
                         delivered when it returns.",
                        clock_time(since)
                    ),
                    Some(until) => format!(
                        "✅ {network} is reachable again (it was not from {} to {}); the \
                         messages that waited are being delivered.",
                        clock_time(since),
                        clock_time(until)
                    ),
                };
                (self.matrix.portal_rooms.rooms_of(self.id()), text)
            }
            Some(login) => {
                let Ok(Some(record)) = self.store.login(self.id(), login.as_str()).await else {
                    return;
                };
                let text = match back {
                    None => format!(
                        "⚠️ Your {network} login {} is disconnected since {} — your messages \
                         will be delivered when it reconnects.",
                        record.remote_name,
                        clock_time(since)
                    ),
                    Some(until) => format!(
                        "✅ Your {network} login {} is connected again (it was not from {} to \
                         {}).",
                        record.remote_name,
                        clock_time(since),
                        clock_time(until)
                    ),
                };
                let rooms = self
                    .store
                    .management_rooms()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, user)| *user == record.user_id)
                    .filter_map(|(room, _)| OwnedRoomId::try_from(room).ok())
                    .collect();
                (rooms, text)
            }
        };
        let subject_key = subject.as_ref().map_or("", |l| l.as_str());
        let kind = if back.is_some() { "back" } else { "down" };
        tracing::info!(bridge = %self.id(), login = subject_key, rooms = rooms.len(), kind, "telling rooms about an outage");
        for room in rooms {
            let txn_id = derive_txn_id(&[
                self.id(),
                "outage",
                subject_key,
                &since.to_string(),
                kind,
                room.as_str(),
            ]);
            self.notice(&room, txn_id, &text).await;
        }
    }

    /// A live event of a portal sent while Switchboard was down: its room is told once that
    /// such messages arrive late.
    pub(super) async fn tell_downtime_once(&self, event: &RoomEvent) {
        let Some(downtime) = self.notices.downtime else {
            return;
        };
        let sent_at = i64::from(event.origin_server_ts.get());
        if !downtime.contains(sent_at) {
            return;
        }
        let first = self
            .notices
            .downtime_told
            .lock()
            .is_ok_and(|mut told| told.insert(event.room_id.clone()));
        if !first {
            return;
        }
        let text = format!(
            "ℹ️ Switchboard was offline from {} to {}; messages sent here meanwhile are being \
             delivered to {} now, late.",
            clock_time(downtime.from_ms),
            clock_time(downtime.to_ms),
            self.matrix.info().displayname
        );
        let txn_id = derive_txn_id(&[
            self.id(),
            "downtime",
            &downtime.from_ms.to_string(),
            event.room_id.as_str(),
        ]);
        self.notice(&event.room_id, txn_id, &text).await;
    }

    /// Sends a notice from the bridge bot (a failure is logged: a notice is not worth a retry).
    async fn notice(&self, room: &ruma::RoomId, txn_id: ruma::OwnedTransactionId, text: &str) {
        let content = RoomMessageEventContent::notice_plain(text);
        if let Err(e) = self
            .client
            .send_message(room, txn_id, &content, Identity::bot(), None)
            .await
        {
            tracing::warn!(bridge = %self.id(), %room, error = %e, "cannot send a notice");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clock_time;

    #[test]
    fn times_are_shown_as_utc_hours_and_minutes() {
        assert_eq!(clock_time(0), "00:00 UTC");
        assert_eq!(clock_time(1_700_000_000_000), "22:13 UTC");
        assert_eq!(clock_time((10 * 60 + 42) * 60_000 + 59_999), "10:42 UTC");
    }
}
