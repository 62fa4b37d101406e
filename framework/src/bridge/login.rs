//! Logins: a Matrix user's accounts on a bridge's network. A bridge that has logins offers
//! login flows ([`LoginHandler`]); the framework drives a flow step by step — from chat
//! commands or the provisioning API — keeps the logins, hands each message the login it is
//! sent with (the sender's own, or the portal's relay), and reconnects nothing by itself: the
//! bridge reads [`BridgeContext::logins`](super::BridgeContext) at start.

use switchboard_api::PluginError;
pub use switchboard_api::login::{
    Login, LoginField, LoginFlow, LoginRequest, LoginStep, NewLogin, Via,
};

use super::plugin::BridgeContext;

/// A bridge whose users log in to the network with their own accounts.
#[async_trait::async_trait]
pub trait LoginHandler: Send + Sync {
    /// The ways to log in, the first being the default.
    fn login_flows(&self) -> Vec<LoginFlow>;

    /// Runs a flow one step: returns what the user must do next, or the new login. `Err` is
    /// shown to the user and ends the attempt.
    async fn login_step(
        &self,
        ctx: &BridgeContext,
        request: &LoginRequest,
    ) -> Result<LoginStep, PluginError>;

    /// Logs a login out of the network (it is forgotten afterwards whatever this returns).
    async fn logout(&self, _ctx: &BridgeContext, _login: &Login) -> Result<(), PluginError> {
        Ok(())
    }

    /// Whether a message needs a login (own or relay) to be bridged. A network that carries
    /// everything as the bridge itself may say no; logins then speak for their owners.
    fn login_required(&self) -> bool {
        true
    }
}
