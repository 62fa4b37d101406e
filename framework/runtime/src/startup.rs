//! The start-up checks `run` and `doctor` share: the homeserver is reachable, accepts the
//! `as_token` as the bot, and can reach Switchboard's appservice API (its ping).

use std::time::Duration;

use switchboard_registration::Registration;

use crate::client::{HomeserverClient, Identity};

/// A failed start-up check, in plain language.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// `/versions` could not be fetched.
    #[error(
        "cannot reach the homeserver at {url}: {detail}\n  fix: check that the homeserver is running and that homeserver.url is right"
    )]
    HomeserverUnreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// `/whoami` refused the `as_token`.
    #[error(
        "the homeserver does not accept Switchboard's as_token ({detail})\n  fix: the homeserver has not loaded this registration file, or loaded an older one: add {registration} to its appservice config (Synapse: app_service_config_files) and restart the homeserver"
    )]
    TokenRejected {
        /// What the homeserver said.
        detail: String,
        /// Path of the registration file.
        registration: String,
    },
    /// `/whoami` answered with another user than the bot.
    #[error(
        "the homeserver says the as_token belongs to {actual}, but the registration's bot is {expected}\n  fix: regenerate the registration and restart the homeserver"
    )]
    WrongBot {
        /// The user the homeserver reported.
        actual: String,
        /// The user we expected.
        expected: String,
    },
    /// The homeserver cannot reach Switchboard's appservice URL.
    #[error(
        "the homeserver cannot reach Switchboard at {url} ({detail})\n  fix: appservice.url must be reachable from the homeserver and appservice.listen must accept it (firewall, container network, wrong port)"
    )]
    HomeserverCannotReachUs {
        /// The URL in the registration.
        url: String,
        /// What the homeserver said.
        detail: String,
    },
    /// The homeserver reached us but we refused it, or another service answered.
    #[error(
        "the homeserver reached {url} but the call failed ({detail})\n  fix: the hs_token the homeserver uses differs from the registration file: restart the homeserver after regenerating, or check that {url} is this Switchboard"
    )]
    PingRejected {
        /// The URL in the registration.
        url: String,
        /// What the homeserver said.
        detail: String,
    },
    /// The homeserver does not know this appservice id.
    #[error(
        "the homeserver does not know the appservice id '{id}' ({detail})\n  fix: the registration's id differs from appservice.id, or the homeserver loaded another registration file; restart it after regenerating"
    )]
    UnknownAppservice {
        /// Our appservice id.
        id: String,
        /// What the homeserver said.
        detail: String,
    },
}

impl SelfTestError {
    /// The process exit code for this failure.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            SelfTestError::HomeserverUnreachable { .. } => 10,
            SelfTestError::TokenRejected { .. } | SelfTestError::WrongBot { .. } => 11,
            SelfTestError::HomeserverCannotReachUs { .. } => 12,
            SelfTestError::PingRejected { .. } => 13,
            SelfTestError::UnknownAppservice { .. } => 14,
        }
    }
}

/// What the start-up checks found.
#[derive(Clone, Debug)]
pub struct SelfTestReport {
    /// Spec versions the homeserver supports.
    pub versions: Vec<String>,
    /// Round-trip time of the homeserver's ping to us; `None` if the homeserver has no ping.
    pub ping: Option<Duration>,
}

/// Runs the start-up checks: `/versions`, `/whoami` as the bot, then the appservice ping
/// (which also resets the homeserver's backoff towards us). Our appservice API must be up.
pub async fn self_test(
    client: &HomeserverClient,
    registration: &Registration,
    registration_path: &str,
) -> Result<SelfTestReport, SelfTestError> {
    let versions = client
        .versions()
        .await
        .map_err(|e| SelfTestError::HomeserverUnreachable {
            url: client.base_url().to_owned(),
            detail: e.to_string(),
        })?;
    match client.whoami(Identity::bot()).await {
        Ok(user) if user == client.bot_user_id() => {}
        Ok(user) => {
            return Err(SelfTestError::WrongBot {
                actual: user.to_string(),
                expected: client.bot_user_id().to_string(),
            });
        }
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            return Err(SelfTestError::TokenRejected {
                detail: e.to_string(),
                registration: registration_path.to_owned(),
            });
        }
        Err(e) => {
            return Err(SelfTestError::HomeserverUnreachable {
                url: client.base_url().to_owned(),
                detail: e.to_string(),
            });
        }
    }
    let url = registration.url.clone().unwrap_or_default();
    let ping = match client.ping(&registration.id).await {
        Ok(rtt) => Some(rtt),
        Err(e) => match (e.status(), e.errcode()) {
            (Some(404 | 405 | 400), Some("M_UNRECOGNIZED")) => {
                tracing::warn!(
                    "the homeserver has no appservice ping (spec v1.7); cannot check that it reaches us"
                );
                None
            }
            (_, Some("M_CONNECTION_FAILED" | "M_CONNECTION_TIMEOUT")) | (Some(502 | 504), _) => {
                let detail = e.to_string();
                if e.errcode() == Some("M_BAD_STATUS") {
                    return Err(SelfTestError::PingRejected { url, detail });
                }
                return Err(SelfTestError::HomeserverCannotReachUs { url, detail });
            }
            (_, Some("M_FORBIDDEN" | "M_NOT_FOUND")) => {
                return Err(SelfTestError::UnknownAppservice {
                    id: registration.id.clone(),
                    detail: e.to_string(),
                });
            }
            _ => {
                return Err(SelfTestError::HomeserverUnreachable {
                    url: client.base_url().to_owned(),
                    detail: e.to_string(),
                });
            }
        },
    };
    Ok(SelfTestReport { versions, ping })
}
