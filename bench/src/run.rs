//! One measurement: a fresh directory, config and registration, the broker (MQTT workloads),
//! the fake homeserver, Switchboard, warm-up, the measured run, and a graceful stop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use switchboard_testing::postgres::Postgres;

use crate::homeserver::{FakeHomeserver, HomeserverSetup, HsState};
use crate::load::Sent;
use crate::mosquitto::{self, Mosquitto};
use crate::procfs::{self, Pid};
use crate::report::Figures;
use crate::switchboard::{self, Switchboard};
use crate::switchboard::{SERVER_NAME, metric_sum, metrics_text};
use crate::workload::{Driver, Target, Workload};

/// How long Switchboard may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long, after the last transaction was acknowledged, replies may take to arrive.
const ANSWER_TIMEOUT: Duration = Duration::from_mins(2);
/// MQTT workloads: how long the bench waits for the next arrival before it takes the bridge
/// for stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Settling time between readiness and the idle RSS reading.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

/// `database.sqlite_synchronous`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SqliteSync {
    /// Survives a crash of Switchboard, not a power loss.
    Normal,
    /// fsync on every commit.
    Full,
}

impl SqliteSync {
    /// The config value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SqliteSync::Normal => "normal",
            SqliteSync::Full => "full",
        }
    }
}

/// Where Switchboard keeps its state (`database`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Database {
    /// A fresh SQLite file in each run's directory (Switchboard's default).
    Sqlite,
    /// A fresh database per run in a private PostgreSQL cluster the bench starts (with
    /// PostgreSQL's own durability settings: every commit flushed).
    Postgres,
}

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The `switchboard` binary.
    pub(crate) switchboard: PathBuf,
    /// The workload and its settings.
    pub(crate) workload: Workload,
    /// Measured events.
    pub(crate) events: u64,
    /// Warm-up events (not measured).
    pub(crate) warmup: u64,
    /// The database backend.
    pub(crate) database: Database,
    /// `SQLite` durability.
    pub(crate) sqlite_sync: SqliteSync,
    /// `inbox.high_water_mark`, when not Switchboard's default.
    pub(crate) high_water_mark: Option<u64>,
    /// Keep the temporary directory.
    pub(crate) keep_dir: bool,
    /// Switchboard's `logging.filter`.
    pub(crate) log_filter: String,
    /// Clock ticks per second of `/proc/<pid>/stat`.
    pub(crate) clock_ticks: u64,
}

/// A free loopback port (bound, then released; the small race is acceptable here).
fn free_port(taken: &[u16]) -> Result<u16> {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot bind a loopback port")?
            .local_addr()?
            .port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    bail!("cannot find a free loopback port")
}

fn write_config(
    dir: &Path,
    hs_url: &str,
    ports: &Ports,
    broker: Option<&str>,
    database_url: Option<&str>,
    opts: &Options,
) -> Result<()> {
    let (as_port, metrics_port) = (ports.appservice, ports.metrics);
    let database = match database_url {
        Some(url) => format!("url: {url}"),
        None => format!("sqlite_synchronous: {}", opts.sqlite_sync.as_str()),
    };
    let bot = opts.workload.bot_localpart();
    let displayname = if opts.workload.is_mqtt() {
        "Bridge bot"
    } else {
        "Echo bot"
    };
    let mut config = format!(
        "# Written by switchboard-bench.
homeserver:
  url: {hs_url}
  server_name: {SERVER_NAME}
appservice:
  id: switchboard
  listen: 127.0.0.1:{as_port}
  url: http://127.0.0.1:{as_port}
  registration: registration.yaml
  bot_localpart: {bot}
  bot_displayname: {displayname}
database:
  {database}
data_dir: data
metrics:
  enabled: true
  listen: 127.0.0.1:{metrics_port}
logging:
  format: pretty
  filter: {filter}
{plugins}",
        filter = opts.log_filter,
        plugins = opts.workload.config_section(broker),
    );
    if let Some(mark) = opts.high_water_mark {
        let _ = write!(config, "inbox:\n  high_water_mark: {mark}\n");
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))
}

