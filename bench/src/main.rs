//! `switchboard-bench`: plays the homeserver against a real Switchboard process and measures
//! end-to-end throughput, latency, Switchboard's CPU time per message and its memory, with one
//! of three workloads: the echo bot (the default), or the MQTT bridge on a real Mosquitto in
//! either direction (`mqtt-in`: MQTT → Matrix, `mqtt-out`: Matrix → MQTT).
//!
//! See `bench/README.md`.

mod homeserver;
mod ids;
mod load;
mod machine;
mod mosquitto;
mod mqtt;
mod procfs;
mod report;
mod run;
mod switchboard;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

use crate::mqtt::Pace;
use crate::report::Table;
use crate::run::{Database, Options, SqliteSync};
use crate::workload::Workload;
use switchboard_testing::postgres::Postgres;

/// Measures Switchboard end to end against an in-process fake homeserver.
///
/// Without a subcommand, the echo bot: starts `switchboard run` with a fresh config and
/// database, pushes transactions of `ping <N>` messages one at a time (each after the previous
/// was acknowledged), and waits for every `pong <N>` reply. `mqtt-in` and `mqtt-out` measure
/// the MQTT bridge through a real Mosquitto instead. Prints a table per run and, last, one
/// `RESULT {json}` line.
#[derive(Debug, Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The workload (default: echo).
    #[command(subcommand)]
    workload: Option<Command>,
    /// The echo workload's options, when no subcommand is given.
    #[command(flatten)]
    echo: EchoArgs,
}

/// The workloads.
#[derive(Debug, Subcommand)]
enum Command {
    /// The echo bot answers `ping <N>` with `pong <N>` (the default).
    Echo(EchoArgs),
    /// MQTT → Matrix: the bench publishes `in <N>` (QoS 1 by default) to `bench/dev<k>/in`; the bridge's
    /// device puppets send them to the fake homeserver.
    MqttIn(MqttInArgs),
    /// Matrix → MQTT: the bench pushes `out <N>` room messages into the bridge's portal room;
    /// the bridge publishes them to `bench/out`, where the bench subscribes.
    MqttOut(MqttOutArgs),
}

/// Options of every workload.
#[derive(Debug, Args)]
struct Common {
    /// The switchboard binary [default: target/release/switchboard in the workspace].
    #[arg(long, value_name = "PATH")]
    switchboard: Option<PathBuf>,
    /// Switchboard's database: a fresh SQLite file per run, or a fresh database per run in a
    /// private PostgreSQL cluster the bench starts (Debian package postgresql; PostgreSQL's
    /// own durability settings).
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    database: Database,
    /// `database.sqlite_synchronous` of Switchboard (SQLite only).
    #[arg(long, value_enum, default_value_t = SqliteSync::Normal)]
    sqlite_sync: SqliteSync,
    /// `inbox.high_water_mark` of Switchboard (default: Switchboard's own default).
    #[arg(long, value_name = "N")]
    high_water_mark: Option<u64>,
    /// Keep each run's temporary directory (config, registration, database, logs), with
    /// `latencies.tsv`: when each measured message was sent and answered.
    #[arg(long)]
    keep_dir: bool,
    /// Switchboard's `logging.filter` (e.g. `info,switchboard_bridge_mqtt=debug` to see what
    /// the bridge does; more logging costs CPU).
    #[arg(long, default_value = "warn", value_name = "FILTER")]
    log_filter: String,
    /// Threads of the bench itself (fake homeserver and load). 1: a current-thread runtime,
    /// which leaves the most CPU to Switchboard on a small machine.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Runs of the whole measurement (fresh directory each); the medians are printed at the end.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
}

/// Options of the MQTT workloads' broker.
#[derive(Debug, Args)]
struct BrokerArgs {
    /// Mosquitto's `max_inflight_messages`: QoS 1 messages it sends each client (the bridge,
    /// the bench) before that client acknowledged them.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    broker_inflight: u16,
}

/// Options of the echo workload.
#[derive(Debug, Args)]
struct EchoArgs {
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
    #[command(flatten)]
    common: Common,
}

