//! Helpers for tests that run servers as processes: a free loopback port, waiting for a
//! condition with a deadline, and the tail of a log file for error messages.

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

/// How often [`wait_until`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released again before this returns, so another process can
/// in principle grab it in between; ports are taken below the ephemeral range,
/// which outgoing connections use, to make that rare.
pub fn free_port() -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Ports below the kernel's ephemeral range: the source ports of the many connections a
    // test run makes come from that range, and could take a port between its release here
    // and its use by a server. Handed out in turn from a random start, each checked free.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let ceiling = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(4096, 65535);
    let floor = ceiling.saturating_sub(12_000).max(1024);
    let span = ceiling - floor;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        rand::random::<u32>() % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = floor + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
}

/// Calls `f` every 50 ms until it returns `Some`, and returns that value.
///
/// Fails with an error naming `what` once `timeout` has passed. A single call
/// of `f` that hangs is cut off at the deadline too, so this is always bounded.
pub async fn wait_until<F, Fut, T>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(_) => break,
        }
        if Instant::now() + POLL_INTERVAL > deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// The last `lines` lines of a text file, or a note on why it could not be read.
#[must_use]
pub fn file_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!(
                "--- last {} lines of {} ---\n{}",
                all.len() - start,
                path.display(),
                all[start..].join("\n")
            )
        }
        Err(e) => format!("--- {} not readable: {e} ---", path.display()),
    }
}
