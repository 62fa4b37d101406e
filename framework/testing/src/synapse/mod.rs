//! A real Synapse homeserver per test: a fresh temporary directory, `SQLite`,
//! a free loopback port, no TLS and no federation.
//!
//! Synapse itself is installed once from `PyPI` into a virtualenv that all test
//! runs share (see [`ensure_installed`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;
use tokio::time::Instant;

pub mod nio;
pub mod user;

pub use user::{MatrixUser, encode, http_client};

use crate::process::{file_tail, free_port};

/// The Synapse release the tests run against. Pinned here and nowhere else.
pub const SYNAPSE_VERSION: &str = "1.163.2";
/// `registration_shared_secret` of every test homeserver.
pub const SHARED_SECRET: &str = "shared_secret_test";
/// The `server_name` of every test homeserver.
pub const SERVER_NAME: &str = "localhost";
/// Environment variable that overrides where the virtualenv lives.
pub const VENV_ENV: &str = "SWITCHBOARD_SYNAPSE_VENV";

/// Bound on Synapse's start until `/health` answers 200.
const START_TIMEOUT: Duration = Duration::from_mins(1);
/// Bound on a graceful stop (SIGTERM) before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on `python3 -m venv` plus `pip install`.
const INSTALL_TIMEOUT: Duration = Duration::from_mins(10);
/// Bound on waiting for another process that holds the install lock.
const INSTALL_LOCK_TIMEOUT: Duration = Duration::from_mins(15);
/// Bound on the `import synapse` probe.
const PROBE_TIMEOUT: Duration = Duration::from_mins(1);
/// Lines of each log file quoted in start-up errors.
const LOG_TAIL_LINES: usize = 40;

/// The venv python, once this process has checked it.
static INSTALLED: OnceCell<PathBuf> = OnceCell::const_new();

/// The virtualenv directory: `$SWITCHBOARD_SYNAPSE_VENV`, else
/// `<repo>/.cache/synapse-<version>/venv`.
#[must_use]
pub fn venv_dir() -> PathBuf {
    match std::env::var_os(VENV_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.cache")
            .join(format!("synapse-{SYNAPSE_VERSION}"))
            .join("venv"),
    }
}

/// Makes sure Synapse [`SYNAPSE_VERSION`] is installed in [`venv_dir`] and
/// returns the venv's python.
///
/// Reuses the venv when it already imports that version; otherwise creates it
/// with `python3 -m venv` and `pip install matrix-synapse==<version>` (about
/// 30 s, needs `PyPI`). An exclusive lock on `<venv>.lock` keeps concurrent test
/// processes from installing at the same time.
pub async fn ensure_installed() -> anyhow::Result<PathBuf> {
    INSTALLED.get_or_try_init(install_if_needed).await.cloned()
}

async fn install_if_needed() -> anyhow::Result<PathBuf> {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    if has_synapse(&python).await {
        return Ok(python);
    }
    let parent = venv
        .parent()
        .with_context(|| format!("venv path {} has no parent directory", venv.display()))?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let _lock = acquire_install_lock(&venv).await?;
    // Another process may have finished the install while we waited.
    if has_synapse(&python).await {
        return Ok(python);
    }
    let started = Instant::now();
    eprintln!(
        "installing Synapse {SYNAPSE_VERSION} into {}, about a minute",
        venv.display()
    );
    if !runs(&python).await {
        run_bounded(
            Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg("--clear")
                .arg(&venv),
            "python3 -m venv",
        )
        .await?;
    }
    run_bounded(
        Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .arg(format!("matrix-synapse=={SYNAPSE_VERSION}"))
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        "pip install matrix-synapse",
    )
    .await?;
    if !has_synapse(&python).await {
        bail!(
            "pip installed matrix-synapse=={SYNAPSE_VERSION} into {} but the venv still cannot import it",
            venv.display()
        );
    }
    eprintln!(
        "installed Synapse {SYNAPSE_VERSION} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(python)
}

/// Takes an exclusive `flock` on `<venv>.lock` (released when the file is
/// dropped, also if the process dies), waiting a bounded time for it.
async fn acquire_install_lock(venv: &Path) -> anyhow::Result<File> {
    let mut lock_path = OsString::from(venv.as_os_str());
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening the install lock {}", lock_path.display()))?;
    let deadline = Instant::now() + INSTALL_LOCK_TIMEOUT;
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "another process held the Synapse install lock {} for over {INSTALL_LOCK_TIMEOUT:?}",
                lock_path.display()
            );
        }
        if !told {
            eprintln!(
                "waiting for another process to finish installing Synapse ({})",
                lock_path.display()
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether `python` runs at all.
async fn runs(python: &Path) -> bool {
    python.exists() && probe(python, "pass").await
}

/// Whether `python` imports Synapse and has exactly [`SYNAPSE_VERSION`] installed.
async fn has_synapse(python: &Path) -> bool {
    python.exists()
        && probe(
            python,
            &format!(
                "import sys, importlib.metadata, synapse; \
                 sys.exit(importlib.metadata.version('matrix-synapse') != '{SYNAPSE_VERSION}')"
            ),
        )
        .await
}

async fn probe(python: &Path, code: &str) -> bool {
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(code)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, cmd.status()).await,
        Ok(Ok(status)) if status.success()
    )
}

