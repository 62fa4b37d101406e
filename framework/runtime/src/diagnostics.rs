//! The runtime's side of the admin tools the host offers bots: the health checks, re-reading
//! the config file (the host applies the plug-in sections that changed), and the metrics.

use std::sync::{PoisonError, RwLock};

use switchboard_api::config::{PluginSection, ReloadError};
use switchboard_api::host::{Finding, Sample, Severity};
use switchboard_host::diagnostics::{Diagnostics, PluginReload};
use switchboard_registration::{Registration, RegistrationSpec};

use crate::client::HomeserverClient;
use crate::config::Config;
use crate::doctor;
use crate::metrics::Metrics;
use crate::store::Store;

/// What the health checks and reloads need of the running Switchboard. `Debug` shows none of
/// it: the config holds plug-ins' secrets.
pub(crate) struct RuntimeDiagnostics {
    pub(crate) client: HomeserverClient,
    pub(crate) store: Store,
    pub(crate) metrics: Metrics,
    pub(crate) registration: Registration,
    pub(crate) spec: RegistrationSpec,
    /// The config in effect (as last loaded or reloaded).
    pub(crate) config: RwLock<Config>,
}

impl std::fmt::Debug for RuntimeDiagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeDiagnostics").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Diagnostics for RuntimeDiagnostics {
    /// The health checks: the registration against the config, the database, and the
    /// homeserver (reachable, accepting our token, reaching us).
    async fn doctor(&self) -> Vec<Finding> {
        let d = self;
        let path = d
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .appservice
            .registration
            .display()
            .to_string();
        let mut findings = doctor::registration(&d.registration, &d.spec, &path);
        findings.extend(doctor::database(&self.store).await);
        findings.extend(doctor::homeserver(&d.client, &d.registration, &path).await);
        findings
    }

    /// Reads the config file again. If it is invalid, nothing changes and the finding says
    /// what is wrong (field, value, what is expected). Otherwise each changed plug-in section
    /// is handed to its plug-in to apply; what cannot be applied now (other sections, plug-ins
    /// turned on or off, plug-ins that read their settings at start only) is named as taking
    /// effect at the next restart.
    fn reload_config(&self, plugins: &dyn PluginReload) -> Vec<Finding> {
        let running = self
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(path) = running.source.clone() else {
            return vec![finding(
                Severity::Fail,
                "the running config was not loaded from a file".to_owned(),
            )];
        };
        let new = match Config::load(&path) {
            Ok(new) => new,
            Err(e) => {
                return vec![finding(
                    Severity::Fail,
                    format!("{} is not valid, nothing changed: {e}", path.display()),
                )];
            }
        };
        let mut findings = core_changes(&running, &new);
        for (id, old, now) in changed_sections(&running.bots, &new.bots) {
            findings.push(apply(&format!("bots.{id}"), old, now, |section| {
                plugins.reload_bot(&id, section)
            }));
        }
        for (id, old, now) in changed_sections(&running.bridges, &new.bridges) {
            findings.push(apply(&format!("bridges.{id}"), old, now, |section| {
                plugins.reload_bridge(&id, section)
            }));
        }
        if findings.is_empty() {
            findings.push(finding(
                Severity::Ok,
                format!("{} is valid; nothing changed", path.display()),
            ));
        }
        // With a section refused, the next reload compares against the old file again, so
        // that the fixed section is applied then.
        if findings.iter().all(|f| f.severity != Severity::Fail) {
            *self.config.write().unwrap_or_else(PoisonError::into_inner) = new;
        }
        findings
    }

    fn metric_samples(&self) -> Vec<Sample> {
        self.metrics.samples()
    }
}

/// Applies one changed plug-in section through `reload` (`None`: the plug-in is not
/// running).
fn apply(
    field: &str,
    old: Option<&PluginSection>,
    new: Option<&PluginSection>,
    reload: impl FnOnce(&PluginSection) -> Option<Result<(), ReloadError>>,
) -> Finding {
    let restart = |why: &str| {
        finding(
            Severity::Warn,
            format!("`{field}` changed: {why}; it takes effect at the next restart"),
        )
    };
    let (Some(old), Some(new)) = (old, new) else {
        return restart("a plug-in was added or removed");
    };
    if old.enabled != new.enabled || !new.enabled {
        return restart("the plug-in was turned on or off in the file");
    }
    match reload(new) {
        Some(Ok(())) => finding(Severity::Ok, format!("`{field}` reloaded")),
        Some(Err(ReloadError::NeedsRestart(why))) => restart(&why),
        Some(Err(ReloadError::Invalid(why))) => finding(
            Severity::Fail,
            format!("`{field}` is not valid, so it was not applied: {why}"),
        ),
        None => restart("the plug-in is not running"),
    }
}

fn finding(severity: Severity, text: String) -> Finding {
    Finding { severity, text }
}

/// The top-level sections other than the plug-ins' that differ, as findings. Sections are
/// compared as serialised, except `provisioning`, whose secret serialises redacted.
fn core_changes(old_config: &Config, new_config: &Config) -> Vec<Finding> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) = (
        serde_json::to_value(old_config),
        serde_json::to_value(new_config),
    ) else {
        return Vec::new();
    };
    let mut changed: std::collections::BTreeSet<&str> = new
        .iter()
        .filter(|(key, value)| {
            key.as_str() != "bots" && key.as_str() != "bridges" && old.get(*key) != Some(value)
        })
        .map(|(key, _)| key.as_str())
        .collect();
    if old_config.provisioning != new_config.provisioning {
        changed.insert("provisioning");
    }
    changed
        .into_iter()
        .map(|key| {
            finding(
                Severity::Warn,
                format!("`{key}` changed; it takes effect at the next restart"),
            )
        })
        .collect()
}

/// The plug-in sections that differ: `(id, old, new)`.
fn changed_sections<'a>(
    old: &'a std::collections::BTreeMap<String, PluginSection>,
    new: &'a std::collections::BTreeMap<String, PluginSection>,
) -> Vec<(String, Option<&'a PluginSection>, Option<&'a PluginSection>)> {
    old.keys()
        .chain(new.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|id| old.get(*id) != new.get(*id))
        .map(|id| (id.clone(), old.get(id), new.get(id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_provisioning_secret_is_reported_though_it_serialises_redacted() {
        let old = Config::default();
        let mut new = old.clone();
        new.provisioning.shared_secret =
            switchboard_api::Secret::new("a-new-secret-of-at-least-32-characters".to_owned());
        let findings = core_changes(&old, &new);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0].text.contains("`provisioning` changed"),
            "{findings:?}"
        );
        assert!(core_changes(&old, &old.clone()).is_empty());
    }
}
