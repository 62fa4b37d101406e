//! The figures of a run, the table and JSON line they are printed as, and the summary of
//! several runs (medians of the figures, totals of the error counters).

use serde_json::{Map, Value};

/// The figures one run produced.
#[derive(Clone, Debug, Default)]
pub(crate) struct Figures {
    /// Measured events sent.
    pub(crate) events: u64,
    /// First measured transaction sent → last reply received, seconds.
    pub(crate) wall_s: f64,
    /// Answered events / `wall_s`.
    pub(crate) events_per_s: f64,
    /// Acknowledged transactions per second (first sent → last acknowledged).
    pub(crate) txn_acks_per_s: f64,
    /// Latency percentiles, transaction sent → reply received, ms.
    pub(crate) p50_ms: f64,
    /// 90th percentile.
    pub(crate) p90_ms: f64,
    /// 99th percentile.
    pub(crate) p99_ms: f64,
    /// Largest.
    pub(crate) max_ms: f64,
    /// Switchboard's CPU time (user + system) during the measured run, per event.
    pub(crate) cpu_us_per_event: f64,
    /// The bench's own CPU time (fake homeserver + load) during the measured run, per event.
    pub(crate) bench_cpu_us_per_event: f64,
    /// Mosquitto's CPU time during the measured run, per message (MQTT workloads).
    pub(crate) broker_cpu_us_per_event: f64,
    /// The PostgreSQL server's CPU time (with its backends) during the measured run, per
    /// event (0 on SQLite).
    pub(crate) database_cpu_us_per_event: f64,
    /// `VmRSS` after start-up, MB (2^20 bytes).
    pub(crate) idle_rss_mb: f64,
    /// `VmHWM` after the run, MB.
    pub(crate) peak_rss_mb: f64,
    /// Replies beyond the first to one event (must be 0).
    pub(crate) duplicates: u64,
    /// Measured events never answered (must be 0).
    pub(crate) missing: u64,
    /// Requests the fake homeserver did not expect, bad replies, wrong bodies, auth failures.
    pub(crate) unexpected: u64,
    /// Transactions Switchboard did not acknowledge at the first attempt.
    pub(crate) txn_retries: u64,
    /// Warning and error lines in Switchboard's log.
    pub(crate) log_warnings: u64,
    /// What looked wrong, in words.
    pub(crate) problems: Vec<String>,
}

/// How several runs' values of a figure are combined.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Combine {
    Median,
    Total,
}

/// The target a figure should meet.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}", group(t, 0)),
            Target::AtMost(t) => format!("<= {}", group(t, 0)),
        }
    }
}

/// How one figure is shown, combined and judged.
struct Spec {
    key: &'static str,
    label: &'static str,
    decimals: usize,
    combine: Combine,
    target: Option<Target>,
    get: fn(&Figures) -> f64,
}

/// Counts are far below 2^52: converting them to `f64` is exact.
#[allow(clippy::cast_precision_loss)]
fn count(value: u64) -> f64 {
    value as f64
}

/// A figure's spec (a `const fn`, so that the tables below stay one line per figure).
const fn spec(
    key: &'static str,
    label: &'static str,
    decimals: usize,
    combine: Combine,
    target: Option<Target>,
    get: fn(&Figures) -> f64,
) -> Spec {
    Spec {
        key,
        label,
        decimals,
        combine,
        target,
        get,
    }
}

use Combine::{Median, Total};

/// Must be zero.
const ZERO: Option<Target> = Some(Target::AtMost(0.0));

/// The figures of the echo workload, in the order printed.
#[rustfmt::skip]
const ECHO: &[Spec] = &[
    spec("events", "events (measured)", 0, Median, None, |f| count(f.events)),
    spec("wall_s", "wall time (s)", 3, Median, None, |f| f.wall_s),
    spec("events_per_s", "events/s end-to-end", 0, Median, Some(Target::AtLeast(20_000.0)), |f| f.events_per_s),
    spec("txn_acks_per_s", "transaction acks/s", 0, Median, None, |f| f.txn_acks_per_s),
    spec("latency_p50_ms", "latency p50 (ms)", 2, Median, None, |f| f.p50_ms),
    spec("latency_p90_ms", "latency p90 (ms)", 2, Median, None, |f| f.p90_ms),
    spec("latency_p99_ms", "latency p99 (ms)", 2, Median, Some(Target::AtMost(10.0)), |f| f.p99_ms),
    spec("latency_max_ms", "latency max (ms)", 2, Median, None, |f| f.max_ms),
    spec("cpu_us_per_event", "CPU µs/event (switchboard)", 1, Median, Some(Target::AtMost(50.0)), |f| f.cpu_us_per_event),
    spec("bench_cpu_us_per_event", "CPU µs/event (bench itself)", 1, Median, None, |f| f.bench_cpu_us_per_event),
    spec("database_cpu_us_per_event", "CPU µs/event (postgresql)", 1, Median, None, |f| f.database_cpu_us_per_event),
    spec("idle_rss_mb", "idle RSS (MB)", 1, Median, Some(Target::AtMost(15.0)), |f| f.idle_rss_mb),
    spec("peak_rss_mb", "peak RSS (MB)", 1, Median, Some(Target::AtMost(40.0)), |f| f.peak_rss_mb),
    spec("duplicates", "duplicate replies", 0, Total, ZERO, |f| count(f.duplicates)),
    spec("missing", "missing replies", 0, Total, ZERO, |f| count(f.missing)),
    spec("unexpected", "unexpected requests", 0, Total, ZERO, |f| count(f.unexpected)),
    spec("txn_retries", "transaction retries", 0, Total, None, |f| count(f.txn_retries)),
    spec("log_warnings", "warnings in the log", 0, Total, None, |f| count(f.log_warnings)),
];

