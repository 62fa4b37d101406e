//! Process figures from `/proc`: CPU time (utime + stime) and resident memory.

use anyhow::{Context, Result, bail};

/// Which process to read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pid {
    /// The bench itself.
    OurSelf,
    /// Another process.
    Id(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::OurSelf => "/proc/self".to_owned(),
            Pid::Id(pid) => format!("/proc/{pid}"),
        }
    }
}

/// User + system CPU time of `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: Pid) -> Result<u64> {
    let path = format!("{}/stat", pid.dir());
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("unexpected format of {path}"))
}

/// User + system CPU time of process `root` and its children (a PostgreSQL server and its
/// backends), in clock ticks. A child that ends between two readings takes its time with it:
/// the pool's connections live as long as Switchboard.
pub(crate) fn tree_cpu_ticks(root: u32) -> Result<u64> {
    let mut total = cpu_ticks(Pid::Id(root))?;
    let entries = std::fs::read_dir("/proc").context("cannot list /proc")?;
    for entry in entries.filter_map(std::result::Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end while the list is read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if parse_field(&stat, 4).ok() == Some(u64::from(root)) {
            total += parse_cpu_ticks(&stat).unwrap_or(0);
        }
    }
    Ok(total)
}

/// Field `n` (numbered as in proc(5), from 3 on) of a `/proc/<pid>/stat` line. The command
/// name (field 2) may contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_field(stat: &str, n: usize) -> Result<u64> {
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' after the command name");
    };
    // After ')' come field 3 (state), 4, … so field N is at index N - 3.
    stat[close + 1..]
        .split_whitespace()
        .nth(n - 3)
        .with_context(|| format!("field {n} missing"))?
        .parse::<u64>()
        .with_context(|| format!("field {n} is not a number"))
}

/// utime (field 14) + stime (field 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    Ok(parse_field(stat, 14)? + parse_field(stat, 15)?)
}

/// A `kB` field of `/proc/<pid>/status` (e.g. `VmRSS`, `VmHWM`), in kB.
pub(crate) fn status_kb(pid: Pid, key: &str) -> Result<u64> {
    let path = format!("{}/status", pid.dir());
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status_kb(&status, key).with_context(|| format!("{key} in {path}"))
}

fn parse_status_kb(status: &str, key: &str) -> Result<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .context("field missing")?;
    let number = line.split_whitespace().next().context("field is empty")?;
    number.parse().context("field is not a number")
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 if that cannot be run.
pub(crate) fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat).expect("parses"), 22);
    }

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tswitchboard\nVmHWM:\t   12345 kB\nVmRSS:\t    8000 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS").expect("parses"), 8000);
        assert_eq!(parse_status_kb(status, "VmHWM").expect("parses"), 12345);
        assert!(parse_status_kb(status, "VmSwap").is_err());
    }

    #[test]
    fn a_process_tree_counts_the_root_and_its_children() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("sh");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let child_ticks = cpu_ticks(Pid::Id(child.id())).expect("child");
        let own = cpu_ticks(Pid::Id(std::process::id())).expect("own");
        let tree = tree_cpu_ticks(std::process::id()).expect("tree");
        let _ = child.kill();
        let _ = child.wait();
        assert!(child_ticks > 0, "the child used CPU");
        assert!(tree >= own + child_ticks, "{tree} ≥ {own} + {child_ticks}");
    }
}
