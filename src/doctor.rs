//! `switchboard doctor`: the start-up checks on demand, each explained in plain language.

use std::path::Path;

use switchboard_runtime::client::HomeserverClient;
use switchboard_runtime::config::Config;
use switchboard_runtime::doctor::{self, Severity};
use switchboard_runtime::runtime::{self, RunError};
use switchboard_runtime::store::Store;
use switchboard_runtime::{CancellationToken, appservice};

fn ok(what: &str) {
    println!("ok    {what}");
}

/// Runs every check, printing one line per finding; fails if any check failed.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    ok(&format!("config {} is valid", config_path.display()));
    let plugins = crate::plugins::enabled_plugins(&config)?;
    let names: Vec<String> = plugins
        .bots
        .iter()
        .map(|b| b.id().to_owned())
        .chain(plugins.bridges.iter().map(|b| b.info().id))
        .collect();
    ok(&format!("plug-ins enabled: {}", names.join(", ")));
    let registration = runtime::load_registration(&config, &plugins).map_err(RunError::from)?;
    let registration_path = config.appservice.registration.display().to_string();
    let mut findings = doctor::registration(
        &registration,
        &runtime::registration_spec(&config, &plugins),
        &registration_path,
    );
    let store = Store::connect(
        &config.database_url(),
        config.database.max_connections,
        config.database.sqlite_synchronous,
    )
    .await
    .map_err(RunError::from)?;
    findings.extend(doctor::database(&store).await);
    let bot = runtime::bot_user_id(&config, &registration)?;
    let client = HomeserverClient::new(
        &config.homeserver.url,
        &registration.as_token,
        bot,
        config.client.clone(),
        switchboard_runtime::client::ClientMetrics::default(),
        std::sync::Arc::new(store.clone()),
    )?;
    // Answer the homeserver's ping ourselves unless a running Switchboard already listens.
    let stop = CancellationToken::new();
    match tokio::net::TcpListener::bind(config.appservice.listen).await {
        Ok(listener) => {
            let app = appservice::ping_router(&registration.hs_token);
            tokio::spawn(appservice::serve(listener, app, stop.clone()));
        }
        Err(_) => ok(&format!(
            "{} is in use (a running Switchboard?): the ping will go to it",
            config.appservice.listen
        )),
    }
    findings.extend(doctor::homeserver(&client, &registration, &registration_path).await);
    stop.cancel();
    store.close().await;
    let mut failed = 0;
    for finding in &findings {
        println!("{:<5} {}", finding.severity, finding.text);
        if finding.severity == Severity::Fail {
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}