/// The loopback ports of a run.
struct Ports {
    hs: u16,
    appservice: u16,
    metrics: u16,
    broker: u16,
}

/// Runs measurement number `run` in a fresh temporary directory (and, on `postgres`, a fresh
/// database).
pub(crate) async fn run_once(
    opts: &Options,
    postgres: Option<&Postgres>,
    run: usize,
) -> Result<Figures> {
    let temp = tempfile::Builder::new()
        .prefix("switchboard-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = temp.path().to_owned();
    // Dropped at the end (or on an error path): removes the directory unless kept.
    let _cleanup = if opts.keep_dir {
        eprintln!("  directory (kept): {}", temp.keep().display());
        None
    } else {
        eprintln!("  directory: {}", dir.display());
        Some(temp)
    };

    let hs_listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the fake homeserver")?;
    let hs = hs_listener.local_addr()?.port();
    let appservice = free_port(&[hs])?;
    let metrics = free_port(&[hs, appservice])?;
    let ports = Ports {
        hs,
        appservice,
        metrics,
        broker: free_port(&[hs, appservice, metrics])?,
    };
    let mut broker = match opts.workload.broker_max_inflight() {
        Some(max_inflight) => Some(Mosquitto::start(&dir, ports.broker, max_inflight).await?),
        None => None,
    };
    let hs_url = format!("http://127.0.0.1:{}", ports.hs);
    let broker_url = broker.as_ref().map(Mosquitto::url);
    let database_url = match postgres {
        Some(pg) => Some(pg.create_database(&format!("bench_run{run}")).await?),
        None => None,
    };
    write_config(
        &dir,
        &hs_url,
        &ports,
        broker_url.as_deref(),
        database_url.as_deref(),
        opts,
    )?;

    let (state, as_url, hs_token) = setup_homeserver(opts, &dir, ports.appservice).await?;
    let _homeserver = FakeHomeserver::start(hs_listener, Arc::clone(&state))?;

    let mut sb = Switchboard::start(&opts.switchboard, &dir)?;
    let target = Target {
        as_url: &as_url,
        hs_token: &hs_token,
        metrics_port: ports.metrics,
        broker_port: broker.as_ref().map(Mosquitto::port),
    };
    let database_pid = postgres.map(Postgres::server_pid).transpose()?;
    let measured = measure(
        opts,
        &mut sb,
        broker.as_mut(),
        database_pid,
        &state,
        &target,
    )
    .await;
    if opts.keep_dir
        && measured.is_ok()
        && let Err(e) = write_latency_log(&dir.join("latencies.tsv"), opts, &state)
    {
        eprintln!("  {e:#}");
    }
    let stopped = sb.stop().await;
    let broker_stopped = match broker.as_mut() {
        Some(b) => b.stop().await,
        None => None,
    };
    let mut figures = match measured {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "  Switchboard's log ({}) ends with:\n{}",
                sb.log_path().display(),
                indent(&sb.log_tail())
            );
            return Err(e);
        }
    };
    figures.problems.extend(broker_stopped);
    if let Some(b) = &broker {
        note_warnings(
            &mut figures,
            "Mosquitto's",
            &mosquitto::warnings(&b.log_text()),
        );
    }
    check_stop(&mut figures, &stopped?, &sb);
    Ok(figures)
}

