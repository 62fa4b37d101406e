//! One measurement: a fresh directory, config and registration, the fake homeserver,
//! Switchboard, warm-up, the measured run, and a graceful stop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::homeserver::{FakeHomeserver, HomeserverSetup, HsState};
use crate::procfs::{self, Pid};
use crate::report::Figures;
use crate::switchboard::{self, Switchboard};

/// Server name of the fake homeserver.
const SERVER_NAME: &str = "bench.local";
/// Bot localpart written into the config.
const BOT_LOCALPART: &str = "echobot";
/// How long Switchboard may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long, after the last transaction was acknowledged, replies may take to arrive.
const ANSWER_TIMEOUT: Duration = Duration::from_mins(2);
/// Longest the sending of one phase may take (a bound, far above any plausible run).
const SEND_TIMEOUT: Duration = Duration::from_mins(15);
/// Timeout of one transaction request (above Switchboard's 30 s back-pressure wait).
const TXN_TIMEOUT: Duration = Duration::from_mins(1);
/// Consecutive connection failures after which Switchboard is taken for dead.
const MAX_CONNECTION_FAILURES: u32 = 5;
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

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// The `switchboard` binary.
    pub(crate) switchboard: PathBuf,
    /// Measured events.
    pub(crate) events: u64,
    /// Events per transaction.
    pub(crate) batch: u64,
    /// Rooms the events are spread over.
    pub(crate) rooms: u64,
    /// Warm-up events (not measured).
    pub(crate) warmup: u64,
    /// `SQLite` durability.
    pub(crate) sqlite_sync: SqliteSync,
    /// `inbox.high_water_mark`, when not Switchboard's default.
    pub(crate) high_water_mark: Option<u64>,
    /// Keep the temporary directory.
    pub(crate) keep_dir: bool,
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
    as_port: u16,
    metrics_port: u16,
    opts: &Options,
) -> Result<()> {
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
  bot_localpart: {BOT_LOCALPART}
  bot_displayname: Echo bot
database:
  sqlite_synchronous: {sync}
data_dir: data
metrics:
  enabled: true
  listen: 127.0.0.1:{metrics_port}
logging:
  format: pretty
  filter: warn
bots:
  echo:
    enabled: true
",
        sync = opts.sqlite_sync.as_str()
    );
    if let Some(mark) = opts.high_water_mark {
        use std::fmt::Write as _;
        let _ = write!(config, "inbox:\n  high_water_mark: {mark}\n");
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs one measurement in a fresh temporary directory.
pub(crate) async fn run_once(opts: &Options) -> Result<Figures> {
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
    let hs_port = hs_listener.local_addr()?.port();
    let as_port = free_port(&[hs_port])?;
    let metrics_port = free_port(&[hs_port, as_port])?;
    let hs_url = format!("http://127.0.0.1:{hs_port}");
    write_config(&dir, &hs_url, as_port, metrics_port, opts)?;

    let registration = switchboard::generate_registration(&opts.switchboard, &dir).await?;
    if registration.sender_localpart != BOT_LOCALPART {
        bail!(
            "the registration's sender_localpart is {:?}, the config says {BOT_LOCALPART:?}",
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
    })?);
    let _homeserver = FakeHomeserver::start(hs_listener, Arc::clone(&state))?;

    let mut sb = Switchboard::start(&opts.switchboard, &dir)?;
    let measured = measure(
        opts,
        &mut sb,
        &state,
        &as_url,
        &registration.hs_token,
        metrics_port,
    )
    .await;
    let stopped = sb.stop().await;
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

    let stopped = stopped?;
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
    if !warnings.is_empty() {
        let mut text = format!(
            "{} warning/error lines in Switchboard's log, first ones:",
            warnings.len()
        );
        for line in warnings.iter().take(5) {
            let _ = write!(text, "\n      {}", line.trim());
        }
        figures.problems.push(text);
    }
    Ok(figures)
}

