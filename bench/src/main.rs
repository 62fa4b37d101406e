//! `switchboard-bench`: plays the homeserver against a real Switchboard process running the
//! echo bot, and measures end-to-end throughput, latency (transaction sent → reply received),
//! Switchboard's CPU time per event and its memory.
//!
//! See `bench/README.md`.

mod homeserver;
mod procfs;
mod report;
mod run;
mod switchboard;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Map, Value};

use crate::run::{Options, SqliteSync};

/// Measures Switchboard's echo bot end to end against an in-process fake homeserver.
///
/// Starts `switchboard run` with a fresh config and database, pushes transactions of
/// `ping <N>` messages one at a time (each after the previous was acknowledged), and waits for
/// every `pong <N>` reply. Prints a table per run and, last, one `RESULT {json}` line.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The switchboard binary [default: target/release/switchboard in the workspace].
    #[arg(long, value_name = "PATH")]
    switchboard: Option<PathBuf>,
    /// Measured events per run.
    #[arg(long, default_value_t = 100_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Events per transaction.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Rooms the events are spread over (round-robin).
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rooms: u64,
    /// Warm-up events sent (and answered) before the measurement; not measured.
    #[arg(long, default_value_t = 5_000, value_name = "N")]
    warmup: u64,
    /// `database.sqlite_synchronous` of Switchboard.
    #[arg(long, value_enum, default_value_t = SqliteSync::Normal)]
    sqlite_sync: SqliteSync,
    /// `inbox.high_water_mark` of Switchboard (default: Switchboard's own default).
    #[arg(long, value_name = "N")]
    high_water_mark: Option<u64>,
    /// Keep each run's temporary directory (config, registration, database, log).
    #[arg(long)]
    keep_dir: bool,
    /// Threads of the bench itself (fake homeserver and load). 1: a current-thread runtime,
    /// which leaves the most CPU to Switchboard on a small machine.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Runs of the whole measurement (fresh directory each); the medians are printed at the end.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
}

/// The workspace root (the bench crate lives in `<root>/bench`).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or(manifest.clone(), std::path::Path::to_path_buf)
}

/// The switchboard binary: the option, else `target/release/switchboard` in the workspace,
/// else next to this binary (for a custom target directory).
fn find_switchboard(option: Option<PathBuf>) -> Result<PathBuf> {
    let candidates = if let Some(path) = option {
        vec![path]
    } else {
        let mut c = vec![workspace_root().join("target/release/switchboard")];
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(PathBuf::from))
        {
            c.push(dir.join("switchboard"));
        }
        c
    };
    for candidate in &candidates {
        if candidate.is_file() {
            return std::path::absolute(candidate)
                .with_context(|| format!("cannot make {} absolute", candidate.display()));
        }
    }
    bail!(
        "the switchboard binary is not at {}: build it first with cargo build --release",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(" nor at ")
    )
}

async fn bench(cli: Cli) -> Result<()> {
    let switchboard = find_switchboard(cli.switchboard)?;
    let opts = Options {
        switchboard,
        events: cli.events,
        batch: cli.batch,
        rooms: cli.rooms,
        warmup: cli.warmup,
        sqlite_sync: cli.sqlite_sync,
        high_water_mark: cli.high_water_mark,
        keep_dir: cli.keep_dir,
        clock_ticks: procfs::clock_ticks_per_second(),
    };
    eprintln!(
        "switchboard-bench: {} ({} events, {} per transaction, {} rooms, {} warm-up, sqlite {}, {} run(s))",
        opts.switchboard.display(),
        opts.events,
        opts.batch,
        opts.rooms,
        opts.warmup,
        opts.sqlite_sync.as_str(),
        cli.repeat
    );
    let runs = usize::try_from(cli.repeat)?;
    let mut results = Vec::with_capacity(runs);
    for i in 1..=runs {
        eprintln!("run {i}/{runs}");
        let figures = run::run_once(&opts)
            .await
            .with_context(|| format!("run {i}/{runs} failed"))?;
        report::print_run(i, runs, &figures);
        results.push(figures);
    }
    let mut settings = Map::new();
    settings.insert("batch".to_owned(), Value::from(opts.batch));
    settings.insert("rooms".to_owned(), Value::from(opts.rooms));
    settings.insert("warmup".to_owned(), Value::from(opts.warmup));
    settings.insert("bench_threads".to_owned(), Value::from(cli.threads));
    settings.insert(
        "sqlite_sync".to_owned(),
        Value::from(opts.sqlite_sync.as_str()),
    );
    if let Some(mark) = opts.high_water_mark {
        settings.insert("high_water_mark".to_owned(), Value::from(mark));
    }
    report::print_summary(&results, settings);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let built = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::try_from(cli.threads).unwrap_or(1))
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
