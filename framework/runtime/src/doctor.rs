//! Health checks of a configured Switchboard in plain language, shared by `switchboard doctor`
//! and admin tools running inside Switchboard (the admin bot's `doctor`).

use switchboard_registration::{Registration, RegistrationSpec};

pub use switchboard_api::host::{Finding, Severity};

use crate::client::HomeserverClient;
use crate::startup;
use crate::store::Store;

/// Whether the registration on disk (`path`) still matches what the config implies.
#[must_use]
pub fn registration(
    registration: &Registration,
    spec: &RegistrationSpec,
    path: &str,
) -> Vec<Finding> {
    let drift = registration.drift(spec);
    if drift.is_empty() {
        return vec![Finding::new(
            Severity::Ok,
            format!("registration {path} matches the config"),
        )];
    }
    drift
        .iter()
        .map(|d| {
            Finding::new(
                Severity::Warn,
                format!(
                    "registration {d}; fix: run `switchboard generate-registration` and \
                     restart the homeserver"
                ),
            )
        })
        .collect()
}

/// Whether the database answers, and what waits or failed in the inbox.
pub async fn database(store: &Store) -> Vec<Finding> {
    let counts = async {
        Ok::<_, crate::store::StoreError>((
            store.inbox_depth().await?,
            store.inbox_failed_count().await?,
        ))
    };
    match counts.await {
        Ok((pending, failed)) => {
            let severity = if failed > 0 {
                Severity::Warn
            } else {
                Severity::Ok
            };
            vec![Finding::new(
                severity,
                format!(
                    "database ({}) answers; {pending} event(s) waiting, {failed} given up",
                    store.backend()
                ),
            )]
        }
        Err(e) => vec![Finding::new(
            Severity::Fail,
            format!("the database does not answer: {e}"),
        )],
    }
}

/// Whether the homeserver answers, accepts our token, knows the bot and reaches our
/// appservice API (the start-up checks). Our appservice API must be listening.
pub async fn homeserver(
    client: &HomeserverClient,
    registration: &Registration,
    path: &str,
) -> Vec<Finding> {
    match startup::self_test(client, registration, path).await {
        Ok(report) => {
            let mut findings = vec![
                Finding::new(
                    Severity::Ok,
                    format!(
                        "homeserver {} answers (spec {})",
                        client.base_url(),
                        report.versions.last().map_or("?", String::as_str)
                    ),
                ),
                Finding::new(
                    Severity::Ok,
                    "the homeserver accepts the as_token and knows the bot",
                ),
            ];
            findings.push(match report.ping {
                Some(rtt) => Finding::new(
                    Severity::Ok,
                    format!(
                        "the homeserver reaches Switchboard at {} ({} ms)",
                        registration.url.as_deref().unwrap_or("?"),
                        rtt.as_millis()
                    ),
                ),
                None => Finding::new(
                    Severity::Warn,
                    "the homeserver has no appservice ping; cannot check that it reaches us",
                ),
            });
            findings
        }
        Err(e) => vec![Finding::new(Severity::Fail, e.to_string())],
    }
}