/// Everything between start and stop.
async fn measure(
    opts: &Options,
    sb: &mut Switchboard,
    state: &Arc<HsState>,
    as_url: &str,
    hs_token: &str,
    metrics_port: u16,
) -> Result<Figures> {
    let ready_in = sb.wait_ready(metrics_port, READY_TIMEOUT).await?;
    let pid = Pid::Id(sb.pid());
    tokio::time::sleep(IDLE_SETTLE).await;
    sb.check_alive()?;
    let idle_rss_kb = procfs::status_kb(pid, "VmRSS")?;
    eprintln!(
        "  ready in {} ms, idle RSS {:.1} MB",
        ready_in.as_millis(),
        kb_to_mb(idle_rss_kb)
    );

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(TXN_TIMEOUT)
        .pool_max_idle_per_host(1)
        .build()?;
    let mut load = Load {
        client,
        url: format!("{as_url}/_matrix/app/v1/transactions/"),
        hs_token: hs_token.to_owned(),
        state: Arc::clone(state),
        rooms: opts.rooms,
        batch: opts.batch,
        next_txn: 0,
        retries: 0,
        problems: Vec::new(),
    };

    warm_up(opts, &mut load, state, sb).await?;

    let total = opts.warmup + opts.events;
    let cpu_before = procfs::cpu_ticks(pid)?;
    let own_cpu_before = procfs::cpu_ticks(Pid::OurSelf)?;
    let retries_before = load.retries;
    let sent = load
        .send(opts.warmup, total, sb)
        .await
        .context("measured run")?;
    let answered = wait_answered(&state.counters.answered_measured, opts.events, sb).await?;
    let cpu_after = procfs::cpu_ticks(pid)?;
    let own_cpu_after = procfs::cpu_ticks(Pid::OurSelf)?;
    let peak_rss_kb = procfs::status_kb(pid, "VmHWM")?;

    let mut latencies = Vec::with_capacity(usize::try_from(opts.events).unwrap_or(0));
    let mut last_reply = 0;
    for n in opts.warmup..total {
        if let Some((sent_at, replied_at)) = state.sent_and_replied(n) {
            latencies.push(replied_at.saturating_sub(sent_at));
            last_reply = last_reply.max(replied_at);
        }
    }
    latencies.sort_unstable();
    let wall_ns = last_reply.saturating_sub(sent.first_sent_ns).max(1);
    let ack_ns = sent.last_ack_ns.saturating_sub(sent.first_sent_ns).max(1);
    let cpu_us =
        |ticks: u64| ticks as f64 * 1e6 / opts.clock_ticks as f64 / opts.events.max(1) as f64;

    let c = &state.counters;
    let mut figures = Figures {
        events: opts.events,
        wall_s: wall_ns as f64 / 1e9,
        events_per_s: answered as f64 / (wall_ns as f64 / 1e9),
        txn_acks_per_s: sent.txns as f64 / (ack_ns as f64 / 1e9),
        p50_ms: percentile_ms(&latencies, 500),
        p90_ms: percentile_ms(&latencies, 900),
        p99_ms: percentile_ms(&latencies, 990),
        max_ms: latencies.last().map_or(0.0, |&l| l as f64 / 1e6),
        cpu_us_per_event: cpu_us(cpu_after.saturating_sub(cpu_before)),
        bench_cpu_us_per_event: cpu_us(own_cpu_after.saturating_sub(own_cpu_before)),
        idle_rss_mb: kb_to_mb(idle_rss_kb),
        peak_rss_mb: kb_to_mb(peak_rss_kb),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        missing: opts.events - answered.min(opts.events),
        unexpected: c.unexpected.load(Ordering::Relaxed)
            + c.bad_replies.load(Ordering::Relaxed)
            + c.wrong_bodies.load(Ordering::Relaxed)
            + c.auth_failures.load(Ordering::Relaxed),
        txn_retries: load.retries - retries_before,
        log_warnings: 0,
        problems: std::mem::take(&mut load.problems),
    };
    eprintln!(
        "  measured: {answered}/{} events answered, {:.0} events/s",
        opts.events, figures.events_per_s
    );
    check_counters(state, &mut figures);
    check_metrics(metrics_port, &mut figures).await;
    Ok(figures)
}

