//! The puppets a bridge used lately, kept in memory with the profile last written for them, so
//! that a busy remote user's messages cost no store lookups. A puppet unused for the idle time
//! is forgotten (reaped); its next message looks it up again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ruma::{OwnedUserId, UserId};

/// What is known of one puppet: registered, and shown with this profile.
#[derive(Debug)]
struct Known {
    displayname: Option<String>,
    avatar_url: Option<String>,
    last_used: Instant,
}

/// Recently used puppets of one bridge; cheap to clone (shared).
#[derive(Clone, Debug)]
pub(crate) struct PuppetCache {
    known: Arc<Mutex<HashMap<OwnedUserId, Known>>>,
    idle: Duration,
}

impl PuppetCache {
    /// A cache forgetting puppets unused for `idle`.
    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            known: Arc::default(),
            idle,
        }
    }

    /// Whether `user` is registered and already shows this profile (`None`: any); marks it
    /// used.
    pub(crate) fn is_current(
        &self,
        user: &UserId,
        displayname: Option<&str>,
        avatar_url: Option<&str>,
    ) -> bool {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = known.get_mut(user) else {
            return false;
        };
        entry.last_used = Instant::now();
        displayname.is_none_or(|name| entry.displayname.as_deref() == Some(name))
            && avatar_url.is_none_or(|url| entry.avatar_url.as_deref() == Some(url))
    }

    /// Remembers that `user` is registered and shows this profile (`None`: unchanged);
    /// returns how many puppets are known.
    pub(crate) fn remember(
        &self,
        user: &UserId,
        displayname: Option<&str>,
        avatar_url: Option<&str>,
    ) -> usize {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = known.entry(user.to_owned()).or_insert_with(|| Known {
            displayname: None,
            avatar_url: None,
            last_used: Instant::now(),
        });
        entry.last_used = Instant::now();
        if let Some(name) = displayname {
            entry.displayname = Some(name.to_owned());
        }
        if let Some(url) = avatar_url {
            entry.avatar_url = Some(url.to_owned());
        }
        known.len()
    }

    /// Forgets the puppets unused for the idle time as of `now`; returns how many are left.
    pub(crate) fn reap(&self, now: Instant) -> usize {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.retain(|_, entry| now.saturating_duration_since(entry.last_used) < self.idle);
        known.len()
    }

    /// How long a puppet stays known without being used.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_puppet_is_current_until_its_profile_changes() {
        let cache = PuppetCache::new(Duration::from_mins(1));
        let bob = ruma::user_id!("@_lb_bob:example.org");
        assert!(!cache.is_current(bob, None, None), "unknown at first");
        assert_eq!(cache.remember(bob, Some("Bob"), None), 1);
        assert!(cache.is_current(bob, Some("Bob"), None));
        assert!(cache.is_current(bob, None, None));
        assert!(!cache.is_current(bob, Some("Robert"), None));
        assert!(
            !cache.is_current(bob, Some("Bob"), Some("mxc://x/y")),
            "no avatar set yet"
        );
        cache.remember(bob, None, Some("mxc://x/y"));
        assert!(cache.is_current(bob, Some("Bob"), Some("mxc://x/y")));
    }

    #[test]
    fn puppets_unused_for_the_idle_time_are_forgotten() {
        let cache = PuppetCache::new(Duration::from_mins(1));
        let bob = ruma::user_id!("@_lb_bob:example.org");
        let eve = ruma::user_id!("@_lb_eve:example.org");
        cache.remember(bob, Some("Bob"), None);
        cache.remember(eve, Some("Eve"), None);
        let soon = Instant::now() + Duration::from_secs(30);
        assert_eq!(cache.reap(soon), 2);
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(cache.reap(later), 0);
        assert!(!cache.is_current(bob, Some("Bob"), None));
    }
}
