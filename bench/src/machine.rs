//! A quick probe of the machine's current speed, printed with every result: on a shared VM the
//! same binary measures very differently from one minute to the next, and the probe tells
//! which kind of minute a figure comes from.
//!
//! Two figures, both independent of Switchboard:
//! - **loopback round trip**: two threads of this process exchange a 400-byte request and a
//!   100-byte answer over loopback TCP, one at a time, each blocked in `read` until the other
//!   writes — the kernel's send, receive and wake-up path that every Matrix request takes;
//! - **compute**: a fixed loop of multiply-adds on one thread, which only the CPU's own speed
//!   changes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

/// Round trips of the loopback probe.
const ROUND_TRIPS: u32 = 20_000;
const REQUEST_BYTES: usize = 400;
const ANSWER_BYTES: usize = 100;
/// Iterations of the compute probe.
const COMPUTE_STEPS: u64 = 100_000_000;

/// What the probe measured.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct MachineSpeed {
    /// Mean wall time per loopback round trip, µs.
    pub(crate) loopback_round_trip_us: f64,
    /// Wall time of the compute loop, ms.
    pub(crate) compute_ms: f64,
}

impl std::fmt::Display for MachineSpeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loopback TCP round trip {:.1} µs, compute loop {:.0} ms",
            self.loopback_round_trip_us, self.compute_ms
        )
    }
}

/// Runs both probes (about half a second on a quiet machine, a few seconds on a busy one).
pub(crate) fn probe() -> Result<MachineSpeed> {
    let tenths = |x: f64| (x * 10.0).round() / 10.0;
    Ok(MachineSpeed {
        loopback_round_trip_us: tenths(loopback_round_trip()?.as_secs_f64() * 1e6),
        compute_ms: tenths(compute().as_secs_f64() * 1e3),
    })
}

/// Mean wall time of one request/answer exchange between two threads over loopback TCP.
fn loopback_round_trip() -> Result<Duration> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("probe: cannot listen")?;
    let address = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut request = [0u8; REQUEST_BYTES];
        let answer = [b'a'; ANSWER_BYTES];
        for _ in 0..ROUND_TRIPS {
            stream.read_exact(&mut request)?;
            stream.write_all(&answer)?;
        }
        Ok(())
    });
    let mut client = TcpStream::connect(address).context("probe: cannot connect")?;
    client.set_nodelay(true)?;
    let request = [b'r'; REQUEST_BYTES];
    let mut answer = [0u8; ANSWER_BYTES];
    let started = Instant::now();
    for _ in 0..ROUND_TRIPS {
        client.write_all(&request).context("probe: send")?;
        client.read_exact(&mut answer).context("probe: receive")?;
    }
    let elapsed = started.elapsed();
    server
        .join()
        .map_err(|_| anyhow!("probe: the answering thread panicked"))?
        .context("probe: the answering thread failed")?;
    Ok(elapsed / ROUND_TRIPS)
}

/// Wall time of a fixed chain of dependent multiply-adds.
fn compute() -> Duration {
    let started = Instant::now();
    let mut x: u64 = 1;
    for _ in 0..COMPUTE_STEPS {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    std::hint::black_box(x);
    started.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_both_figures() {
        let speed = probe().expect("probe runs");
        assert!(speed.loopback_round_trip_us > 0.0 && speed.loopback_round_trip_us < 100_000.0);
        assert!(speed.compute_ms > 0.0);
        assert!(speed.to_string().starts_with("loopback TCP round trip "));
    }
}
