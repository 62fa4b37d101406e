//! The runtime: loads the registration, opens the store, starts the appservice API, checks the
//! homeserver, drains the inbox into the plug-ins, serves metrics, and shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use ruma::{OwnedServerName, OwnedUserId};
use switchboard_registration::{
    NamespaceMatcher, Registration, RegistrationError, RegistrationSpec,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use switchboard_api::clock::{Clock, SystemClock};

use crate::appservice;
use crate::client::{ClientError, HomeserverClient};
use crate::config::Config;
use crate::diagnostics::RuntimeDiagnostics;
use crate::inbox::Inbox;
use crate::metrics::{self, Metrics, Readiness};
use crate::plugin::{Downtime, HostError, HostOptions, PluginHost, Plugins};
use crate::store::{Store, StoreError};

/// How long the plug-ins' tasks get to end at shutdown before the database closes anyway.
const PLUGIN_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why Switchboard could not start or run. Each variant has its own exit code and a
/// plain-language message with the likely fix.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The registration file is missing or invalid.
    #[error(
        "{0}\n  fix: run `switchboard generate-registration -c <config>` and give the file to the homeserver"
    )]
    Registration(#[from] RegistrationError),
    /// The database cannot be opened or migrated.
    #[error("{0}\n  fix: check database.url and that the database server is running")]
    Store(#[from] StoreError),
    /// A listener cannot be bound.
    #[error(
        "cannot listen on {addr} ({what}): {source}\n  fix: another program (or another Switchboard) uses that address; change {what} in the config"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Which config field names it.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config is not usable (normally caught when it is loaded).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The server name in the config does not make a valid bot user id.
    #[error("config homeserver.server_name '{0}' does not make a valid user id")]
    ServerName(String),
    /// A start-up check against the homeserver failed.
    #[error(transparent)]
    SelfTest(#[from] SelfTestError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A plug-in could not be set up or started.
    #[error("{0}\n  fix: check the plug-in's section of the config and its network")]
    Plugin(#[from] HostError),
    /// Another process serves from the same SQLite database.
    #[error(
        "the database is in use by another Switchboard ({holder})\n  fix: stop that one first; \
         to run a hot standby, use PostgreSQL (docs/standby.md)"
    )]
    DatabaseInUse {
        /// Who holds it (`pid 1234 on host`).
        holder: String,
    },
    /// End-to-bridge encryption could not be set up.
    #[error(
        "cannot set up encryption: {0}\n  fix: check that the registration has \
         `io.element.msc4190: true` and `org.matrix.msc3202: true` (run generate-registration), \
         and the homeserver's settings in docs/encryption.md; or set encryption.enabled: false"
    )]
    Encryption(#[from] switchboard_crypto::EncryptionError),
    /// The database lease was lost while serving (its connection broke).
    #[error(
        "lost the database lease (its connection to PostgreSQL broke); a standby may be serving \
         now\n  fix: start this one again: it becomes the standby"
    )]
    LeaseLost,
}

impl From<crate::lease::TakeError> for RunError {
    fn from(error: crate::lease::TakeError) -> Self {
        match error {
            crate::lease::TakeError::InUse(holder) => RunError::DatabaseInUse { holder },
            crate::lease::TakeError::Store(e) => RunError::Store(e),
        }
    }
}

impl RunError {
    /// The process exit code for this error.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Registration(_) => 3,
            RunError::Store(_) => 4,
            RunError::Bind { .. } => 5,
            RunError::Config(_) | RunError::ServerName(_) | RunError::Client(_) => 2,
            RunError::SelfTest(e) => e.exit_code(),
            RunError::Plugin(_) => 15,
            RunError::DatabaseInUse { .. } => 6,
            RunError::LeaseLost => 7,
            RunError::Encryption(_) => 16,
        }
    }
}

pub use crate::startup::{SelfTestError, SelfTestReport, self_test};

/// The registration the config and the enabled plug-ins imply.
#[must_use]
pub fn registration_spec(config: &Config, plugins: &Plugins) -> RegistrationSpec {
    let namespaces = OwnedServerName::try_from(config.homeserver.server_name.as_str())
        .map(|server_name| plugins.namespaces(&server_name))
        .unwrap_or_default();
    RegistrationSpec {
        id: config.appservice.id.clone(),
        url: config.appservice.url.clone(),
        sender_localpart: (!config.appservice.bot_localpart.is_empty())
            .then(|| config.appservice.bot_localpart.clone()),
        namespaces,
        // To-device events come with the ephemeral ones (MSC2409), key counts with MSC3202.
        receive_ephemeral: config.appservice.ephemeral_events || config.encryption.enabled,
        msc3202: config.appservice.msc3202 || config.encryption.enabled,
        msc4190: config.encryption.enabled,
        protocols: plugins.protocols(),
    }
}