/// Generates the registration and the fake homeserver's state; the state, Switchboard's
/// appservice URL and the `hs_token`.
async fn setup_homeserver(
    opts: &Options,
    dir: &Path,
    as_port: u16,
) -> Result<(Arc<HsState>, String, String)> {
    let registration = switchboard::generate_registration(&opts.switchboard, dir).await?;
    let bot = opts.workload.bot_localpart();
    if registration.sender_localpart != bot {
        bail!(
            "the registration's sender_localpart is {:?}, the config says {bot:?}",
            registration.sender_localpart
        );
    }
    let as_url = registration
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{as_port}"));
    let state = Arc::new(HsState::new(HomeserverSetup {
        as_token: registration.as_token.clone(),
        hs_token: registration.hs_token.clone(),
        appservice_id: registration.id.clone(),
        bot_user_id: format!("@{}:{SERVER_NAME}", registration.sender_localpart),
        as_url: as_url.clone(),
        total_events: opts.warmup + opts.events,
        warmup: opts.warmup,
        sends: opts.workload.sends(),
    })?);
    Ok((state, as_url, registration.hs_token))
}

/// Notes how Switchboard stopped and the warnings in its log.
fn check_stop(figures: &mut Figures, stopped: &switchboard::Stopped, sb: &Switchboard) {
    eprintln!(
        "  stopped in {} ms ({})",
        stopped.took.as_millis(),
        stopped.status
    );
    if stopped.killed {
        figures
            .problems
            .push("Switchboard did not stop within 15 s of SIGTERM and was killed".to_owned());
    } else if !stopped.status.success() {
        figures.problems.push(format!(
            "Switchboard exited with {} after SIGTERM",
            stopped.status
        ));
    }
    let log = sb.log_text();
    let warnings = switchboard::warnings(&log);
    figures.log_warnings = warnings.len() as u64;
    note_warnings(figures, "Switchboard's", &warnings);
}

/// Notes the first warning lines of a log (`whose`: "Switchboard's") in the problems.
fn note_warnings(figures: &mut Figures, whose: &str, warnings: &[&str]) {
    if warnings.is_empty() {
        return;
    }
    let mut text = format!(
        "{} warning/error lines in {whose} log, first ones:",
        warnings.len()
    );
    for line in warnings.iter().take(5) {
        let _ = write!(text, "\n      {}", line.trim());
    }
    figures.problems.push(text);
}

/// CPU time (clock ticks) of the processes at one moment.
struct Cpu {
    switchboard: u64,
    bench: u64,
    broker: u64,
    database: u64,
}

impl Cpu {
    /// Reads Switchboard's, the bench's, the broker's and the PostgreSQL server's (with its
    /// backends) CPU time now.
    fn read(sb: Pid, broker: Option<Pid>, database: Option<u32>) -> Result<Self> {
        Ok(Self {
            switchboard: procfs::cpu_ticks(sb)?,
            bench: procfs::cpu_ticks(Pid::OurSelf)?,
            broker: broker.map(procfs::cpu_ticks).transpose()?.unwrap_or(0),
            database: database
                .map(procfs::tree_cpu_ticks)
                .transpose()?
                .unwrap_or(0),
        })
    }
}

