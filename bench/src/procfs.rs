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

/// utime (field 14) + stime (field 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    let Some(close) = stat.rfind(')') else {
        bail!("no ')' after the command name");
    };
    // After ')' come field 3 (state), 4, … so field N is at index N - 3.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("field {n} missing"))?
            .parse::<u64>()
            .with_context(|| format!("field {n} is not a number"))
    };
    Ok(field(14)? + field(15)?)
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
}
