//! `switchboard doctor`: the start-up checks on demand, each explained in plain language.

use std::path::Path;

use switchboard_framework::client::HomeserverClient;
use switchboard_framework::config::Config;
use switchboard_framework::metrics::Metrics;
use switchboard_framework::runtime::{self, RunError};
use switchboard_framework::store::Store;
use switchboard_framework::{CancellationToken, appservice};

fn ok(what: &str) {
    println!("ok    {what}");
}

/// Runs every check, printing one line per check; the first failure ends the run.
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
    let drift = registration.drift(&runtime::registration_spec(&config, &plugins));
    if drift.is_empty() {
        ok(&format!(
            "registration {} matches the config",
            config.appservice.registration.display()
        ));
    } else {
        for d in &drift {
            println!("warn  registration {d}");
        }
        println!("      fix: run `switchboard generate-registration` and restart the homeserver");
    }
    let store = Store::connect(
        &config.database_url(),
        config.database.max_connections,
        config.database.sqlite_synchronous,
    )
    .await
    .map_err(RunError::from)?;
    let pending = store.inbox_depth().await.map_err(RunError::from)?;
    let failed = store.inbox_failed_count().await.map_err(RunError::from)?;
    ok(&format!(
        "database ({}) opens; {pending} events waiting, {failed} failed permanently",
        store.backend()
    ));
    let bot = runtime::bot_user_id(&config, &registration)?;
    let client = HomeserverClient::new(
        &config.homeserver.url,
        &registration.as_token,
        bot,
        config.client.clone(),
        Metrics::new(),
        store.clone(),
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
    let report = runtime::self_test(
        &client,
        &registration,
        &config.appservice.registration.display().to_string(),
    )
    .await
    .map_err(RunError::from);
    stop.cancel();
    store.close().await;
    let report = report?;
    ok(&format!(
        "homeserver {} answers (spec {})",
        config.homeserver.url,
        report.versions.last().map_or("?", String::as_str)
    ));
    ok("the homeserver accepts the as_token and knows the bot");
    match report.ping {
        Some(rtt) => ok(&format!(
            "the homeserver reaches Switchboard at {} ({} ms)",
            registration.url.as_deref().unwrap_or("?"),
            rtt.as_millis()
        )),
        None => {
            println!(
                "warn  the homeserver has no appservice ping; cannot check that it reaches us"
            );
        }
    }
    Ok(())
}
