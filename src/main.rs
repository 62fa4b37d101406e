//! The `switchboard` command: run, generate-registration, doctor, demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard::plugins;
use switchboard_registration::Registration;
use switchboard_runtime::config::Config;
use switchboard_runtime::runtime::{self, RunError};
use switchboard_runtime::{CancellationToken, telemetry};

/// A Matrix application-service host: bridges and bots behind one crash-safe runtime.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Switchboard until SIGTERM or SIGINT.
    Run {
        /// The config file.
        #[arg(short, long, env = "SWITCHBOARD_CONFIG", default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Write (or update) the registration file the homeserver needs; keeps existing tokens.
    GenerateRegistration {
        /// The config file.
        #[arg(short, long, env = "SWITCHBOARD_CONFIG", default_value = "config.yaml")]
        config: PathBuf,
        /// Also write (or update, keeping its tokens) the registration of a double-puppeting
        /// appservice for homeserver.server_name to this file; give it to the homeserver too.
        #[arg(long, value_name = "FILE")]
        double_puppet: Option<PathBuf>,
    },
    /// Check the config, registration, database and homeserver, and explain what is wrong.
    Doctor {
        /// The config file.
        #[arg(short, long, env = "SWITCHBOARD_CONFIG", default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Run a demo on this machine: a local Synapse, Switchboard with the echo bot, and a user
    /// who sends `ping hello`.
    Demo {
        /// Where the demo keeps Switchboard's config, registration and database while it runs
        /// (Synapse itself is installed under .cache/ and runs in a temporary directory).
        #[arg(long, default_value = ".cache/demo")]
        dir: PathBuf,
        /// Stop after the first pong instead of staying up.
        #[arg(long)]
        once: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => {
            // The config says how many threads the runtime gets, so it is read first.
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let threads = config.runtime.worker_threads;
            on_runtime(threads, run(config))
        }
        Command::GenerateRegistration {
            config,
            double_puppet,
        } => report(generate_registration(&config, double_puppet.as_deref())),
        Command::Doctor { config } => on_runtime(1, doctor(&config)),
        Command::Demo { dir, once } => on_runtime(1, async move {
            report(switchboard::demo::run(&dir, once).await)
        }),
    }
}

/// Runs `work` to completion on a runtime with `worker_threads` threads.
fn on_runtime(worker_threads: usize, work: impl Future<Output = ExitCode>) -> ExitCode {
    match build_runtime(worker_threads) {
        Ok(runtime) => runtime.block_on(work),
        Err(code) => code,
    }
}

/// One thread: a current-thread runtime (no hand-offs between workers); more: a
/// multi-thread runtime with that many workers.
fn build_runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    let built = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .enable_all()
            .build()
    };
    built.map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and those of its causes whose text it does not already contain.
fn explain(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

async fn run(config: Config) -> ExitCode {
    telemetry::init(&config.logging);
    let plugins = match plugins::enabled_plugins(&config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match runtime::run(config, plugins, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}

fn generate_registration(config_path: &Path, double_puppet: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let plugins = plugins::enabled_plugins(&config)?;
    let path = &config.appservice.registration;
    let existing = if path.exists() {
        Some(Registration::load(path).context("the existing registration cannot be updated")?)
    } else {
        None
    };
    let registration = Registration::generate(
        &runtime::registration_spec(&config, &plugins),
        existing.as_ref(),
    );
    registration.save(path)?;
    println!(
        "{} {}\n  bot user: @{}:{}\n  give this file to your homeserver (Synapse: app_service_config_files) and restart it",
        if existing.is_some() {
            "updated (tokens kept)"
        } else {
            "wrote"
        },
        path.display(),
        registration.sender_localpart,
        config.homeserver.server_name,
    );
    if let Some(path) = double_puppet {
        let existing = if path.exists() {
            Some(
                Registration::load(path)
                    .context("the existing double-puppet registration cannot be updated")?,
            )
        } else {
            None
        };
        let server = &config.homeserver.server_name;
        Registration::double_puppet(server, existing.as_ref()).save(path)?;
        println!(
            "{} {}\n  give this file to your homeserver too, and add to the config:\n  \
             double_puppet:\n    {server}: \"as_token:<the as_token in that file>\"",
            if existing.is_some() {
                "updated (tokens kept)"
            } else {
                "wrote"
            },
            path.display(),
        );
    }
    Ok(())
}

async fn doctor(config_path: &Path) -> ExitCode {
    let result = switchboard::doctor::run(config_path).await;
    match result {
        Ok(()) => {
            println!("all checks passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = e.downcast_ref::<RunError>().map_or(1, RunError::exit_code);
            eprintln!("error: {}", explain(&e));
            ExitCode::from(code)
        }
    }
}
