//! The one error type of every plug-in-facing trait: what went wrong, with its cause kept, and
//! what the framework should do about it (retry, tell the sender, wait for the network).

/// Any error, as the cause of a [`PluginError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a plug-in could not do what it was asked. The kind decides what the framework does: a
/// transient failure (or a network that is down) is retried later, in order; the others are
/// given up and, where a user asked for it, shown to them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// It may work later (rate limit, homeserver or database unavailable): retried with
    /// backoff, in order.
    #[error("{0}")]
    Transient(#[source] BoxError),
    /// The remote network cannot be reached now: retried, and tried at once when the bridge
    /// says the network is back.
    #[error("the network cannot be reached: {0}")]
    NetworkDown(#[source] BoxError),
    /// It will never work as asked (invalid input, refused by the network): not retried; the
    /// sender is told why.
    #[error("{0}")]
    Permanent(#[source] BoxError),
    /// The user has no login on the network that could do this.
    #[error("not logged in: {0}")]
    NotLoggedIn(String),
}

impl PluginError {
    /// A failure that may pass: retried later.
    pub fn transient(cause: impl Into<BoxError>) -> Self {
        Self::Transient(cause.into())
    }

    /// A failure that will not pass: given up, and shown to the sender.
    pub fn permanent(cause: impl Into<BoxError>) -> Self {
        Self::Permanent(cause.into())
    }

    /// The network is unreachable: retried once it is back.
    pub fn network_down(cause: impl Into<BoxError>) -> Self {
        Self::NetworkDown(cause.into())
    }

    /// Whether trying again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::NetworkDown(_))
    }
}

/// A homeserver that is down or rate-limits is a passing condition; a refused request is not.
impl From<switchboard_client::ClientError> for PluginError {
    fn from(error: switchboard_client::ClientError) -> Self {
        if error.is_transient() {
            Self::transient(error)
        } else {
            Self::permanent(error)
        }
    }
}

/// Says what kind of failure an error is, with `?`: `network.send(…).await.transient()?`.
pub trait ResultExt<T> {
    /// A failure that may pass.
    fn transient(self) -> Result<T, PluginError>;
    /// A failure that will not pass.
    fn permanent(self) -> Result<T, PluginError>;
    /// The network is unreachable.
    fn network_down(self) -> Result<T, PluginError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn transient(self) -> Result<T, PluginError> {
        self.map_err(PluginError::transient)
    }

    fn permanent(self) -> Result<T, PluginError> {
        self.map_err(PluginError::permanent)
    }

    fn network_down(self) -> Result<T, PluginError> {
        self.map_err(PluginError::network_down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_whether_to_retry_and_the_cause_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let down = Err::<(), _>(io).network_down().expect_err("an error");
        assert!(down.is_transient());
        assert_eq!(down.to_string(), "the network cannot be reached: refused");
        assert!(std::error::Error::source(&down).is_some());
        let refused = PluginError::permanent(format!("no such topic {}", "a/b"));
        assert!(!refused.is_transient());
        assert_eq!(refused.to_string(), "no such topic a/b");
        assert!(!PluginError::NotLoggedIn("log in first".into()).is_transient());
    }
}
