//! Logins to the loopback network: any username, the password `loopback`.

use switchboard_api::PluginError;
use switchboard_api::bridge::{BridgeContext, LoginHandler};
use switchboard_api::ids::LoginId;
use switchboard_api::login::{LoginField, LoginFlow, LoginRequest, LoginStep, NewLogin};

use crate::LoopbackBridge;

/// The loopback network's one password.
const PASSWORD: &str = "loopback";

#[switchboard_api::async_trait]
impl LoginHandler for LoopbackBridge {
    fn login_flows(&self) -> Vec<LoginFlow> {
        vec![LoginFlow {
            id: "password".to_owned(),
            name: "Username and password".to_owned(),
            description: format!("Any username; the password is `{PASSWORD}`"),
        }]
    }

    async fn login_step(
        &self,
        _ctx: &BridgeContext,
        request: &LoginRequest,
    ) -> Result<LoginStep, PluginError> {
        let (Some(username), Some(password)) =
            (request.input.get("username"), request.input.get("password"))
        else {
            return Ok(LoginStep::UserInput {
                instructions: "Log in to the loopback network.".to_owned(),
                fields: vec![
                    LoginField {
                        id: "username".to_owned(),
                        name: "username".to_owned(),
                        secret: false,
                    },
                    LoginField {
                        id: "password".to_owned(),
                        name: "password".to_owned(),
                        secret: true,
                    },
                ],
            });
        };
        if password != PASSWORD {
            return Err(PluginError::permanent("wrong password"));
        }
        let id = LoginId(format!("user:{username}"));
        Ok(LoginStep::Complete(NewLogin {
            id,
            remote_name: username.clone(),
            data: switchboard_api::serde_json::json!({ "username": username }),
        }))
    }

    fn login_required(&self) -> bool {
        self.require_login
    }
}
