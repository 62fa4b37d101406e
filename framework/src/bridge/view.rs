//! What a bot may see and do of the plug-ins hosted beside it, for admin tools: the bots, each
//! bridge's state, the portals and puppets; unbridging a portal, turning plug-ins off and on,
//! reloading the config, and the health checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use ruma::RoomId;
use switchboard_registration::{Registration, RegistrationSpec};

use super::host::BridgeHost;
use crate::client::HomeserverClient;
use crate::config::{Config, PluginSection, ReloadError};
use crate::doctor::{self, Finding, Severity};
use crate::metrics::Metrics;
use crate::plugin::Bot;
use crate::store::Store;
use switchboard_api::PluginError;
use switchboard_api::host::{BridgeSummary, HostView, PortalSummary, PuppetSummary, Sample};

/// A bot's on/off switch, as the host keeps it.
#[derive(Clone)]
pub(crate) struct BotSwitch {
    pub(crate) id: String,
    pub(crate) enabled: Arc<AtomicBool>,
    pub(crate) bot: Weak<dyn Bot>,
}

/// What the health checks and reloads need of the running Switchboard.
pub(crate) struct Diagnostics {
    pub(crate) client: HomeserverClient,
    pub(crate) registration: Registration,
    pub(crate) spec: RegistrationSpec,
    /// The config in effect (as last loaded or reloaded).
    pub(crate) config: RwLock<Config>,
}

/// The plug-ins hosted beside a bot; cheap to clone.
#[derive(Clone)]
pub struct PluginsView {
    host: Arc<BridgeHost>,
    store: Store,
    metrics: Metrics,
    bots: Arc<[BotSwitch]>,
    diagnostics: Arc<Diagnostics>,
}

impl std::fmt::Debug for PluginsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginsView").finish_non_exhaustive()
    }
}

impl PluginsView {
    pub(crate) fn new(
        host: Arc<BridgeHost>,
        store: Store,
        metrics: Metrics,
        bots: Vec<BotSwitch>,
        diagnostics: Diagnostics,
    ) -> Self {
        Self {
            host,
            store,
            metrics,
            bots: bots.into(),
            diagnostics: Arc::new(diagnostics),
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
}

#[async_trait::async_trait]
impl HostView for PluginsView {
    /// The bots, each with whether it runs.
    fn bots(&self) -> Vec<(String, bool)> {
        self.bots
            .iter()
            .map(|b| (b.id.clone(), b.enabled.load(Ordering::Relaxed)))
            .collect()
    }
    /// Turns the plug-in `id` on or off until the next restart. A bot turned off sees no
    /// events; a bridge turned off keeps Matrix events in the outbox until it is on again.
    /// `Err` when there is no such plug-in.
    fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), PluginError> {
        if let Some(bot) = self.bots.iter().find(|b| b.id == id) {
            bot.enabled.store(enabled, Ordering::Relaxed);
            return Ok(());
        }
        match self.host.bridge(id) {
            Some(bridge) => {
                bridge.set_enabled(enabled);
                Ok(())
            }
            None => Err(PluginError::permanent(format!(
                "no plug-in `{id}` runs here"
            ))),
        }
    }
    /// The health checks: the registration against the config, the database, and the
    /// homeserver (reachable, accepting our token, reaching us).
    async fn doctor(&self) -> Vec<Finding> {
        let d = &self.diagnostics;
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
    fn reload_config(&self) -> Vec<Finding> {
        let running = self
            .diagnostics
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
            let bot = self
                .bots
                .iter()
                .find(|b| b.id == id)
                .and_then(|b| b.bot.upgrade());
            findings.push(Self::apply(&format!("bots.{id}"), old, now, |section| {
                bot.as_ref().map(|b| b.reload(section))
            }));
        }
        for (id, old, now) in changed_sections(&running.bridges, &new.bridges) {
            let bridge = self.host.bridge(&id).cloned();
            findings.push(Self::apply(&format!("bridges.{id}"), old, now, |section| {
                bridge.as_ref().map(|b| b.reload(section))
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
            *self
                .diagnostics
                .config
                .write()
                .unwrap_or_else(PoisonError::into_inner) = new;
        }
        findings
    }
    /// Every hosted bridge, in the config's order.
    fn bridges(&self) -> Vec<BridgeSummary> {
        self.host
            .all()
            .iter()
            .map(|hosted| BridgeSummary {
                id: hosted.id().to_owned(),
                network: hosted.info().displayname.clone(),
                state: hosted.state(),
                portal_rooms: hosted.portal_room_count(),
                enabled: !hosted.is_disabled(),
            })
            .collect()
    }
    /// Every portal that has a room.
    async fn portals(&self) -> Result<Vec<PortalSummary>, PluginError> {
        Ok(self
            .store
            .portals_with_rooms()
            .await?
            .into_iter()
            .filter_map(|(bridge, portal)| {
                Some(PortalSummary {
                    bridge,
                    key: portal.key,
                    room_id: portal.room_id?,
                })
            })
            .collect())
    }
    /// The portal `room_id` is, if it is one.
    fn portal_of(&self, room_id: &RoomId) -> Option<PortalSummary> {
        self.host.all().iter().find_map(|hosted| {
            hosted.portal_of(room_id).map(|key| PortalSummary {
                bridge: hosted.id().to_owned(),
                key,
                room_id: room_id.to_string(),
            })
        })
    }
    /// Stops bridging the portal `room_id` (the room stays); what it was, if it was one.
    async fn unbridge(&self, room_id: &RoomId) -> Result<Option<PortalSummary>, PluginError> {
        let Some(portal) = self.portal_of(room_id) else {
            return Ok(None);
        };
        if let Some(hosted) = self.host.bridge(&portal.bridge) {
            hosted.unbridge(&portal.key).await?;
        }
        Ok(Some(portal))
    }
    /// The puppets of one bridge or of all, at most `limit`.
    async fn puppets(
        &self,
        bridge: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PuppetSummary>, PluginError> {
        Ok(self
            .store
            .puppets(bridge, limit)
            .await?
            .into_iter()
            .map(|(bridge, remote, user_id)| PuppetSummary {
                bridge,
                remote,
                user_id,
            })
            .collect())
    }

    fn metric_samples(&self) -> Vec<Sample> {
        self.metrics.samples()
    }
}

fn finding(severity: Severity, text: String) -> Finding {
    Finding { severity, text }
}

/// The top-level sections other than the plug-ins' that differ, as findings.
fn core_changes(old: &Config, new: &Config) -> Vec<Finding> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    new.iter()
        .filter(|(key, value)| {
            key.as_str() != "bots" && key.as_str() != "bridges" && old.get(*key) != Some(value)
        })
        .map(|(key, _)| {
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
