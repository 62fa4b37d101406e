//! The test kit's contract tests wired to the test fixtures: a real Matrix user as the
//! tester, and Switchboard's appservice API pushed to as the homeserver.

use serde_json::Value;
use switchboard_testing::{MatrixTester, TransactionPusher};

use super::MatrixUser;
use super::switchboard_instance::Slot;

/// A real Matrix user driven by the contract tests.
pub struct Tester<'a>(pub &'a MatrixUser);

#[switchboard_runtime::async_trait]
impl MatrixTester for Tester<'_> {
    fn user_id(&self) -> String {
        self.0.user_id.clone()
    }

    async fn send_text(&self, room: &str, body: &str) -> Result<String, String> {
        self.0
            .send_text(room, body)
            .await
            .map_err(|e| e.to_string())
    }

    async fn timeline(&self, room: &str) -> Result<Vec<Value>, String> {
        let mut events = self
            .0
            .messages(room, 100)
            .await
            .map_err(|e| e.to_string())?;
        events.reverse();
        Ok(events)
    }
}

/// Switchboard's appservice API, pushed to as the homeserver.
pub struct Homeserver {
    url: String,
    hs_token: String,
}

impl Homeserver {
    /// The appservice API of `slot`'s Switchboard.
    pub fn of(slot: &Slot) -> Self {
        Self {
            url: slot.as_url(),
            hs_token: slot.registration.hs_token.clone(),
        }
    }
}

#[switchboard_runtime::async_trait]
impl TransactionPusher for Homeserver {
    async fn push(&self, txn_id: &str, body: &Value) -> Result<u16, String> {
        let url = format!("{}/_matrix/app/v1/transactions/{txn_id}", self.url);
        let response = reqwest::Client::new()
            .put(url)
            .bearer_auth(&self.hs_token)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }
}
