//! CPU time of processes, read from `/proc/{pid}/stat`: the service's (`--pid`) and the
//! generator's own, sampled at the edges of the measured window, so a run reports CPU per
//! request next to throughput — steadier than throughput on a shared host, and the generator's
//! own share shows whether it distorted the figure.

use std::time::Duration;

/// Linux reports `utime`/`stime` in clock ticks of `USER_HZ`, which the kernel fixes at 100 for
/// every user-space ABI (`sysconf(_SC_CLK_TCK)`), whatever its internal tick rate.
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time of every thread of `pid` so far; `None` when the process does not
/// exist or the file cannot be read (not Linux, another user's process under hardening).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This process's CPU time so far.
pub fn own_cpu() -> Option<Duration> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/{pid}/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself, so fields are counted after
/// the last `)`.
fn parse_stat(line: &str) -> Option<Duration> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3, so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(
        ticks.checked_mul(1000 / TICKS_PER_SECOND)?,
    ))
}

/// CPU time spent inside the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowCpu {
    /// The service's (`--pid`), when given and readable at both edges.
    pub server: Option<Duration>,
    /// The generator's own, when readable at both edges.
    pub loadgen: Option<Duration>,
}

/// A sample at one edge of the window.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    server: Option<Duration>,
    loadgen: Option<Duration>,
}

impl Sample {
    /// Now, for the service `pid` (if any) and this process.
    pub fn take(pid: Option<u32>) -> Self {
        Self {
            server: pid.and_then(process_cpu),
            loadgen: own_cpu(),
        }
    }

    /// The CPU spent between `self` and `later`.
    pub fn until(self, later: Sample) -> WindowCpu {
        let diff = |a: Option<Duration>, b: Option<Duration>| b?.checked_sub(a?);
        WindowCpu {
            server: diff(self.server, later.server),
            loadgen: diff(self.loadgen, later.loadgen),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis; utime 250 and stime 50 ticks.
        let line = "4242 (we(ird name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 \
                    1000 0 0";
        assert_eq!(parse_stat(line), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_burns_measurable_cpu() {
        let me = Some(std::process::id());
        let before = Sample::take(me);
        // Spin until the kernel has counted 60 ms of CPU (by CPU, not by the clock: on a busy
        // machine the thread may get a small share of the wall time).
        let start = own_cpu().unwrap();
        let mut x = 0u64;
        while own_cpu().unwrap() < start + Duration::from_millis(60) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let cpu = before.until(Sample::take(me));
        assert!(cpu.loadgen.unwrap() >= Duration::from_millis(60), "{cpu:?}");
        assert!(cpu.server.unwrap() >= Duration::from_millis(60), "{cpu:?}");
        assert_eq!(Sample::take(Some(u32::MAX)).server, None);
    }
}