/// The figures of `mqtt-in` (MQTT → Matrix), in the order printed. No targets were set
/// for the bridge beyond the error counts.
#[rustfmt::skip]
const MQTT_IN: &[Spec] = &[
    spec("events", "messages (measured)", 0, Median, None, |f| count(f.events)),
    spec("wall_s", "wall time (s)", 3, Median, None, |f| f.wall_s),
    spec("events_per_s", "messages/s end-to-end", 0, Median, None, |f| f.events_per_s),
    spec("publish_acks_per_s", "broker acks/s (PUBACK)", 0, Median, None, |f| f.txn_acks_per_s),
    spec("latency_p50_ms", "latency p50 (ms)", 2, Median, None, |f| f.p50_ms),
    spec("latency_p90_ms", "latency p90 (ms)", 2, Median, None, |f| f.p90_ms),
    spec("latency_p99_ms", "latency p99 (ms)", 2, Median, None, |f| f.p99_ms),
    spec("latency_max_ms", "latency max (ms)", 2, Median, None, |f| f.max_ms),
    spec("cpu_us_per_event", "CPU µs/message (switchboard)", 1, Median, None, |f| f.cpu_us_per_event),
    spec("bench_cpu_us_per_event", "CPU µs/message (bench itself)", 1, Median, None, |f| f.bench_cpu_us_per_event),
    spec("broker_cpu_us_per_event", "CPU µs/message (mosquitto)", 1, Median, None, |f| f.broker_cpu_us_per_event),
    spec("database_cpu_us_per_event", "CPU µs/message (postgresql)", 1, Median, None, |f| f.database_cpu_us_per_event),
    spec("idle_rss_mb", "idle RSS (MB)", 1, Median, None, |f| f.idle_rss_mb),
    spec("peak_rss_mb", "peak RSS (MB)", 1, Median, None, |f| f.peak_rss_mb),
    spec("duplicates", "duplicate messages", 0, Total, ZERO, |f| count(f.duplicates)),
    spec("missing", "missing messages", 0, Total, ZERO, |f| count(f.missing)),
    spec("unexpected", "unexpected requests/messages", 0, Total, ZERO, |f| count(f.unexpected)),
    spec("log_warnings", "warnings in the log", 0, Total, None, |f| count(f.log_warnings)),
];

/// The figures of `mqtt-out` (Matrix → MQTT), in the order printed.
#[rustfmt::skip]
const MQTT_OUT: &[Spec] = &[
    spec("events", "messages (measured)", 0, Median, None, |f| count(f.events)),
    spec("wall_s", "wall time (s)", 3, Median, None, |f| f.wall_s),
    spec("events_per_s", "messages/s end-to-end", 0, Median, None, |f| f.events_per_s),
    spec("txn_acks_per_s", "transaction acks/s", 0, Median, None, |f| f.txn_acks_per_s),
    spec("latency_p50_ms", "latency p50 (ms)", 2, Median, None, |f| f.p50_ms),
    spec("latency_p90_ms", "latency p90 (ms)", 2, Median, None, |f| f.p90_ms),
    spec("latency_p99_ms", "latency p99 (ms)", 2, Median, None, |f| f.p99_ms),
    spec("latency_max_ms", "latency max (ms)", 2, Median, None, |f| f.max_ms),
    spec("cpu_us_per_event", "CPU µs/message (switchboard)", 1, Median, None, |f| f.cpu_us_per_event),
    spec("bench_cpu_us_per_event", "CPU µs/message (bench itself)", 1, Median, None, |f| f.bench_cpu_us_per_event),
    spec("broker_cpu_us_per_event", "CPU µs/message (mosquitto)", 1, Median, None, |f| f.broker_cpu_us_per_event),
    spec("database_cpu_us_per_event", "CPU µs/message (postgresql)", 1, Median, None, |f| f.database_cpu_us_per_event),
    spec("idle_rss_mb", "idle RSS (MB)", 1, Median, None, |f| f.idle_rss_mb),
    spec("peak_rss_mb", "peak RSS (MB)", 1, Median, None, |f| f.peak_rss_mb),
    spec("duplicates", "duplicate messages", 0, Total, ZERO, |f| count(f.duplicates)),
    spec("missing", "missing messages", 0, Total, ZERO, |f| count(f.missing)),
    spec("unexpected", "unexpected requests/messages", 0, Total, ZERO, |f| count(f.unexpected)),
    spec("txn_retries", "transaction retries", 0, Total, None, |f| count(f.txn_retries)),
    spec("log_warnings", "warnings in the log", 0, Total, None, |f| count(f.log_warnings)),
];

