//! A private, throw-away Postgres cluster per fixture: its own temporary
//! directory, a free loopback port and a private socket directory, so it
//! never touches a system cluster.
//!
//! `initdb` refuses to run as root, so when the tests run as root the server
//! binaries run as the `postgres` system user via `runuser`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tempfile::TempDir;
use tokio::process::Command;

use crate::process::{file_tail, free_port};

/// Where Debian's `postgresql-NN` packages put the server binaries.
const PG_LIB_DIR: &str = "/usr/lib/postgresql";
/// The system user that owns the cluster when the tests run as root.
const PG_OS_USER: &str = "postgres";
/// The cluster's superuser (also the user in every URL).
const PG_SUPERUSER: &str = "postgres";
/// Bound on `initdb`, `pg_ctl start`, `createdb` and `psql`.
const COMMAND_TIMEOUT: Duration = Duration::from_mins(1);
/// `pg_ctl -t` for start and stop, in seconds.
const PG_CTL_WAIT_SECS: &str = "30";

/// A running private Postgres cluster. Dropping it stops the server
/// (`pg_ctl -m fast -w stop`) and deletes its directory.
pub struct Postgres {
    dir: TempDir,
    port: u16,
    bin: PathBuf,
    as_os_user: bool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("bin", &self.bin)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Creates a cluster with `initdb` in a fresh temp dir and starts it on a
    /// free port on 127.0.0.1 (trust auth, `fsync=off`: fast, for tests).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            "--no-sync",
        )
        .await
    }

    /// Like [`Self::start`], with PostgreSQL's own durability settings (every commit
    /// flushed to disk), as an operator runs it: for measurements.
    pub async fn start_durable() -> anyhow::Result<Self> {
        Self::start_with("", "").await
    }

    /// The server's process id (the postmaster; its backends are its children).
    pub fn server_pid(&self) -> anyhow::Result<u32> {
        let path = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("no process id on the first line of {}", path.display()))
    }

    /// Creates and starts the cluster with `server_options` (`-c name=value …`) and
    /// `initdb_options`.
    async fn start_with(server_options: &str, initdb_options: &str) -> anyhow::Result<Self> {
        let bin = find_bin_dir()?;
        let as_os_user = is_root().await?;
        let dir = tempfile::Builder::new()
            .prefix("switchboard-pg-")
            .tempdir()
            .context("creating the PostgreSQL temp dir")?;
        // The postgres user must be able to enter the directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", dir.path().display()))?;
        let cluster = dir.path().join("cluster");
        let sockets = dir.path().join("sock");
        for sub in [&cluster, &sockets] {
            std::fs::create_dir(sub).with_context(|| format!("creating {}", sub.display()))?;
            if as_os_user {
                run(
                    Command::new("chown")
                        .arg(format!("{PG_OS_USER}:{PG_OS_USER}"))
                        .arg(sub),
                    "chown",
                )
                .await?;
            }
        }
        let pg = Self {
            dir,
            port: free_port().context("no free loopback port")?,
            bin,
            as_os_user,
        };
        let data = pg.data_dir();
        run(
            pg.server_command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", PG_SUPERUSER, "-A", "trust", "-E", "UTF8"])
                .arg("--locale=C.UTF-8")
                .args(initdb_options.split_whitespace()),
            "initdb",
        )
        .await?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {server_options}",
            pg.port,
            path_str(&sockets)?
        );
        let started = tokio::time::Instant::now();
        let result = run(
            pg.server_command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(pg.log_path())
                .args(["-w", "-t", PG_CTL_WAIT_SECS, "-o", &options, "start"]),
            "pg_ctl start",
        )
        .await;
        if let Err(e) = result {
            // Dropping `pg` stops a half-started server.
            return Err(anyhow!("{e:#}\n{}", file_tail(&pg.log_path(), 40)));
        }
        eprintln!(
            "PostgreSQL on 127.0.0.1:{} ready after {:.2} s",
            pg.port,
            started.elapsed().as_secs_f64()
        );
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>`.
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PG_SUPERUSER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Creates a database (name: ASCII letters, digits and `_`) and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("database name {name:?} must be non-empty ASCII letters, digits and `_`");
        }
        run(
            Command::new(self.bin.join("createdb"))
                .args(self.client_args())
                .arg(name),
            &format!("createdb {name}"),
        )
        .await?;
        Ok(self.url(name))
    }

    /// Runs `sql` with `psql` in `database` as the superuser; its output (unaligned, tuples
    /// only).
    pub async fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(self.client_args())
            .args(["-d", database, "-At", "-c", sql]);
        let out = tokio::time::timeout(COMMAND_TIMEOUT, command.output())
            .await
            .map_err(|_| anyhow::anyhow!("psql did not finish within {COMMAND_TIMEOUT:?}"))??;
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn client_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            PG_SUPERUSER.into(),
        ]
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("cluster").join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("cluster").join("server.log")
    }

    /// A server binary, run as the `postgres` user when we are root.
    fn server_command(&self, name: &str) -> Command {
        let binary = self.bin.join(name);
        let mut cmd = if self.as_os_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", PG_OS_USER, "--"]).arg(binary);
            cmd
        } else {
            Command::new(binary)
        };
        // runuser keeps the cwd; the postgres user may not be allowed into ours.
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// The synchronous twin of [`Self::server_command`], for `Drop`.
    fn server_command_sync(&self, name: &str) -> std::process::Command {
        let binary = self.bin.join(name);
        let mut cmd = if self.as_os_user {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", PG_OS_USER, "--"]).arg(binary);
            cmd
        } else {
            std::process::Command::new(binary)
        };
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if !self.data_dir().join("postmaster.pid").exists() {
            return;
        }
        // `pg_ctl -t` bounds this; `immediate` is the fallback if fast fails.
        for mode in ["fast", "immediate"] {
            let stopped = self
                .server_command_sync("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", mode, "-w", "-t", PG_CTL_WAIT_SECS, "stop"])
                .status();
            match stopped {
                Ok(status) if status.success() => return,
                Ok(status) => eprintln!("pg_ctl -m {mode} stop: {status}"),
                Err(e) => eprintln!("pg_ctl -m {mode} stop: {e}"),
            }
        }
    }
}

/// The newest `/usr/lib/postgresql/<N>/bin` that has `initdb` and `pg_ctl`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let not_found = || {
        anyhow!(
            "PostgreSQL server binaries not found: install the Debian package postgresql \
             (looked for {PG_LIB_DIR}/<version>/bin/initdb and pg_ctl)"
        )
    };
    let entries = std::fs::read_dir(PG_LIB_DIR).map_err(|_| not_found())?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or_else(not_found)
}

/// Whether this process runs as root (`id -u` prints 0).
async fn is_root() -> anyhow::Result<bool> {
    let uid = run(Command::new("id").arg("-u"), "id -u").await?;
    Ok(uid.trim() == "0")
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("path is not UTF-8: {}", path.display()))
}

/// Runs a command with [`COMMAND_TIMEOUT`] and returns its stdout; a failure
/// quotes stdout and stderr.
async fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    cmd.stdin(Stdio::null())
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what} took longer than {COMMAND_TIMEOUT:?}"))?
        .with_context(|| format!("running {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}
