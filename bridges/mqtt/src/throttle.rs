//! Slowing down chatty topics: at most one message per topic and mapping in each interval;
//! those that come sooner are dropped, or the newest of them is held and shown when the
//! interval ends (coalescing).

use std::collections::HashMap;
use std::time::Duration;

use switchboard_api::serde::Deserialize;
use tokio::time::Instant;

/// A mapping's `throttle` setting.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(crate = "switchboard_api::serde", deny_unknown_fields)]
pub struct Throttle {
    /// At most one message per topic is shown in each interval of this many seconds.
    pub interval_secs: u64,
    /// What happens to the messages that come sooner.
    #[serde(default)]
    pub too_soon: TooSoon,
}

/// What happens to a message of a throttled topic that comes before its interval ended.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(crate = "switchboard_api::serde", rename_all = "lowercase")]
pub enum TooSoon {
    /// The newest of them is shown when the interval ends; the others are dropped.
    #[default]
    Latest,
    /// They are dropped (and counted as skipped).
    Drop,
}

/// What to do with a message now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// Show it now.
    Show(T),
    /// It is held until the interval ends; the message it replaced, if any, is dropped.
    Held {
        /// The message held before, now replaced.
        replaced: Option<T>,
    },
    /// Drop it.
    Drop(T),
}

/// Which mapping and topic a throttle entry is for.
type Key = (String, String);

/// The throttles of every mapping and topic.
#[derive(Debug)]
pub struct Throttles<T> {
    /// Until when each mapping and topic is quiet (the end of its current interval).
    quiet_until: HashMap<Key, Instant>,
    /// The message held for each mapping and topic, and when it is due.
    held: HashMap<Key, (Instant, T)>,
}

impl<T> Default for Throttles<T> {
    fn default() -> Self {
        Self {
            quiet_until: HashMap::new(),
            held: HashMap::new(),
        }
    }
}

/// Above this many remembered topics, those whose interval has ended are forgotten.
const PRUNE_ABOVE: usize = 4096;

impl<T> Throttles<T> {
    /// Decides what happens to `message` on `topic` in `mapping` at `now`.
    pub fn admit(
        &mut self,
        mapping: &str,
        throttle: Throttle,
        topic: &str,
        now: Instant,
        message: T,
    ) -> Admission<T> {
        let key = (mapping.to_owned(), topic.to_owned());
        if let Some((_, held)) = self.held.get_mut(&key) {
            // A message is already waiting for the interval's end: the newer one takes its place.
            let replaced = std::mem::replace(held, message);
            return Admission::Held {
                replaced: Some(replaced),
            };
        }
        match self.quiet_until.get(&key) {
            Some(&until) if now < until => match throttle.too_soon {
                TooSoon::Latest => {
                    self.held.insert(key, (until, message));
                    Admission::Held { replaced: None }
                }
                TooSoon::Drop => Admission::Drop(message),
            },
            _ => {
                if self.quiet_until.len() >= PRUNE_ABOVE {
                    self.quiet_until.retain(|_, until| *until > now);
                }
                self.quiet_until
                    .insert(key, now + Duration::from_secs(throttle.interval_secs));
                Admission::Show(message)
            }
        }
    }

    /// When the next held message is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|(due, _)| *due).min()
    }

    /// Takes the held messages due at `now` (mapping, topic, message); each starts a new
    /// interval of `interval` for its topic, as if shown now.
    pub fn take_due(
        &mut self,
        now: Instant,
        interval: impl Fn(&str) -> Duration,
    ) -> Vec<(String, String, T)> {
        let due: Vec<Key> = self
            .held
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        due.into_iter()
            .filter_map(|key| {
                let (_, message) = self.held.remove(&key)?;
                self.quiet_until.insert(key.clone(), now + interval(&key.0));
                Some((key.0, key.1, message))
            })
            .collect()
    }

    /// Holds `message` again until `at` (it could not be shown), unless a newer one is held.
    pub fn hold_again(&mut self, mapping: String, topic: String, at: Instant, message: T) {
        self.held.entry((mapping, topic)).or_insert((at, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LATEST: Throttle = Throttle {
        interval_secs: 10,
        too_soon: TooSoon::Latest,
    };

    #[test]
    fn the_first_message_shows_and_the_newest_of_the_interval_comes_at_its_end() {
        let mut throttles = Throttles::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            throttles.admit("m", LATEST, "t", at(0), 1),
            Admission::Show(1)
        );
        assert_eq!(
            throttles.admit("m", LATEST, "t", at(1), 2),
            Admission::Held { replaced: None }
        );
        assert_eq!(
            throttles.admit("m", LATEST, "t", at(2), 3),
            Admission::Held { replaced: Some(2) }
        );
        // Other topics and mappings have their own intervals.
        assert_eq!(
            throttles.admit("m", LATEST, "u", at(2), 4),
            Admission::Show(4)
        );
        assert_eq!(
            throttles.admit("n", LATEST, "t", at(2), 5),
            Admission::Show(5)
        );
        assert_eq!(throttles.next_due(), Some(at(10)));
        let interval = |_: &str| Duration::from_secs(10);
        assert!(throttles.take_due(at(9), interval).is_empty());
        assert_eq!(
            throttles.take_due(at(10), interval),
            vec![("m".to_owned(), "t".to_owned(), 3)]
        );
        assert_eq!(throttles.next_due(), None);
        // The held message started a new interval.
        assert_eq!(
            throttles.admit("m", LATEST, "t", at(15), 6),
            Admission::Held { replaced: None }
        );
        assert_eq!(throttles.next_due(), Some(at(20)));
        assert_eq!(
            throttles.admit("m", LATEST, "u", at(12), 7),
            Admission::Show(7)
        );
    }

    #[test]
    fn in_drop_mode_messages_that_come_too_soon_are_dropped() {
        let drop = Throttle {
            interval_secs: 5,
            too_soon: TooSoon::Drop,
        };
        let mut throttles = Throttles::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            throttles.admit("m", drop, "t", at(0), 1),
            Admission::Show(1)
        );
        assert_eq!(
            throttles.admit("m", drop, "t", at(4), 2),
            Admission::Drop(2)
        );
        assert_eq!(throttles.next_due(), None);
        assert_eq!(
            throttles.admit("m", drop, "t", at(5), 3),
            Admission::Show(3)
        );
    }

    #[test]
    fn a_message_held_again_waits_behind_a_newer_one() {
        let mut throttles = Throttles::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        throttles.admit("m", LATEST, "t", at(0), 1);
        throttles.admit("m", LATEST, "t", at(1), 2);
        let due = throttles.take_due(at(10), |_| Duration::from_secs(10));
        assert_eq!(due.len(), 1);
        throttles.admit("m", LATEST, "t", at(11), 3);
        throttles.hold_again("m".to_owned(), "t".to_owned(), at(15), 2);
        assert_eq!(
            throttles.take_due(at(20), |_| Duration::from_secs(10)),
            vec![("m".to_owned(), "t".to_owned(), 3)]
        );
    }
}