/// How often Switchboard records that it is running.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// The time Switchboard was down before this start, if its last heartbeat is older than
/// `after` (rooms are then told about late messages); `None` on a first start or with notices
/// off.
async fn last_downtime(
    store: &Store,
    clock: &dyn Clock,
    after: Option<Duration>,
) -> Result<Option<Downtime>, StoreError> {
    let (Some(after), Some(last)) = (after, store.last_beat().await?) else {
        return Ok(None);
    };
    let now = clock.now_ms();
    let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    Ok((now.saturating_sub(last) >= after_ms).then(|| {
        tracing::info!(
            down_for_secs = (now - last) / 1000,
            "Switchboard was down; portals with messages from then will be told"
        );
        Downtime {
            from_ms: last,
            to_ms: now,
        }
    }))
}

/// Records every [`HEARTBEAT`] that Switchboard is running, and once more at `shutdown` (so
/// that a graceful stop's downtime is measured exactly; a crash's within a heartbeat).
async fn keep_heartbeat(store: Store, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = store.beat(clock.now_ms()).await {
            tracing::warn!(error = %e, "cannot record the heartbeat");
        }
        if shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// Loads the registration and logs, in plain language, where it drifted from the config.
pub fn load_registration(
    config: &Config,
    plugins: &Plugins,
) -> Result<Registration, RegistrationError> {
    let registration = Registration::load(&config.appservice.registration)?;
    for drift in registration.drift(&registration_spec(config, plugins)) {
        tracing::warn!(
            field = drift.field,
            "registration drift: {}; run `switchboard generate-registration` and restart the homeserver",
            drift.message
        );
    }
    Ok(registration)
}

/// The bot's user id from the registration and config.
pub fn bot_user_id(config: &Config, registration: &Registration) -> Result<OwnedUserId, RunError> {
    OwnedUserId::try_from(format!(
        "@{}:{}",
        registration.sender_localpart, config.homeserver.server_name
    ))
    .map_err(|_| RunError::ServerName(config.homeserver.server_name.clone()))
}

/// Runs Switchboard until `shutdown` is cancelled. Returns after in-flight work has finished
/// and been recorded.
// One linear start-up and shutdown sequence; splitting it would scatter the ordering that
// matters (listeners before the self-test; on the way down HTTP, then the inbox, then the
// plug-ins and their tasks, then the database).
#[allow(clippy::too_many_lines)]
pub async fn run(
    config: Config,
    plugins: Plugins,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let registration = load_registration(&config, &plugins)?;
    let bot_user = bot_user_id(&config, &registration)?;
    let matcher = NamespaceMatcher::new(&registration.namespaces)?;
    let metrics = Metrics::new();
    let ready = Readiness::default();
    // Served from the start: a hot standby reports itself on `/ready` while it waits.
    let metrics_server = if config.metrics.enabled {
        let listener = metrics::bind(config.metrics.listen)
            .await
            .map_err(|source| RunError::Bind {
                addr: config.metrics.listen,
                what: "metrics.listen",
                source,
            })?;
        Some(tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            ready.clone(),
            shutdown.clone(),
        )))
    } else {
        None
    };

    // The lease first: a standby neither serves nor migrates the schema under the active
    // process (a newer version waiting as standby migrates once it takes over).
    let lease = crate::lease::take(
        &config.database_url(),
        &config.appservice.id,
        &ready,
        &metrics,
        &shutdown,
    )
    .await?;
    let Some((lease, took_over)) = lease else {
        // Stopped while waiting as a standby.
        if let Some(m) = metrics_server {
            let _ = m.await;
        }
        return Ok(());
    };
    let store = Store::connect(
        &config.database_url(),
        config.database.max_connections,
        config.database.sqlite_synchronous,
    )
    .await?;
    tracing::info!(backend = store.backend(), "database ready");
    let lease_lost = CancellationToken::new();
    let lease_shutdown = CancellationToken::new();
    let lease_task = tokio::spawn(crate::lease::keep(
        lease,
        lease_lost.clone(),
        lease_shutdown.clone(),
    ));

    let client = HomeserverClient::new(
        &config.homeserver.url,
        &registration.as_token,
        bot_user.clone(),
        config.client.clone(),
        metrics.client.clone(),
        std::sync::Arc::new(store.clone()),
    )?;
    let spec = registration_spec(&config, &plugins);
    // The plug-ins stop after the inbox has drained (an event in hand still reaches its
    // network), and their tasks are waited for before the database closes.
    let plugin_shutdown = CancellationToken::new();
    let plugin_tasks = TaskTracker::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let downtime = last_downtime(&store, clock.as_ref(), config.outage_notices.after()).await?;
    plugin_tasks.spawn(keep_heartbeat(
        store.clone(),
        Arc::clone(&clock),
        plugin_shutdown.clone(),
    ));
    // The device is opened now and published once the homeserver can push to us.
    let encryption = if config.encryption.enabled {
        Some(
            switchboard_crypto::Encryption::open(&client, store.clone(), config.encryption.clone())
                .await?,
        )
    } else {
        None
    };
    let decryption = encryption.clone().map(|encryption| {
        let decryption: Arc<dyn switchboard_host::decryption::RoomDecryption> =
            Arc::new(crate::encryption::HostDecryption(encryption));
        decryption
    });
    let host = Arc::new(
        PluginHost::new(
            plugins,
            client.clone(),
            store.clone(),
            metrics.host.clone(),
            matcher,
            &HostOptions {
                accept_invites: config.appservice.accept_invites,
                outbox: config.outbox.clone(),
                permissions: config.permissions()?,
                relay_template: config
                    .relay
                    .template()
                    .map_err(crate::config::ConfigError::from)?,
                double_puppets: config.double_puppet.tokens()?,
                max_media_bytes: config.media.max_bytes,
                puppet_idle: std::time::Duration::from_secs(config.puppets.idle_secs),
                backfill_messages: config.backfill.initial_messages,
                puppet_templates: config.puppet_templates()?,
                diagnostics: Arc::new(RuntimeDiagnostics {
                    client: client.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    registration: registration.clone(),
                    spec,
                    config: std::sync::RwLock::new(config.clone()),
                }),
                tasks: plugin_tasks.clone(),
                clock: Arc::clone(&clock),
                outage_notices_after: config.outage_notices.after(),
                downtime,
                decryption,
            },
            plugin_shutdown.clone(),
        )
        .await?,
    );

    let listener = crate::lease::bind_after_takeover(config.appservice.listen, took_over)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.appservice.listen,
            what: "appservice.listen",
            source,
        })?;

    let inbox_shutdown = CancellationToken::new();
    let (inbox, inbox_tasks) = Inbox::start(
        store.clone(),
        config.inbox.clone(),
        metrics.inbox.clone(),
        host.clone(),
        inbox_shutdown.clone(),
    )
    .await?;
    let http_shutdown = CancellationToken::new();
    let mut app = appservice::router(
        &registration.hs_token,
        inbox,
        host.clone(),
        metrics.inbox.clone(),
        config.appservice.max_body_bytes,
    );
    if config.provisioning.enabled {
        app = app.merge(crate::provisioning::router(
            host.clone(),
            client.clone(),
            config.provisioning.shared_secret.clone(),
        ));
    }
    let server = tokio::spawn(appservice::serve(listener, app, http_shutdown.clone()));
    tracing::info!(listen = %config.appservice.listen, bot = %bot_user, "appservice API listening");

    let registration_path = config.appservice.registration.display().to_string();
    let serving = async {
        let checked = tokio::select! {
            r = self_test(&client, &registration, &registration_path) => r,
            () = shutdown.cancelled() => Ok(SelfTestReport { versions: Vec::new(), ping: None }),
        };
        let report = checked.map_err(RunError::SelfTest)?;
        tracing::info!(versions = ?report.versions.last(), ping = ?report.ping, "homeserver checks passed");
        if let Some(encryption) = &encryption {
            encryption.publish().await?;
        }
        if !config.appservice.bot_displayname.is_empty()
            && let Err(e) = client
                .ensure_profile(&bot_user, Some(&config.appservice.bot_displayname), None)
                .await
        {
            tracing::warn!(error = %e, "cannot set the bot's display name");
        }
        host.start_plugins().await.map_err(RunError::Plugin)?;
        ready.set(true);
        tracing::info!("Switchboard is running");
        shutdown.cancelled().await;
        tracing::info!("shutting down: finishing requests and events in flight");
        Ok(())
    };
    // A lost lease stops Switchboard whatever it is doing, start-up included.
    let result = tokio::select! {
        result = serving => result,
        () = lease_lost.cancelled() => Err(RunError::LeaseLost),
    };
    ready.set(false);
    // Stop accepting transactions first (requests in flight are stored and acknowledged),
    // then let every room finish the event in hand.
    http_shutdown.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!(error = %e, "appservice listener stopped with an error");
    }
    inbox_shutdown.cancel();
    inbox_tasks.finish().await;
    plugin_shutdown.cancel();
    plugin_tasks.close();
    if tokio::time::timeout(PLUGIN_STOP_TIMEOUT, plugin_tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = plugin_tasks.len(),
            "plug-in tasks still running after {PLUGIN_STOP_TIMEOUT:?}; closing the database anyway"
        );
    }
    if let Err(e) = host.settle().await {
        tracing::error!(error = %e, "cannot store the last message-map entries; their messages may be bridged again after the restart");
    }
    if let Some(m) = metrics_server {
        shutdown.cancel();
        let _ = m.await;
    }
    store.close().await;
    lease_shutdown.cancel();
    let _ = lease_task.await;
    tracing::info!("stopped");
    result
}
