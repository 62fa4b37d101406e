//! The Switchboard child process: registration, start, readiness, graceful stop, its log.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// How long `generate-registration` may take.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Switchboard may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Lines of the log shown when something fails.
const LOG_TAIL_LINES: usize = 40;

/// The fields of the registration file the bench needs.
#[derive(Debug, Deserialize)]
pub(crate) struct Registration {
    /// The appservice id.
    pub(crate) id: String,
    /// Where the homeserver pushes transactions.
    pub(crate) url: Option<String>,
    /// Switchboard → homeserver token.
    pub(crate) as_token: String,
    /// Homeserver → Switchboard token.
    pub(crate) hs_token: String,
    /// The bot's localpart.
    pub(crate) sender_localpart: String,
}

/// Runs `switchboard generate-registration -c config.yaml` in `dir` and reads the result.
pub(crate) async fn generate_registration(binary: &Path, dir: &Path) -> Result<Registration> {
    let mut command = tokio::process::Command::new(binary);
    command
        .args(["generate-registration", "-c", "config.yaml"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    clean_env(&mut command);
    let output = tokio::time::timeout(REGISTRATION_TIMEOUT, command.output())
        .await
        .context("`switchboard generate-registration` did not finish within 30 s")?
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "`switchboard generate-registration` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = dir.join("registration.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("generate-registration did not write {}", path.display()))?;
    serde_norway::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// Keeps the operator's `SWITCHBOARD_*` overrides out of the child's environment, and its log
/// free of colour codes.
fn clean_env(command: &mut tokio::process::Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            command.env_remove(key);
        }
    }
    command.env("NO_COLOR", "1");
}

/// How Switchboard stopped.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Time from SIGTERM to exit.
    pub(crate) took: Duration,
    /// Whether it had to be killed (did not stop in time).
    pub(crate) killed: bool,
}

/// Stops the process `child` (`pid`) with SIGTERM, waiting at most `timeout` for its exit
/// before killing it; at once when it has exited already.
pub(crate) async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    timeout: Duration,
) -> Result<Stopped> {
    let started = Instant::now();
    if let Some(status) = child.try_wait()? {
        return Ok(Stopped {
            status,
            took: Duration::ZERO,
            killed: false,
        });
    }
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .context("cannot run `kill -TERM`")?;
    if !kill.success() {
        eprintln!("warning: `kill -TERM {pid}` failed ({kill})");
    }
    let (status, killed) = if let Ok(status) = tokio::time::timeout(timeout, child.wait()).await {
        (status?, false)
    } else {
        child.kill().await.context("cannot kill the process")?;
        (child.wait().await?, true)
    };
    Ok(Stopped {
        status,
        took: started.elapsed(),
        killed,
    })
}

/// A running `switchboard run`. Killed (SIGKILL) if dropped while running.
pub(crate) struct Switchboard {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    stopped: bool,
}

impl Switchboard {
    /// Starts `switchboard run -c config.yaml` in `dir`, output to `dir/switchboard.log`.
    ///
    /// The executable is read whole first. The kernel maps a code page together with the cached
    /// pages around it, so the resident size depends on how much of the file is in the page
    /// cache — all of it right after a build, less once the system has reclaimed the untouched
    /// parts. Read whole, every run starts from the same state, the one with the most memory.
    pub(crate) fn start(binary: &Path, dir: &Path) -> Result<Self> {
        let mut executable = std::fs::File::open(binary)
            .with_context(|| format!("cannot open {}", binary.display()))?;
        std::io::copy(&mut executable, &mut std::io::sink())
            .with_context(|| format!("cannot read {}", binary.display()))?;
        let log = dir.join("switchboard.log");
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["run", "-c", "config.yaml"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("cannot share the log file")?)
            .stderr(file)
            .kill_on_drop(true);
        clean_env(&mut command);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("Switchboard exited at once")?;
        Ok(Self {
            child,
            pid,
            log,
            stopped: false,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// Fails if Switchboard has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("cannot check on Switchboard")?
        {
            self.stopped = true;
            bail!("Switchboard exited ({status})");
        }
        Ok(())
    }

    /// Waits until `/ready` on the metrics listener answers 200, at most `timeout`.
    pub(crate) async fn wait_ready(
        &mut self,
        metrics_port: u16,
        timeout: Duration,
    ) -> Result<Duration> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("http://127.0.0.1:{metrics_port}/ready");
        let started = Instant::now();
        loop {
            self.check_alive()?;
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "Switchboard was not ready within {} s ({url})",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit, at most 15 s; then kills it.
    pub(crate) async fn stop(&mut self) -> Result<Stopped> {
        self.stopped = true;
        terminate(&mut self.child, self.pid, STOP_TIMEOUT).await
    }

    /// The log, without colour codes.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| strip_ansi(&String::from_utf8_lossy(&b)))
            .unwrap_or_default()
    }

    /// The last lines of the log.
    pub(crate) fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        let tail = lines[from..].join("\n");
        if tail.is_empty() {
            format!("(the log {} is empty)", self.log.display())
        } else {
            tail
        }
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        if !self.stopped {
            // kill_on_drop also does this; starting it here makes it happen now.
            let _ = self.child.start_kill();
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The warning and error lines of a log.
pub(crate) fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphabetic())
                .any(|w| w == "WARN" || w == "ERROR")
                || l.starts_with("error")
        })
        .collect()
}

/// Server name of the fake homeserver.
pub(crate) const SERVER_NAME: &str = "bench.local";

/// Switchboard's `/metrics` text.
pub(crate) async fn metrics_text(metrics_port: u16) -> reqwest::Result<String> {
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

/// Sum of the samples whose name (with labels) starts with `prefix`.
pub(crate) fn metric_sum(text: &str, prefix: &str) -> f64 {
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

#[cfg(test)]
mod tests {
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

    use super::*;

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2mtime\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
            "time  WARN x"
        );
    }

    #[test]
    fn warnings_are_found() {
        let log = "2025-01-01T00:00:00Z  WARN switchboard: slow\n    at src/x.rs:1\n2025 ERROR y: bad\nerror: gone\nWARNING-less line";
        assert_eq!(warnings(log).len(), 3);
    }
}
