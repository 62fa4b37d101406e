//! A private Mosquitto broker for the MQTT tests: started as a plain process on a free
//! loopback port with its own config (anonymous, or with a password file), stopped when
//! dropped; plus `mosquitto_pub` / `mosquitto_sub` as a device and a listener would use them.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::TestCertificates;

use crate::process::free_port;

/// The broker binary (Debian's `mosquitto` package).
fn binary() -> PathBuf {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

/// A running broker; dropping it stops it.
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// The user and password it requires, if any.
    pub credentials: Option<(String, String)>,
    /// With a TLS listener: its port and the certificates (the client must present one).
    pub tls: Option<(u16, TestCertificates)>,
    /// The protocol version `mosquitto_pub` / `mosquitto_sub` speak (`-V`).
    version: &'static str,
}

impl Mosquitto {
    /// A broker that lets anyone in.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(None)
    }

    /// A broker that requires `user` with `password`.
    pub fn start_with_password(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::launch(Some((user.to_owned(), password.to_owned())))
    }

    /// A broker that also listens with TLS (see [`Mosquitto::url`]), requiring a client
    /// certificate signed by its CA there; the test tools use the plain listener.
    pub fn start_tls() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("sb-mosquitto-").tempdir()?;
        let certificates = TestCertificates::issue(dir.path()).map_err(anyhow::Error::msg)?;
        let mut broker = Self {
            child: None,
            port: free_port()?,
            dir,
            credentials: None,
            tls: Some((free_port()?, certificates)),
            version: "mqttv5",
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn launch(credentials: Option<(String, String)>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("sb-mosquitto-").tempdir()?;
        let mut broker = Self {
            child: None,
            port: free_port()?,
            dir,
            credentials,
            tls: None,
            version: "mqttv5",
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// Not a broker of its own: `mosquitto_pub` / `mosquitto_sub` (MQTT 3.1.1) for another
    /// broker on loopback `port` (the embedded one).
    pub fn clients_for(port: u16) -> anyhow::Result<Self> {
        Ok(Self {
            child: None,
            port,
            dir: tempfile::Builder::new()
                .prefix("sb-mqtt-clients-")
                .tempdir()?,
            credentials: None,
            tls: None,
            version: "mqttv311",
        })
    }

    /// Writes the config and starts the process; waits until it accepts connections.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        let mut config = format!(
            "user root\nper_listener_settings false\nlistener {port} 127.0.0.1\n\
             persistence true\npersistence_location {dir}/\nautosave_interval 1\n\
             log_dest file {dir}/mosquitto.log\nlog_type all\n",
            port = self.port,
            dir = dir.display(),
        );
        match &self.credentials {
            None => config.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let passwd = dir.join("passwd");
                let status = Command::new("mosquitto_passwd")
                    .args(["-c", "-b"])
                    .arg(&passwd)
                    .args([user, password])
                    .status()
                    .context("mosquitto_passwd (Debian package mosquitto)")?;
                anyhow::ensure!(status.success(), "mosquitto_passwd failed");
                let _ = writeln!(
                    config,
                    "allow_anonymous false\npassword_file {}",
                    passwd.display()
                );
            }
        }
        if let Some((port, certificates)) = &self.tls {
            let _ = writeln!(
                config,
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true",
                certificates.ca.display(),
                certificates.server_cert.display(),
                certificates.server_key.display(),
            );
        }
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, config)?;
        let child = Command::new(binary())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (Debian package mosquitto)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within 10 s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the broker (its persisted state stays) and starts it again on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again()
    }

    /// Starts a stopped broker again on the same port, with its persisted state.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// Stops the broker.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets it save its persistence file.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The broker's URL for the bridge's config: the TLS listener's when it has one.
    #[must_use]
    pub fn url(&self) -> String {
        match &self.tls {
            Some((port, _)) => format!("mqtts://127.0.0.1:{port}"),
            None => format!("mqtt://127.0.0.1:{}", self.port),
        }
    }

    /// Its log.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn client_args(&self, command: &mut Command) {
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-V",
            self.version,
        ]);
        if let Some((user, password)) = &self.credentials {
            command.args(["-u", user, "-P", password]);
        }
    }

    /// `mosquitto_pub -l`: each of `lines` is one message to `topic` at QoS 1, all over one
    /// connection.
    pub fn publish_lines(&self, topic: &str, lines: &[String]) -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut command = Command::new("mosquitto_pub");
        self.client_args(&mut command);
        let mut child = command
            .args(["-q", "1", "-t", topic, "-l"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("mosquitto_pub (Debian package mosquitto-clients)")?;
        let mut stdin = child.stdin.take().context("mosquitto_pub's input")?;
        stdin.write_all(format!("{}\n", lines.join("\n")).as_bytes())?;
        drop(stdin);
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "mosquitto_pub -l failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// `mosquitto_pub` of `payload` to `topic` at QoS 1, with `extra` arguments (e.g. `-r`).
    pub fn publish(&self, topic: &str, payload: &str, extra: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new("mosquitto_pub");
        self.client_args(&mut command);
        let out = command
            .args(["-q", "1", "-t", topic, "-m", payload])
            .args(extra)
            .output()
            .context("mosquitto_pub (Debian package mosquitto-clients)")?;
        anyhow::ensure!(
            out.status.success(),
            "mosquitto_pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A `mosquitto_sub` on `topic` printing `format` (see its `-F`) for each message, with
    /// `extra` arguments (e.g. a last will), once its subscription is acknowledged. Dropping
    /// it kills it, as a device that loses power (its last will is published).
    pub async fn subscribe(
        &self,
        topic: &str,
        format: &str,
        extra: &[&str],
    ) -> anyhow::Result<Subscriber> {
        // Line-buffered, so that each line arrives as it is printed.
        let mut command = Command::new("stdbuf");
        command.args(["-oL", "mosquitto_sub"]);
        self.client_args(&mut command);
        let mut child = command
            .args(["-d", "-q", "1", "-t", topic, "-F", format])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("mosquitto_sub (Debian package mosquitto-clients)")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (lines, received) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut subscriber = Subscriber { child, received };
        subscriber
            .wait_for(Duration::from_secs(10), |l| l.contains("received SUBACK"))
            .await?;
        Ok(subscriber)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `mosquitto_sub`; stopped when dropped.
pub struct Subscriber {
    child: Child,
    received: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Subscriber {
    /// Waits up to `timeout` for an output line for which `check` holds; returns it.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.received.recv())
                .await
                .ok()
                .flatten()
                .context("mosquitto_sub printed nothing matching in time")?;
            if check(&line) {
                return Ok(line);
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