/// Everything between start and stop.
async fn measure(
    opts: &Options,
    sb: &mut Switchboard,
    broker: Option<&mut Mosquitto>,
    database_pid: Option<u32>,
    state: &Arc<HsState>,
    target: &Target<'_>,
) -> Result<Figures> {
    let ready_in = sb.wait_ready(target.metrics_port, READY_TIMEOUT).await?;
    let pid = Pid::Id(sb.pid());
    tokio::time::sleep(IDLE_SETTLE).await;
    sb.check_alive()?;
    let idle_rss_kb = procfs::status_kb(pid, "VmRSS")?;
    eprintln!(
        "  ready in {} ms, idle RSS {:.1} MB",
        ready_in.as_millis(),
        kb_to_mb(idle_rss_kb)
    );

    let mut driver = Driver::start(opts.workload, state, target, sb).await?;
    let warm_up_problem = warm_up(opts, &mut driver, state, sb).await?;

    let broker_pid = broker.as_ref().map(|b| Pid::Id(b.pid()));
    let total = opts.warmup + opts.events;
    let before = Cpu::read(pid, broker_pid, database_pid)?;
    let retries_before = driver.retries();
    let sent = driver
        .send(opts.warmup, total, sb)
        .await
        .context("measured run")?;
    let stall = opts.workload.is_mqtt().then_some(STALL_TIMEOUT);
    let (answered, stalled) =
        wait_answered(&state.counters.answered_measured, opts.events, stall, sb).await?;
    let after = Cpu::read(pid, broker_pid, database_pid)?;
    let peak_rss_kb = procfs::status_kb(pid, "VmHWM")?;
    if let Some(b) = broker {
        b.check_alive()?;
    }

    let mut figures = figures_of(opts, state, &sent, &before, &after);
    if stalled {
        figures.problems.push(format!(
            "no message arrived during the last {} s: the bridge stalled (see \"Known problem\" \
             in bench/README.md)",
            STALL_TIMEOUT.as_secs()
        ));
    }
    figures.idle_rss_mb = kb_to_mb(idle_rss_kb);
    figures.peak_rss_mb = kb_to_mb(peak_rss_kb);
    figures.txn_retries = driver.retries() - retries_before;
    figures.problems.extend(warm_up_problem);
    figures.problems.extend(driver.problems());
    let (noun, verb) = nouns(opts.workload);
    eprintln!(
        "  measured: {answered}/{} {noun} {verb}, {:.0} {noun}/s",
        opts.events, figures.events_per_s
    );
    check_counters(opts.workload, state, &mut figures);
    check_metrics(target.metrics_port, &mut figures).await;
    Ok(figures)
}

