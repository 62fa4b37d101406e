//! Time as plug-ins and the host read it: a [`Clock`] they are handed, so that tests can run
//! on one they move by hand ([`MockClock`]) instead of sleeping. Plug-ins never call
//! `SystemTime::now` (clippy's `disallowed-methods` under `bridges/`, `bots/` and
//! `examples/` refuses it).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now, in milliseconds since the Unix epoch (0 before it).
    fn now_ms(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct MockClock {
    now_ms: AtomicI64,
}

impl MockClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        let clock = Self {
            now_ms: AtomicI64::new(0),
        };
        clock.set(start);
        clock
    }

    /// Sets the time to `now`.
    pub fn set(&self, now: SystemTime) {
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the time on by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now(&self) -> SystemTime {
        let ms = u64::try_from(self.now_ms.load(Ordering::SeqCst)).unwrap_or(0);
        UNIX_EPOCH + Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mock_clock_moves_only_when_told() {
        let clock = MockClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(clock.now_ms(), 1_000_000);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), 1_001_500);
        assert_eq!(clock.now_ms(), 1_001_500, "it does not move by itself");
        let system = SystemClock.now_ms();
        assert!(
            system > 1_700_000_000_000,
            "the system clock reads the real time"
        );
    }
}
