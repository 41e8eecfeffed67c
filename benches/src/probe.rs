//! Process measurements from /proc: CPU time (utime + stime) and resident memory (VmRSS),
//! for this process or a child.

use std::time::Instant;

/// Clock ticks per second for /proc stat times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// CPU seconds used so far by process `pid` ("self" for this one).
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A CPU reading to measure a window from.
pub struct CpuMark {
    at: Instant,
    secs: f64,
    pid: String,
}

impl CpuMark {
    pub fn now(pid: &str) -> Self {
        Self {
            at: Instant::now(),
            secs: cpu_secs(pid).unwrap_or(0.0),
            pid: pid.into(),
        }
    }

    /// CPU used since the mark as a percentage of one core (200 % = both cores of two).
    pub fn percent(&self) -> f64 {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let used = cpu_secs(&self.pid).unwrap_or(self.secs) - self.secs;
        100.0 * used / wall
    }
}

/// The number of CPUs the machine has online: not the ones this process may run on, which
/// a pinned parent narrows for its children (a measuring child must still pin its sender to
/// a CPU of its own).
pub fn cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|list| count_cpu_list(&list))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The CPUs in a kernel CPU list (`0-3,6,8-9`); `None` when it does not parse.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

/// The machine: CPU model, cores, memory.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_owned(), |s| s.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    serde_json::json!({
        "cpus": cpus(),
        "cpu_model": model,
        "mem_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "pinned": pinned(),
    })
}

/// Whether the sender and the receiver run on cores of their own (set once by `main`).
static PINNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The core senders (child processes) run on; the benchmark process takes the others.
pub const SENDER_CPU: usize = 0;

/// Pins this process (every thread made from now on) to every core but [`SENDER_CPU`],
/// with `taskset`, when the machine has two cores or more and `pin` is set. Returns
/// whether it did; the reason when it could not.
pub fn pin_receiver(pin: bool) -> Result<bool, String> {
    let on = pin && cpus() >= 2;
    let _ = PINNED.set(on);
    if !on {
        return Ok(false);
    }
    taskset_self(&format!("{}-{}", SENDER_CPU + 1, cpus() - 1))?;
    Ok(true)
}

/// Lets this process (every thread) run on every core again, the sender's included, while
/// `f` runs, then pins it back as [`pin_receiver`] did: a host with more core threads than
/// the receiver's cores gets a CPU for each (sharing the sender's). Nothing to do unpinned.
pub async fn unpinned<T>(f: impl std::future::Future<Output = T>) -> Result<T, String> {
    if !pinned() {
        return Ok(f.await);
    }
    let all = format!("0-{}", cpus() - 1);
    taskset_self(&all)?;
    let out = f.await;
    taskset_self(&format!("{}-{}", SENDER_CPU + 1, cpus() - 1))?;
    Ok(out)
}

/// `taskset -a -p -c <cores>` on this process.
fn taskset_self(cores: &str) -> Result<(), String> {
    let out = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &std::process::id().to_string()])
        .output()
        .map_err(|e| format!("cannot run taskset (util-linux): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "taskset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The CPUs process `pid` (or `self`) may run on, as the kernel lists them
/// (`Cpus_allowed_list` of `/proc/<pid>/status`); `?` when unreadable.
pub fn allowed_cpus(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// Whether [`pin_receiver`] pinned this process.
pub fn pinned() -> bool {
    PINNED.get().copied().unwrap_or(false)
}

/// A command for a sender child: on [`SENDER_CPU`] alone when pinned.
pub fn sender_command(exe: &std::path::Path) -> tokio::process::Command {
    if pinned() {
        let mut c = tokio::process::Command::new("taskset");
        c.arg("-c").arg(SENDER_CPU.to_string()).arg(exe);
        c
    } else {
        tokio::process::Command::new(exe)
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit, so thousands of sockets do
/// not hit a default soft limit of 1024; returns (soft before, soft now, hard). A limit that
/// cannot be raised is kept and reported.
pub fn raise_nofile() -> Result<(u64, u64, u64), String> {
    let (was, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("cannot read RLIMIT_NOFILE: {e}"))?;
    let now = rlimit::increase_nofile_limit(hard)
        .map_err(|e| format!("cannot raise RLIMIT_NOFILE from {was} to {hard}: {e}"))?;
    Ok((was, now, hard))
}

/// The soft RLIMIT_NOFILE now.
pub fn nofile() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
}

/// How many local ports loopback connections can take (`ip_local_port_range`), if readable.
pub fn local_ports() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_kernel_cpu_list_counts_its_cpus() {
        assert_eq!(super::count_cpu_list("0-1\n"), Some(2));
        assert_eq!(super::count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(super::count_cpu_list("0"), Some(1));
        assert_eq!(super::count_cpu_list(""), None);
        assert_eq!(super::count_cpu_list("3-1"), None);
        assert_eq!(super::count_cpu_list("x"), None);
    }
}
