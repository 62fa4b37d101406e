//! A real end-to-end-encrypted client for tests: matrix-nio (with vodozemac) installed into the
//! Synapse venv, driven by `e2ee_client.py`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::process::Command;
use tokio::sync::OnceCell;

use super::{acquire_install_lock, ensure_installed, probe, run_bounded, venv_dir};

/// The matrix-nio version installed.
pub const NIO_VERSION: &str = "0.26.0";

static INSTALLED: OnceCell<PathBuf> = OnceCell::const_new();

/// Makes sure matrix-nio [`NIO_VERSION`] with encryption is installed in the Synapse venv
/// (installing Synapse first if needed) and returns the venv's python.
pub async fn ensure_nio_installed() -> anyhow::Result<PathBuf> {
    INSTALLED
        .get_or_try_init(|| async {
            let python = ensure_installed().await?;
            if has_nio(&python).await {
                return Ok(python);
            }
            let _lock = acquire_install_lock(&venv_dir()).await?;
            if !has_nio(&python).await {
                eprintln!(
                    "installing matrix-nio {NIO_VERSION} (with encryption) into the Synapse venv"
                );
                run_bounded(
                    Command::new(&python)
                        .args(["-m", "pip", "install", "-q"])
                        .arg(format!("matrix-nio[e2e]=={NIO_VERSION}"))
                        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
                    "pip install matrix-nio[e2e]",
                )
                .await?;
            }
            if !has_nio(&python).await {
                bail!("pip installed matrix-nio but the venv cannot use its encryption");
            }
            Ok(python)
        })
        .await
        .cloned()
}

async fn has_nio(python: &Path) -> bool {
    probe(
        python,
        &format!(
            "import sys, importlib.metadata; from nio.crypto import ENCRYPTION_ENABLED; \
             sys.exit(not ENCRYPTION_ENABLED or importlib.metadata.version('matrix-nio') != '{NIO_VERSION}')"
        ),
    )
    .await
}

/// Runs `e2ee_client.py` with `args` (see the script's help), bounded by `timeout`, and
/// returns the JSON line it prints.
pub async fn run_e2ee_client(args: &[&str], timeout: Duration) -> anyhow::Result<Value> {
    let python = ensure_nio_installed().await?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/synapse/e2ee_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .context("the E2EE client ran out of time")?
        .context("running the E2EE client")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| {
        format!(
            "the E2EE client printed no result ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
