//! One backoff policy for everything Switchboard retries: homeserver requests, the bridges'
//! outbox, and plug-ins reconnecting to their networks. Re-exported by `switchboard-api`.

use std::time::Duration;

use rand::Rng;

/// Pauses that double from `initial` up to `max`; with jitter, each is drawn between half
/// and the whole of that (so that many clients retrying at once spread out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The pause before the first retry.
    pub initial: Duration,
    /// The longest pause.
    pub max: Duration,
    /// Whether pauses are drawn between half and the whole.
    pub jitter: bool,
}

impl Backoff {
    /// Pauses doubling from `initial` up to `max`, without jitter.
    #[must_use]
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: false,
        }
    }

    /// The same pauses, each drawn between half and the whole.
    #[must_use]
    pub const fn with_jitter(self) -> Self {
        Self {
            jitter: true,
            ..self
        }
    }

    /// The pause before retry `attempt` (0 for the first retry).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1_u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        if !self.jitter || base.is_zero() {
            return base;
        }
        let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_limit_and_jitter_stays_within_half_and_whole() {
        let plain = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let pauses: Vec<u64> = (0..7).map(|a| plain.delay(a).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(plain.delay(u32::MAX), Duration::from_secs(30));
        let jittered = plain.with_jitter();
        for attempt in 0..8 {
            let whole = plain.delay(attempt);
            let pause = jittered.delay(attempt);
            assert!(
                pause >= whole / 2 && pause <= whole,
                "{pause:?} for {whole:?}"
            );
        }
        let none = Backoff::new(Duration::ZERO, Duration::ZERO).with_jitter();
        assert_eq!(none.delay(3), Duration::ZERO);
    }
}