/// Sends the warm-up events and waits until they are answered.
async fn warm_up(
    opts: &Options,
    load: &mut Load,
    state: &HsState,
    sb: &mut Switchboard,
) -> Result<()> {
    if opts.warmup == 0 {
        return Ok(());
    }
    let started = Instant::now();
    load.send(0, opts.warmup, sb).await.context("warm-up")?;
    let answered = wait_answered(&state.counters.answered_warmup, opts.warmup, sb).await?;
    if answered < opts.warmup {
        load.problems.push(format!(
            "{} of {} warm-up events were not answered within {} s",
            opts.warmup - answered,
            opts.warmup,
            ANSWER_TIMEOUT.as_secs()
        ));
    }
    eprintln!(
        "  warm-up: {answered}/{} events answered in {:.2} s",
        opts.warmup,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Notes in the problems what the fake homeserver's counters show went wrong.
fn check_counters(state: &HsState, figures: &mut Figures) {
    let c = &state.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut note = |count: u64, what: &str| {
        if count > 0 {
            figures.problems.push(format!("{count} {what}"));
        }
    };
    note(
        figures.duplicates,
        "duplicate replies (an event answered more than once)",
    );
    note(figures.missing, "measured events without a reply");
    note(
        get(&c.unexpected),
        "requests to endpoints the bench does not expect",
    );
    note(
        get(&c.auth_failures),
        "requests with a missing or wrong as_token",
    );
    note(
        get(&c.bad_replies),
        "messages that are not a reply to a bench event",
    );
    note(get(&c.wrong_bodies), "replies whose body is not `pong <N>`");
    note(
        get(&c.repeated_txn_ids),
        "sends repeating a transaction id (retries; a homeserver de-duplicates them)",
    );
    note(get(&c.pings_failed), "failed appservice pings");
    note(
        figures.txn_retries,
        "transactions not acknowledged at the first attempt",
    );
    for (count, call) in [
        (get(&c.versions), "GET /versions"),
        (get(&c.whoami), "GET /whoami"),
        (get(&c.pings_ok), "the appservice ping"),
        (get(&c.profile), "the display-name update"),
    ] {
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
    let text = async {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }
    .await;
    let text = match text {
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
    ] {
        let total = metric_sum(&text, prefix);
        if total > 0.0 {
            figures
                .problems
                .push(format!("{total} {what} (Switchboard's {prefix})"));
        }
    }
}

/// Sum of the samples whose name (with labels) starts with `prefix`.
fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let matches = name == prefix
                || name
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('{'))
                || (prefix.ends_with('}') && name.starts_with(prefix.trim_end_matches('}')));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
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

/// Waits until `counter` reaches `target`, at most [`ANSWER_TIMEOUT`]; returns the count.
async fn wait_answered(counter: &AtomicU64, target: u64, sb: &mut Switchboard) -> Result<u64> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut checked = Instant::now();
    loop {
        let answered = counter.load(Ordering::Acquire);
        if answered >= target || Instant::now() > deadline {
            return Ok(answered);
        }
        if checked.elapsed() > Duration::from_millis(200) {
            sb.check_alive()?;
            checked = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What sending a range of events took.
struct Sent {
    txns: u64,
    first_sent_ns: u64,
    last_ack_ns: u64,
}

/// The load generator: pushes transactions one at a time, like a homeserver.
struct Load {
    client: reqwest::Client,
    url: String,
    hs_token: String,
    state: Arc<HsState>,
    rooms: u64,
    batch: u64,
    next_txn: u64,
    retries: u64,
    problems: Vec<String>,
}

impl Load {
    /// The body of a transaction carrying events `from..to`.
    fn transaction(&self, from: u64, to: u64) -> String {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut body = String::with_capacity(usize::try_from(to - from).unwrap_or(0) * 200 + 16);
        body.push_str("{\"events\":[");
        for n in from..to {
            let k = n % self.rooms;
            if n > from {
                body.push(',');
            }
            let _ = write!(
                body,
                "{{\"type\":\"m.room.message\",\"room_id\":\"!r{k}:{SERVER_NAME}\",\"event_id\":\"$e{n}\",\
                 \"sender\":\"@user{k}:{SERVER_NAME}\",\"origin_server_ts\":{ts},\
                 \"content\":{{\"msgtype\":\"m.text\",\"body\":\"ping {n}\"}}}}"
            );
        }
        body.push_str("]}");
        body
    }

    /// Sends events `from..to` in transactions of `batch`, each after the previous one was
    /// acknowledged.
    async fn send(&mut self, from: u64, to: u64, sb: &mut Switchboard) -> Result<Sent> {
        let deadline = Instant::now() + SEND_TIMEOUT;
        let mut sent = Sent {
            txns: 0,
            first_sent_ns: 0,
            last_ack_ns: 0,
        };
        let mut n = from;
        while n < to {
            let end = (n + self.batch).min(to);
            let body = self.transaction(n, end);
            let txn_id = format!("bench{}", self.next_txn);
            self.next_txn += 1;
            let url = format!("{}{txn_id}", self.url);
            let now = self.state.now_ns();
            self.state.mark_sent(n..end, now);
            if sent.txns == 0 {
                sent.first_sent_ns = now;
            }
            let mut connection_failures = 0;
            loop {
                if Instant::now() > deadline {
                    bail!("sending took longer than {} s", SEND_TIMEOUT.as_secs());
                }
                let result = self
                    .client
                    .put(&url)
                    .bearer_auth(&self.hs_token)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status() == reqwest::StatusCode::OK => {
                        // Read the body so that the connection is reused.
                        let _ = r.bytes().await;
                        break;
                    }
                    Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        self.retry(format!("transaction {txn_id} answered {status}: {text}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        bail!("Switchboard refused transaction {txn_id}: {status} {text}");
                    }
                    Err(e) => {
                        sb.check_alive()?;
                        connection_failures += 1;
                        if connection_failures >= MAX_CONNECTION_FAILURES {
                            return Err(e).context(format!("cannot send transaction {txn_id}"));
                        }
                        self.retry(format!("transaction {txn_id} failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            sent.last_ack_ns = self.state.now_ns();
            sent.txns += 1;
            n = end;
        }
        Ok(sent)
    }

    fn retry(&mut self, what: String) {
        self.retries += 1;
        if self.problems.len() < 5 {
            self.problems.push(what);
        }
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

    #[test]
    fn metric_sums() {
        let text = "# HELP x\nswitchboard_events_failed_total 0\n\
                    switchboard_homeserver_retries_total{endpoint=\"a\",reason=\"b\"} 2\n\
                    switchboard_homeserver_retries_total{endpoint=\"c\",reason=\"d\"} 3\n\
                    switchboard_transactions_total{outcome=\"duplicate\"} 1\n\
                    switchboard_transactions_total{outcome=\"new\"} 9\n";
        assert!(metric_sum(text, "switchboard_events_failed_total").abs() < 1e-9);
        assert!((metric_sum(text, "switchboard_homeserver_retries_total") - 5.0).abs() < 1e-9);
        assert!(
            (metric_sum(
                text,
                "switchboard_transactions_total{outcome=\"duplicate\"}"
            ) - 1.0)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn transactions_spread_events_over_rooms() {
        let state = HsState::new(HomeserverSetup {
            as_token: String::new(),
            hs_token: String::new(),
            appservice_id: String::new(),
            bot_user_id: String::new(),
            as_url: String::new(),
            total_events: 0,
            warmup: 0,
        })
        .expect("state");
        let load = Load {
            client: reqwest::Client::new(),
            url: String::new(),
            hs_token: String::new(),
            state: Arc::new(state),
            rooms: 2,
            batch: 3,
            next_txn: 0,
            retries: 0,
            problems: Vec::new(),
        };
        let body: serde_json::Value =
            serde_json::from_str(&load.transaction(4, 7)).expect("valid JSON");
        let events = body["events"].as_array().expect("events");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["room_id"], "!r0:bench.local");
        assert_eq!(events[1]["event_id"], "$e5");
        assert_eq!(events[1]["sender"], "@user1:bench.local");
        assert_eq!(events[2]["content"]["body"], "ping 6");
    }
}