/// Options of `mqtt-in`.
#[derive(Debug, Args)]
struct MqttInArgs {
    /// Measured messages per run.
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Devices the messages are spread over (round-robin): topics `bench/dev<k>/in`.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
    /// Rooms (one mapping each) the devices are spread over: device `k` is in room
    /// `k mod N`. At most `--devices`.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rooms: u64,
    /// Publishes the broker has not acknowledged yet, at most.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_535))]
    in_flight: u32,
    /// Publishes per second (default: as fast as the windows allow).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Messages published and not yet arrived at the homeserver, at most; 0: no limit (only
    /// `--in-flight`, so at saturation a backlog builds up at the broker and the latency is
    /// mostly waiting in it). A few keep the bridge busy without a backlog.
    #[arg(long, default_value_t = 0, value_name = "N")]
    window: u64,
    /// QoS of the bench's publishes; the bridge receives them at this QoS (its subscription
    /// is QoS 1), so 0 spares it the acknowledgements.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Warm-up messages published (and arrived) before the measurement; not measured.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    warmup: u64,
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    common: Common,
}

/// Options of `mqtt-out`.
#[derive(Debug, Args)]
struct MqttOutArgs {
    /// Measured messages per run.
    #[arg(long, default_value_t = 20_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Events per transaction.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Matrix users the messages are spread over (round-robin): `@user<k>:bench.local`.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Messages per second (default: each transaction as soon as the previous one was
    /// acknowledged).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Warm-up messages sent (and arrived) before the measurement; not measured.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    warmup: u64,
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    common: Common,
}

/// A workload with its options, as the bench runs it.
struct Plan {
    workload: Workload,
    events: u64,
    warmup: u64,
    common: Common,
}

