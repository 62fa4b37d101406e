//! The MQTT broker of the MQTT workloads: a real Mosquitto, started as a plain process on a
//! free loopback port with a generated config (anonymous, no persistence), stopped with SIGTERM
//! after the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long Mosquitto may take to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Mosquitto may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker binary (Debian's `mosquitto` package).
fn binary() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

/// The config: one loopback listener, anyone may connect, nothing persisted, up to
/// `max_inflight` unacknowledged messages towards each client and 100,000 queued (the bridge
/// is the slow consumer of `mqtt-in`).
fn config(port: u16, max_inflight: u16, dir: &Path) -> String {
    format!(
        "# Written by switchboard-bench.
# Only used when started as root (then Mosquitto would switch to the user `mosquitto`, who
# cannot write the log in the bench's private directory).
user root
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages {max_inflight}
max_queued_messages 100000
log_dest file {log}
log_type error
log_type warning
log_type notice
connection_messages true
",
        log = dir.join("mosquitto.log").display()
    )
}

/// A running broker. Killed if dropped while running.
pub(crate) struct Mosquitto {
    child: tokio::process::Child,
    pid: u32,
    port: u16,
    log: PathBuf,
    stopped: bool,
}

impl Mosquitto {
    /// Writes `dir/mosquitto.conf` and starts the broker on `port` with `max_inflight`
    /// (`max_inflight_messages`); waits until it accepts connections.
    pub(crate) async fn start(dir: &Path, port: u16, max_inflight: u16) -> Result<Self> {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, config(port, max_inflight, dir))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let binary = binary();
        let child = tokio::process::Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (Debian package mosquitto)",
                    binary.display()
                )
            })?;
        let pid = child.id().context("Mosquitto exited at once")?;
        let mut broker = Self {
            child,
            pid,
            port,
            log: dir.join("mosquitto.log"),
            stopped: false,
        };
        broker.wait_listening().await?;
        Ok(broker)
    }

    /// Waits until the broker accepts connections, at most [`LISTEN_TIMEOUT`].
    async fn wait_listening(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.stopped = true;
                bail!("Mosquitto exited ({status}): {}", self.log_text().trim());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > LISTEN_TIMEOUT {
                bail!(
                    "Mosquitto did not listen on 127.0.0.1:{} within {} s",
                    self.port,
                    LISTEN_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The broker's URL for the bridge's config.
    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Fails if the broker has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("cannot check on Mosquitto")? {
            self.stopped = true;
            bail!("Mosquitto exited ({status})");
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit (killed after 5 s); a problem, if there was one.
    pub(crate) async fn stop(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(format!("Mosquitto exited during the run ({status})"));
        }
        match crate::switchboard::terminate(&mut self.child, self.pid, STOP_TIMEOUT).await {
            Ok(stopped) if stopped.killed => {
                Some("Mosquitto did not stop within 5 s of SIGTERM and was killed".to_owned())
            }
            Ok(stopped) if stopped.status.success() => None,
            Ok(stopped) => Some(format!(
                "Mosquitto exited with {} after SIGTERM",
                stopped.status
            )),
            Err(e) => Some(format!("cannot stop Mosquitto: {e:#}")),
        }
    }

    /// Its log.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.start_kill();
        }
    }
}

/// The warning and error lines of Mosquitto's log (its lines start with a timestamp and the
/// message; errors and warnings say so).
pub(crate) fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("warning")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_one_loopback_listener_and_no_persistence() {
        let text = config(18_830, 100, Path::new("/tmp/x"));
        assert!(text.contains("\nlistener 18830 127.0.0.1\n"));
        assert!(text.contains("\npersistence false\n"));
        assert!(text.contains("\nmax_inflight_messages 100\n"));
        assert!(text.contains("\nmax_queued_messages 100000\n"));
        assert!(text.contains("log_dest file /tmp/x/mosquitto.log\n"));
    }

    #[test]
    fn warnings_are_found() {
        let log = "1700000000: mosquitto version 2.0.11 starting\n\
                   1700000001: Warning: something\n1700000002: Error: bad\n";
        assert_eq!(warnings(log).len(), 2);
    }
}