/// Writes one line per measured message to `path` (kept with `--keep-dir`), to see when the
/// slow ones happened: its number, when it was sent and answered (ms since the first measured
/// send) and its latency (ms).
fn write_latency_log(path: &Path, opts: &Options, state: &HsState) -> Result<()> {
    let total = opts.warmup + opts.events;
    let times: Vec<(u64, u64, u64)> = (opts.warmup..total)
        .filter_map(|n| state.sent_and_replied(n).map(|(s, r)| (n, s, r)))
        .collect();
    let start = times.iter().map(|&(_, sent, _)| sent).min().unwrap_or(0);
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut text = String::from("message\tsent_ms\tanswered_ms\tlatency_ms\n");
    for (n, sent, replied) in times {
        let _ = writeln!(
            text,
            "{n}\t{:.3}\t{:.3}\t{:.3}",
            ms(sent - start),
            ms(replied.saturating_sub(start)),
            ms(replied.saturating_sub(sent))
        );
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The figures of the measured run from the per-message tables, the counters and the CPU
/// readings (RSS, retries and problems are filled in by the caller).
fn figures_of(opts: &Options, state: &HsState, sent: &Sent, before: &Cpu, after: &Cpu) -> Figures {
    let total = opts.warmup + opts.events;
    let mut latencies = Vec::with_capacity(usize::try_from(opts.events).unwrap_or(0));
    let mut last_reply = 0;
    for n in opts.warmup..total {
        if let Some((sent_at, replied_at)) = state.sent_and_replied(n) {
            latencies.push(replied_at.saturating_sub(sent_at));
            last_reply = last_reply.max(replied_at);
        }
    }
    latencies.sort_unstable();
    let answered = latencies.len() as u64;
    let wall_ns = last_reply.saturating_sub(sent.first_sent_ns).max(1);
    let ack_ns = sent.last_ack_ns.saturating_sub(sent.first_sent_ns).max(1);
    let cpu_us =
        |ticks: u64| ticks as f64 * 1e6 / opts.clock_ticks as f64 / opts.events.max(1) as f64;
    let c = &state.counters;
    Figures {
        events: opts.events,
        wall_s: wall_ns as f64 / 1e9,
        events_per_s: answered as f64 / (wall_ns as f64 / 1e9),
        txn_acks_per_s: sent.txns as f64 / (ack_ns as f64 / 1e9),
        p50_ms: percentile_ms(&latencies, 500),
        p90_ms: percentile_ms(&latencies, 900),
        p99_ms: percentile_ms(&latencies, 990),
        max_ms: latencies.last().map_or(0.0, |&l| l as f64 / 1e6),
        cpu_us_per_event: cpu_us(after.switchboard.saturating_sub(before.switchboard)),
        bench_cpu_us_per_event: cpu_us(after.bench.saturating_sub(before.bench)),
        broker_cpu_us_per_event: cpu_us(after.broker.saturating_sub(before.broker)),
        database_cpu_us_per_event: cpu_us(after.database.saturating_sub(before.database)),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        missing: opts.events - answered.min(opts.events),
        unexpected: c.unexpected.load(Ordering::Relaxed)
            + c.bad_replies.load(Ordering::Relaxed)
            + c.wrong_bodies.load(Ordering::Relaxed)
            + c.auth_failures.load(Ordering::Relaxed),
        ..Figures::default()
    }
}

/// What the progress output calls the workload's messages, and their arrival.
fn nouns(workload: Workload) -> (&'static str, &'static str) {
    if workload.is_mqtt() {
        ("messages", "arrived")
    } else {
        ("events", "answered")
    }
}

/// Sends the warm-up events and waits until they are answered; a problem, if some were not.
async fn warm_up(
    opts: &Options,
    driver: &mut Driver,
    state: &HsState,
    sb: &mut Switchboard,
) -> Result<Option<String>> {
    if opts.warmup == 0 {
        return Ok(None);
    }
    let started = Instant::now();
    driver.send(0, opts.warmup, sb).await.context("warm-up")?;
    let stall = opts.workload.is_mqtt().then_some(STALL_TIMEOUT);
    let (answered, stalled) =
        wait_answered(&state.counters.answered_warmup, opts.warmup, stall, sb).await?;
    let (noun, verb) = nouns(opts.workload);
    eprintln!(
        "  warm-up: {answered}/{} {noun} {verb} in {:.2} s",
        opts.warmup,
        started.elapsed().as_secs_f64()
    );
    if stalled {
        bail!(
            "warm-up: {} of {} messages did not arrive and none did for {} s: the bridge \
             stalled (see \"Known problem\" in bench/README.md)",
            opts.warmup - answered,
            opts.warmup,
            STALL_TIMEOUT.as_secs()
        );
    }
    Ok((answered < opts.warmup).then(|| {
        format!(
            "{} of {} warm-up {noun} were not {verb} within {} s",
            opts.warmup - answered,
            opts.warmup,
            ANSWER_TIMEOUT.as_secs()
        )
    }))
}

/// Notes in the problems what the fake homeserver's counters show went wrong.
fn check_counters(workload: Workload, state: &HsState, figures: &mut Figures) {
    let c = &state.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut note = |count: u64, what: &str| {
        if count > 0 {
            figures.problems.push(format!("{count} {what}"));
        }
    };
    let (duplicates, missing, bad, wrong) = if workload.is_mqtt() {
        (
            "duplicate messages (a message that arrived more than once)",
            "measured messages that never arrived",
            "messages that are not one of the bench's",
            "messages from the wrong sender, in the wrong room or with the wrong body",
        )
    } else {
        (
            "duplicate replies (an event answered more than once)",
            "measured events without a reply",
            "messages that are not a reply to a bench event",
            "replies whose body is not `pong <N>`",
        )
    };
    note(figures.duplicates, duplicates);
    note(figures.missing, missing);
    note(
        get(&c.unexpected),
        "requests to endpoints the bench does not expect",
    );
    note(
        get(&c.auth_failures),
        "requests with a missing or wrong as_token",
    );
    note(get(&c.bad_replies), bad);
    note(get(&c.wrong_bodies), wrong);
    note(
        get(&c.repeated_txn_ids),
        "sends repeating a transaction id (retries; a homeserver de-duplicates them)",
    );
    note(get(&c.pings_failed), "failed appservice pings");
    note(
        figures.txn_retries,
        "transactions not acknowledged at the first attempt",
    );
    let mut expected = vec![
        (get(&c.versions), "GET /versions"),
        (get(&c.whoami), "GET /whoami"),
        (get(&c.pings_ok), "the appservice ping"),
        (get(&c.profile), "the display-name update"),
    ];
    if workload.is_mqtt() {
        expected.push((get(&c.created_rooms), "createRoom (the portal room)"));
    }
    for (count, call) in expected {
        if count == 0 {
            figures
                .problems
                .push(format!("Switchboard never made {call} at start-up"));
        }
    }
    for sample in state.samples() {
        figures.problems.push(format!("e.g. {sample}"));
    }
}

/// Reads Switchboard's own error counters from `/metrics` and notes any that are not zero.
async fn check_metrics(metrics_port: u16, figures: &mut Figures) {
    let text = match metrics_text(metrics_port).await {
        Ok(t) => t,
        Err(e) => {
            figures
                .problems
                .push(format!("cannot read Switchboard's /metrics: {e}"));
            return;
        }
    };
    for (prefix, what) in [
        (
            "switchboard_events_failed_total",
            "events whose handling failed permanently",
        ),
        (
            "switchboard_handling_retries_total",
            "handling attempts retried",
        ),
        (
            "switchboard_homeserver_retries_total",
            "homeserver requests retried",
        ),
        (
            "switchboard_transactions_total{outcome=\"duplicate\"}",
            "transactions taken for duplicates",
        ),
        (
            "switchboard_transactions_total{outcome=\"rejected\"}",
            "transactions rejected",
        ),
        (
            "switchboard_events_invalid_total",
            "events skipped as invalid",
        ),
        (
            "switchboard_bridge_remote_skipped_total",
            "remote messages skipped by a bridge",
        ),
    ] {
        let total = metric_sum(&text, prefix);
        if total > 0.0 {
            figures
                .problems
                .push(format!("{total} {what} (Switchboard's {prefix})"));
        }
    }
}

/// `text` with every line indented for the progress output.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[allow(clippy::cast_precision_loss)]
fn kb_to_mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Nearest-rank percentile (`per_mille`/1000) of sorted nanosecond values, in ms.
#[allow(clippy::cast_precision_loss)]
fn percentile_ms(sorted_ns: &[u64], per_mille: usize) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (sorted_ns.len() * per_mille).div_ceil(1000).max(1);
    sorted_ns[rank.min(sorted_ns.len()) - 1] as f64 / 1e6
}

/// Waits until `counter` reaches `target`, at most [`ANSWER_TIMEOUT`] — and, with `stall`, at
/// most that long without progress; returns the count and whether it stopped for want of
/// progress.
async fn wait_answered(
    counter: &AtomicU64,
    target: u64,
    stall: Option<Duration>,
    sb: &mut Switchboard,
) -> Result<(u64, bool)> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut checked = Instant::now();
    let mut progress = (counter.load(Ordering::Acquire), Instant::now());
    loop {
        let answered = counter.load(Ordering::Acquire);
        if answered >= target || Instant::now() > deadline {
            return Ok((answered, false));
        }
        if answered != progress.0 {
            progress = (answered, Instant::now());
        } else if stall.is_some_and(|s| progress.1.elapsed() > s) {
            return Ok((answered, true));
        }
        if checked.elapsed() > Duration::from_millis(200) {
            sb.check_alive()?;
            checked = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).map(|v| v * 1_000_000).collect();
        assert!((percentile_ms(&values, 500) - 50.0).abs() < 1e-9);
        assert!((percentile_ms(&values, 990) - 99.0).abs() < 1e-9);
        assert!((percentile_ms(&[7_000_000], 990) - 7.0).abs() < 1e-9);
        assert!(percentile_ms(&[], 500).abs() < 1e-9);
    }
}