/// Which figures a workload reports.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Table {
    /// The echo bot.
    Echo,
    /// MQTT → Matrix.
    MqttIn,
    /// Matrix → MQTT.
    MqttOut,
}

impl Table {
    /// The figures, in the order printed.
    fn specs(self) -> &'static [Spec] {
        match self {
            Table::Echo => ECHO,
            Table::MqttIn => MQTT_IN,
            Table::MqttOut => MQTT_OUT,
        }
    }
}

/// A figure with its value.
struct Row {
    spec: &'static Spec,
    value: f64,
}

impl Figures {
    fn rows(&self, table: Table) -> Vec<Row> {
        table
            .specs()
            .iter()
            .map(|spec| Row {
                spec,
                value: (spec.get)(self),
            })
            .collect()
    }
}

/// `1234567.891` with `decimals` → `1,234,567.89`.
fn group(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (sign, digits) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |d| ("-", d));
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn json_number(value: f64, decimals: usize) -> Value {
    if decimals == 0 {
        // Counts and rounded rates are whole, non-negative and far below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = value.round().max(0.0) as u64;
        Value::from(whole)
    } else {
        let factor = 10f64.powi(i32::try_from(decimals).unwrap_or(3));
        Value::from((value * factor).round() / factor)
    }
}

fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("  {:<30} {:>14}   target", "figure", "value");
    println!("  {}", "-".repeat(62));
    for row in rows {
        let (target, verdict) = row.spec.target.map_or((String::new(), ""), |t| {
            (t.describe(), if t.met(row.value) { "ok" } else { "MISSED" })
        });
        println!(
            "  {:<30} {:>14}   {:<10} {}",
            row.spec.label,
            group(row.value, row.spec.decimals),
            target,
            verdict
        );
    }
}

fn json_of(rows: &[Row]) -> Map<String, Value> {
    rows.iter()
        .map(|r| (r.spec.key.to_owned(), json_number(r.value, r.spec.decimals)))
        .collect()
}

/// Prints one run's table, its problems, and its `RUN {json}` line.
pub(crate) fn print_run(table: Table, index: usize, of: usize, figures: &Figures) {
    let rows = figures.rows(table);
    print_table(&format!("run {index}/{of}"), &rows);
    print_problems(&figures.problems);
    let mut json = json_of(&rows);
    json.insert("run".to_owned(), Value::from(index));
    println!("RUN {}", Value::Object(json));
}

fn print_problems(problems: &[String]) {
    if problems.is_empty() {
        println!("  no problems noticed");
    } else {
        println!("  problems:");
        for p in problems {
            println!("  - {p}");
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// Prints the summary of all runs (medians; error counters are totals) and, last, the
/// `RESULT {json}` line.
pub(crate) fn print_summary(table: Table, runs: &[Figures], settings: Map<String, Value>) {
    let per_run: Vec<Vec<Row>> = runs.iter().map(|f| f.rows(table)).collect();
    let rows: Vec<Row> = table
        .specs()
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut values: Vec<f64> = per_run.iter().map(|r| r[i].value).collect();
            let value = match spec.combine {
                Combine::Median => median(&mut values),
                Combine::Total => values.iter().sum(),
            };
            Row { spec, value }
        })
        .collect();
    if runs.len() > 1 {
        print_table(
            &format!(
                "median of {} runs (error counters: total over all runs)",
                runs.len()
            ),
            &rows,
        );
    }
    let mut json = settings;
    json.insert("runs".to_owned(), Value::from(runs.len()));
    json.extend(json_of(&rows));
    println!("RESULT {}", Value::Object(json));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(1_234_567.891, 2), "1,234,567.89");
        assert_eq!(group(999.0, 0), "999");
        assert_eq!(group(1000.0, 0), "1,000");
        assert_eq!(group(-12_345.5, 1), "-12,345.5");
    }

    #[test]
    fn medians() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&mut [4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&mut []).abs() < f64::EPSILON);
    }
}