impl Cli {
    /// The workload to run, from the subcommand (none: echo).
    fn plan(self) -> Plan {
        let echo = |a: EchoArgs| Plan {
            workload: Workload::Echo {
                batch: a.batch,
                rooms: a.rooms,
            },
            events: a.events,
            warmup: a.warmup,
            common: a.common,
        };
        match self.workload {
            None => echo(self.echo),
            Some(Command::Echo(a)) => echo(a),
            Some(Command::MqttIn(a)) => Plan {
                workload: Workload::MqttIn {
                    devices: a.devices,
                    rooms: a.rooms.min(a.devices),
                    in_flight: a.in_flight,
                    pace: Pace {
                        window: (a.window > 0).then_some(a.window),
                        rate: a.rate,
                        qos: a.qos,
                    },
                    broker_inflight: a.broker.broker_inflight,
                },
                events: a.events,
                warmup: a.warmup,
                common: a.common,
            },
            Some(Command::MqttOut(a)) => Plan {
                workload: Workload::MqttOut {
                    batch: a.batch,
                    users: a.users,
                    rate: a.rate,
                    broker_inflight: a.broker.broker_inflight,
                },
                events: a.events,
                warmup: a.warmup,
                common: a.common,
            },
        }
    }
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

/// The progress line and the `RESULT` settings of a workload.
fn describe(opts: &Options, threads: u64, repeat: u64) -> (String, Map<String, Value>) {
    let mut settings = Map::new();
    let mut set = |key: &str, value: Value| settings.insert(key.to_owned(), value);
    let line = match opts.workload {
        Workload::Echo { batch, rooms } => {
            set("batch", Value::from(batch));
            set("rooms", Value::from(rooms));
            format!(
                "{} events, {batch} per transaction, {rooms} rooms, {} warm-up",
                opts.events, opts.warmup
            )
        }
        Workload::MqttIn {
            devices,
            rooms,
            in_flight,
            pace,
            broker_inflight,
        } => {
            set("broker_inflight", Value::from(broker_inflight));
            set("workload", Value::from(opts.workload.name()));
            set("devices", Value::from(devices));
            set("rooms", Value::from(rooms));
            set("in_flight", Value::from(in_flight));
            set("window", pace.window.map_or(Value::Null, Value::from));
            set("rate", pace.rate.map_or(Value::Null, Value::from));
            set("qos", Value::from(pace.qos));
            let rate = limit_text(pace.rate, "/s");
            let window = limit_text(pace.window, "");
            format!(
                "mqtt-in: {} messages at QoS {}, {devices} devices in {rooms} room(s), {in_flight} in flight, \
                 window {window}, rate {rate}, {} warm-up",
                opts.events, pace.qos, opts.warmup
            )
        }
        Workload::MqttOut {
            batch,
            users,
            rate,
            broker_inflight,
        } => {
            set("broker_inflight", Value::from(broker_inflight));
            set("workload", Value::from(opts.workload.name()));
            set("batch", Value::from(batch));
            set("users", Value::from(users));
            set("rate", rate.map_or(Value::Null, Value::from));
            let rate = limit_text(rate, "/s");
            format!(
                "mqtt-out: {} messages, {batch} per transaction, {users} users, rate {rate}, \
                 {} warm-up",
                opts.events, opts.warmup
            )
        }
    };
    set("warmup", Value::from(opts.warmup));
    set("bench_threads", Value::from(threads));
    let database = match opts.database {
        Database::Sqlite => {
            set("sqlite_sync", Value::from(opts.sqlite_sync.as_str()));
            format!("sqlite {}", opts.sqlite_sync.as_str())
        }
        Database::Postgres => "postgresql".to_owned(),
    };
    set("database", Value::from(database.as_str()));
    if let Some(mark) = opts.high_water_mark {
        set("high_water_mark", Value::from(mark));
    }
    if opts.log_filter != "warn" {
        set("log_filter", Value::from(opts.log_filter.as_str()));
    }
    let line = format!(
        "switchboard-bench: {} ({line}, {database}, {repeat} run(s))",
        opts.switchboard.display(),
    );
    (line, settings)
}

async fn bench(plan: Plan) -> Result<()> {
    let common = plan.common;
    let opts = Options {
        switchboard: find_switchboard(common.switchboard)?,
        workload: plan.workload,
        events: plan.events,
        warmup: plan.warmup,
        database: common.database,
        sqlite_sync: common.sqlite_sync,
        high_water_mark: common.high_water_mark,
        keep_dir: common.keep_dir,
        log_filter: common.log_filter,
        clock_ticks: procfs::clock_ticks_per_second(),
    };
    let table = match opts.workload {
        Workload::Echo { .. } => Table::Echo,
        Workload::MqttIn { .. } => Table::MqttIn,
        Workload::MqttOut { .. } => Table::MqttOut,
    };
    let (line, mut settings) = describe(&opts, common.threads, common.repeat);
    eprintln!("{line}");
    settings.insert(
        "machine_before".to_owned(),
        probe_machine("before the runs"),
    );
    let postgres = match opts.database {
        Database::Postgres => Some(
            Postgres::start_durable()
                .await
                .context("cannot start the PostgreSQL cluster")?,
        ),
        Database::Sqlite => None,
    };
    let runs = usize::try_from(common.repeat)?;
    let mut results = Vec::with_capacity(runs);
    for i in 1..=runs {
        eprintln!("run {i}/{runs}");
        let figures = run::run_once(&opts, postgres.as_ref(), i)
            .await
            .with_context(|| format!("run {i}/{runs} failed"))?;
        report::print_run(table, i, runs, &figures);
        results.push(figures);
    }
    settings.insert("machine_after".to_owned(), probe_machine("after the runs"));
    report::print_summary(table, &results, settings);
    Ok(())
}

/// Probes the machine's current speed (see `machine`), prints it, and returns it for the
/// `RESULT` line (`null` if the probe could not run, which does not stop the bench).
fn probe_machine(when: &str) -> Value {
    match machine::probe() {
        Ok(speed) => {
            eprintln!("machine {when}: {speed}");
            serde_json::to_value(speed).unwrap_or(Value::Null)
        }
        Err(e) => {
            eprintln!("machine {when}: probe failed: {e:#}");
            Value::Null
        }
    }
}

fn main() -> ExitCode {
    let plan = Cli::parse().plan();
    let threads = plan.common.threads;
    let built = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::try_from(threads).unwrap_or(1))
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
    match runtime.block_on(bench(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// An optional limit for the run's description: `unlimited`, or the value and its unit.
fn limit_text(limit: Option<u64>, unit: &str) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |v| format!("{v}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn without_a_subcommand_the_echo_bot_is_measured() {
        let plan = Cli::try_parse_from(["switchboard-bench", "--repeat", "5"])
            .expect("parses")
            .plan();
        assert!(matches!(
            plan.workload,
            Workload::Echo {
                batch: 50,
                rooms: 10
            }
        ));
        assert_eq!((plan.events, plan.common.repeat), (100_000, 5));
    }

    #[test]
    fn mqtt_workloads_take_their_own_options() {
        let plan = Cli::try_parse_from([
            "switchboard-bench",
            "mqtt-in",
            "--events",
            "20000",
            "--rate",
            "300",
            "--repeat",
            "3",
        ])
        .expect("parses")
        .plan();
        let Workload::MqttIn { pace, devices, .. } = plan.workload else {
            panic!("not mqtt-in: {:?}", plan.workload);
        };
        assert_eq!((pace.rate, pace.window, pace.qos), (Some(300), None, 1));
        assert_eq!((devices, plan.events, plan.common.repeat), (10, 20_000, 3));
        let out = Cli::try_parse_from(["switchboard-bench", "mqtt-out", "--batch", "1"])
            .expect("parses")
            .plan();
        assert!(matches!(
            out.workload,
            Workload::MqttOut {
                batch: 1,
                users: 10,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["switchboard-bench", "--rate", "5"]).is_err());
    }
}