/// Runs an install step with [`INSTALL_TIMEOUT`]; on failure the error quotes its output.
async fn run_bounded(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(INSTALL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what} took longer than {INSTALL_TIMEOUT:?}"))?
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A running Synapse child process with its own data directory.
///
/// Dropping it kills the process (SIGKILL) and deletes the directory; use
/// [`Synapse::stop`] for a graceful shutdown.
pub struct Synapse {
    dir: TempDir,
    port: u16,
    python: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Synapse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synapse")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().and_then(Child::id))
            .finish_non_exhaustive()
    }
}

impl Synapse {
    /// Installs Synapse if needed, then starts a fresh homeserver with the given
    /// appservice registration files and waits (up to 60 s) until `/health` is OK.
    pub async fn start(registration_files: &[PathBuf]) -> anyhow::Result<Self> {
        let python = ensure_installed().await?;
        let dir = tempfile::Builder::new()
            .prefix("switchboard-synapse-")
            .tempdir()
            .context("creating the Synapse temp dir")?;
        let port = free_port().context("cannot find a free loopback port")?;
        let registration_files = registration_files
            .iter()
            .map(|file| {
                std::fs::canonicalize(file)
                    .with_context(|| format!("registration file {}", file.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        write_config(dir.path(), port, &registration_files)?;
        let mut synapse = Self {
            dir,
            port,
            python,
            child: None,
            http: http_client()?,
        };
        synapse.spawn_and_wait().await?;
        Ok(synapse)
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The homeserver's `server_name` (`localhost`).
    #[must_use]
    #[allow(
        clippy::unused_self,
        reason = "an accessor, so tests need not know the name is a constant"
    )]
    pub fn server_name(&self) -> &str {
        SERVER_NAME
    }

    /// The client listener's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (config, `SQLite` DB, logs).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of Synapse's own log and of its stdout/stderr, for
    /// failure messages.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let data = self.dir.path().join("data");
        format!(
            "{}\n{}",
            file_tail(&data.join("homeserver.log"), LOG_TAIL_LINES),
            file_tail(&data.join("stdout.log"), LOG_TAIL_LINES)
        )
    }

    /// Stops Synapse gracefully: SIGTERM, up to 10 s, then SIGKILL. Does
    /// nothing when it is not running.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let Some(pid) = child.id() {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .status()
                .await;
            if matches!(sent, Ok(status) if status.success()) {
                if let Ok(Ok(_)) = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
                    return;
                }
                eprintln!("Synapse (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?}; killing it");
            }
        }
        if let Err(e) = child.kill().await {
            eprintln!("killing Synapse failed: {e}");
        }
    }

    /// Restarts Synapse on the same directory, port and database (stopping it
    /// first if it is still running) and waits until it is healthy again.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.spawn_and_wait().await
    }

    /// Registers `@localpart:localhost` with the shared-secret admin API
    /// (`/_synapse/admin/v1/register`) and returns it logged in.
    pub async fn register_user(&self, localpart: &str, admin: bool) -> anyhow::Result<MatrixUser> {
        let password = format!("pw-{:032x}", rand::random::<u128>());
        self.register_user_with_password(localpart, &password, admin)
            .await
    }

    /// Registers `@localpart:localhost` with the given password (shared-secret admin API)
    /// and returns it logged in.
    pub async fn register_user_with_password(
        &self,
        localpart: &str,
        password: &str,
        admin: bool,
    ) -> anyhow::Result<MatrixUser> {
        let url = format!("{}/_synapse/admin/v1/register", self.base_url());
        let nonce = user::json_response(self.http.get(&url), "GET nonce").await?;
        let nonce = nonce
            .get("nonce")
            .and_then(Value::as_str)
            .with_context(|| format!("no nonce in {nonce}"))?
            .to_owned();
        let mut message = Vec::new();
        for part in [
            nonce.as_bytes(),
            localpart.as_bytes(),
            password.as_bytes(),
            if admin {
                b"admin".as_slice()
            } else {
                b"notadmin".as_slice()
            },
        ] {
            if !message.is_empty() {
                message.push(0);
            }
            message.extend_from_slice(part);
        }
        let mac = hex(&hmac_sha1(SHARED_SECRET.as_bytes(), &message));
        let body = json!({
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac,
        });
        let resp = user::json_response(
            self.http.post(&url).json(&body),
            &format!("register {localpart}"),
        )
        .await?;
        self.logged_in(&resp, &format!("register {localpart}"))
    }

    /// The user a registration or login answer (`user_id`, `access_token`) logged in.
    fn logged_in(&self, resp: &Value, what: &str) -> anyhow::Result<MatrixUser> {
        let field = |name: &str| {
            resp.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{what}: no `{name}` in {resp}"))
        };
        MatrixUser::new(self.base_url(), field("user_id")?, field("access_token")?)
    }

    /// Logs `@localpart:localhost` in with `password` (fails as the homeserver answers, e.g.
    /// 403 for a wrong password or a deactivated user).
    pub async fn login(&self, localpart: &str, password: &str) -> anyhow::Result<MatrixUser> {
        let url = format!("{}/_matrix/client/v3/login", self.base_url());
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": localpart },
            "password": password,
        });
        let resp = user::json_response(self.http.post(&url).json(&body), "login").await?;
        self.logged_in(&resp, &format!("login {localpart}"))
    }

    /// Spawns the homeserver process and waits for `/health`; on failure the
    /// process is killed and the error quotes the logs.
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let stdout_path = self.dir.path().join("data").join("stdout.log");
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stdout_path)
            .with_context(|| format!("opening {}", stdout_path.display()))?;
        let stderr = stdout
            .try_clone()
            .context("duplicating the stdout.log handle")?;
        let child = Command::new(&self.python)
            .args(["-m", "synapse.app.homeserver", "-c", "homeserver.yaml"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} -m synapse.app.homeserver",
                    self.python.display()
                )
            })?;
        self.child = Some(child);
        match self.wait_healthy().await {
            Ok(()) => {
                eprintln!(
                    "Synapse {SYNAPSE_VERSION} on {} healthy after {:.2} s",
                    self.base_url(),
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(e) => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill().await;
                }
                Err(anyhow!("{e:#}\n{}", self.log_tail()))
            }
        }
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.base_url());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling the Synapse process")?
            {
                bail!("Synapse exited with {status} before it became healthy");
            }
            let probe = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let last = match probe {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(resp) => format!("HTTP {}", resp.status()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("Synapse was not healthy after {START_TIMEOUT:?} (last probe: {last})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            // Reap it here so no zombie outlives the fixture (bounded: ~2 s).
            for _ in 0..200 {
                match child.try_wait() {
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    _ => break,
                }
            }
        }
    }
}

