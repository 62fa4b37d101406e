//! Logins: Matrix users' own accounts on the remote network, the flows that create them, and
//! which login a Matrix user's event goes to the network with.

use std::collections::BTreeMap;

use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

use crate::ids::LoginId;

/// What a login's `data` shows in logs.
const REDACTED: &str = "<redacted>";

/// A way to log in (`password`, `qr`, `token`…).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFlow {
    /// Its id, as typed after `login`.
    pub id: String,
    /// Short name.
    pub name: String,
    /// What it does, for the user choosing.
    pub description: String,
}

/// A field the user fills in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginField {
    /// Its key in [`LoginRequest::input`].
    pub id: String,
    /// What to ask for ("Username").
    pub name: String,
    /// A secret (password, token): the user's message holding it is redacted when the bot may.
    pub secret: bool,
}

/// The next step of a login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LoginStep {
    /// Ask the user for these fields, then call the flow again with them.
    UserInput {
        /// Shown before the first field.
        instructions: String,
        /// The fields, asked one at a time in chat.
        fields: Vec<LoginField>,
    },
    /// Show `display` (a code to type elsewhere, a link…) and call the flow again, which
    /// returns once the user has done it.
    DisplayAndWait {
        /// What to do.
        instructions: String,
        /// What to show.
        display: String,
    },
    /// Logged in.
    Complete(NewLogin),
}

/// An account a flow logged in to. (`Debug` leaves `data` out: it may hold credentials.)
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLogin {
    /// The account's id on the network.
    pub id: LoginId,
    /// How it is shown to its owner.
    pub remote_name: String,
    /// What the bridge needs to reconnect it (stored as JSON).
    pub data: serde_json::Value,
}

/// One call of a login flow. (`Debug` shows the fields entered, not their values: they may be
/// passwords.)
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// Who is logging in.
    pub user: OwnedUserId,
    /// The flow.
    pub flow: String,
    /// Everything the user entered so far, by field id (empty at the first call).
    pub input: BTreeMap<String, String>,
    /// How many times the flow was called before in this login (0 at the first call).
    pub step: u32,
}

/// A login of a Matrix user, as the framework hands it to a bridge. (`Debug` leaves `data`
/// out: it may hold credentials.)
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The account's id on the network.
    pub id: LoginId,
    /// Its owner.
    pub user_id: OwnedUserId,
    /// How it is shown to its owner.
    pub remote_name: String,
    /// The bridge's data about it.
    pub data: serde_json::Value,
}

impl std::fmt::Debug for NewLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewLogin")
            .field("id", &self.id)
            .field("remote_name", &self.remote_name)
            .field("data", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("flow", &self.flow)
            .field("input", &self.input.keys().collect::<Vec<_>>())
            .field("step", &self.step)
            .finish()
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("remote_name", &self.remote_name)
            .field("data", &REDACTED)
            .finish()
    }
}

/// Through which login a Matrix message goes to the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// The sender's own login.
    Own(Login),
    /// The portal's relay login; the body already says who wrote it (relay template).
    Relay(Login),
    /// No login (a bridge without logins sends everything as itself).
    Bridge,
}

impl Via {
    /// The login used, if any.
    #[must_use]
    pub fn login(&self) -> Option<&Login> {
        match self {
            Self::Own(login) | Self::Relay(login) => Some(login),
            Self::Bridge => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let request = LoginRequest {
            user: OwnedUserId::try_from("@u:x").expect("user"),
            flow: "password".into(),
            input: BTreeMap::from([("password".to_owned(), "hunter2".to_owned())]),
            step: 1,
        };
        let login = Login {
            id: LoginId::from("me"),
            user_id: request.user.clone(),
            remote_name: "me".into(),
            data: serde_json::json!({ "session": "s3cret" }),
        };
        let shown = format!("{request:?} {login:?} {:?}", Via::Own(login.clone()));
        assert!(
            shown.contains("password") && shown.contains("me"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
