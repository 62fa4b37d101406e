//! Who a request acts as, and the transaction ids derived from what is being sent.

use base64::Engine;
use ruma::api::AppserviceUserIdentity;
use ruma::{OwnedTransactionId, UserId};
use sha2::{Digest, Sha256};

/// Who a request acts as.
#[derive(Clone, Copy, Default)]
pub struct Identity<'a> {
    /// The user asserted with `?user_id=`; `None` acts as the appservice bot.
    pub user_id: Option<&'a UserId>,
    /// The device asserted with `?device_id=` (spec v1.17).
    pub device_id: Option<&'a ruma::DeviceId>,
    /// Another appservice's token to act with, instead of ours: double puppeting, where a
    /// registration without a URL covers the real users of a server.
    pub as_token: Option<&'a str>,
}

impl std::fmt::Debug for Identity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("as_token", &self.as_token.map(|_| "<redacted>"))
            .finish()
    }
}

impl<'a> Identity<'a> {
    /// Acting as the appservice's own bot.
    #[must_use]
    pub fn bot() -> Self {
        Self::default()
    }

    pub(crate) fn to_ruma(self) -> AppserviceUserIdentity<'a> {
        let mut identity = AppserviceUserIdentity::default();
        identity.user_id = self.user_id;
        identity.device_id = self.device_id;
        identity
    }

    /// Acting as `user_id` (a user in our namespace).
    #[must_use]
    pub fn user(user_id: &'a UserId) -> Self {
        Self {
            user_id: Some(user_id),
            ..Self::default()
        }
    }

    /// Acting as the real user `user_id` through the double-puppeting appservice whose token is
    /// `as_token`.
    #[must_use]
    pub fn double_puppet(user_id: &'a UserId, as_token: &'a str) -> Self {
        Self {
            user_id: Some(user_id),
            device_id: None,
            as_token: Some(as_token),
        }
    }
}

/// Derives a transaction id from the parts that identify what is being sent (for example the
/// plug-in, the event being answered and the purpose). The same parts always give the same id,
/// so a retried or repeated send is de-duplicated by the homeserver.
#[must_use]
pub fn derive_txn_id(parts: &[&str]) -> OwnedTransactionId {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]);
    OwnedTransactionId::from(format!("sb{encoded}"))
}