/// Quotes a path as a YAML double-quoted scalar (JSON strings are valid YAML).
fn yaml_path(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))?;
    Ok(serde_json::to_string(text)?)
}

/// Writes `homeserver.yaml` and `log.config` into `dir` and creates `data/` and `media/`.
fn write_config(dir: &Path, port: u16, registration_files: &[PathBuf]) -> anyhow::Result<()> {
    let data = dir.join("data");
    let media = dir.join("media");
    for sub in [&data, &media] {
        std::fs::create_dir_all(sub).with_context(|| format!("creating {}", sub.display()))?;
    }
    let appservices = registration_files
        .iter()
        .map(|file| yaml_path(file))
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(", ");
    let homeserver = HOMESERVER_YAML
        .replace("@PORT@", &port.to_string())
        .replace("@SERVER_NAME@", SERVER_NAME)
        .replace("@SHARED_SECRET@", SHARED_SECRET)
        .replace(
            "@SIGNING_KEY@",
            &yaml_path(&data.join("localhost.signing.key"))?,
        )
        .replace("@MEDIA@", &yaml_path(&media)?)
        .replace("@LOG_CONFIG@", &yaml_path(&dir.join("log.config"))?)
        .replace("@DATABASE@", &yaml_path(&data.join("homeserver.db"))?)
        .replace("@APPSERVICES@", &appservices);
    let log_config = LOG_CONFIG.replace("@LOG_FILE@", &yaml_path(&data.join("homeserver.log"))?);
    for (name, text) in [("homeserver.yaml", homeserver), ("log.config", log_config)] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The test homeserver config: loopback, `SQLite`, no TLS, client listener only, rate limits off.
const HOMESERVER_YAML: &str = r#"# Synapse config for integration tests (written by switchboard-testing's synapse fixture)
server_name: "@SERVER_NAME@"
public_baseurl: "http://127.0.0.1:@PORT@/"
signing_key_path: @SIGNING_KEY@
media_store_path: @MEDIA@
log_config: @LOG_CONFIG@
report_stats: false

listeners:
  - port: @PORT@
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client, openid]
        compress: false

database:
  name: sqlite3
  args:
    database: @DATABASE@

registration_shared_secret: "@SHARED_SECRET@"
macaroon_secret_key: "macaroon_secret_test"
form_secret: "form_secret_test"
enable_registration: false

trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: true

background_updates:
  sleep_enabled: false
caches:
  sync_response_cache_duration: 0

app_service_config_files: [@APPSERVICES@]

experimental_features:
  msc2409_to_device_messages_enabled: true
  msc3202_transaction_extensions: true
  msc3983_appservice_otk_claims: true
  msc3984_appservice_key_query: true

rc_message:               {per_second: 10000, burst_count: 10000}
rc_registration:          {per_second: 10000, burst_count: 10000}
rc_registration_token_validity: {per_second: 10000, burst_count: 10000}
rc_login:
  address:                {per_second: 10000, burst_count: 10000}
  account:                {per_second: 10000, burst_count: 10000}
  failed_attempts:        {per_second: 10000, burst_count: 10000}
rc_joins:
  local:                  {per_second: 10000, burst_count: 10000}
  remote:                 {per_second: 10000, burst_count: 10000}
rc_joins_per_room:        {per_second: 10000, burst_count: 10000}
rc_invites:
  per_room:               {per_second: 10000, burst_count: 10000}
  per_user:               {per_second: 10000, burst_count: 10000}
  per_issuer:             {per_second: 10000, burst_count: 10000}
rc_room_creation:         {per_second: 10000, burst_count: 10000}
rc_admin_redaction:       {per_second: 10000, burst_count: 10000}
rc_3pid_validation:       {per_second: 10000, burst_count: 10000}
rc_third_party_invite:    {per_second: 10000, burst_count: 10000}
rc_media_create:          {per_second: 10000, burst_count: 10000}
rc_presence:
  per_user:               {per_second: 10000, burst_count: 10000}
rc_delayed_event_mgmt:    {per_second: 10000, burst_count: 10000}
rc_reports:               {per_second: 10000, burst_count: 10000}
rc_user_directory:        {per_second: 10000, burst_count: 10000}
rc_profile:               {per_second: 10000, burst_count: 10000}
rc_key_requests:          {per_second: 10000, burst_count: 10000}
"#;

/// Synapse's logging config: INFO to `data/homeserver.log`, not to stdout.
const LOG_CONFIG: &str = r"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: @LOG_FILE@
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: WARNING
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
";

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// HMAC-SHA1, which Synapse's shared-secret registration requires.
fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}
