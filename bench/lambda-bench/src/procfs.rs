//! What the benchmark reads about a running function process from `/proc`: CPU time per
//! thread in nanoseconds, resident memory, and the reset of the peak-RSS watermark so each
//! invocation's peak is its own.

use std::collections::HashMap;
use std::fs;

/// CPU time of each live thread of `pid`, in nanoseconds, keyed by thread id.
///
/// `/proc/<pid>/stat`'s utime+stime count clock ticks (10 ms here), too coarse for a
/// 15 ms goal; `task/<tid>/schedstat`'s first field is the scheduler's exact run time.
/// Threads that exit between two readings take their time with them; the runtimes here
/// keep their threads (tokio's blocking pool idles 10 s), so that loss is rare.
pub fn thread_cpu_ns(pid: u32) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(ns) = fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            out.insert(tid, ns);
        }
    }
    out
}

/// CPU nanoseconds spent between two [`thread_cpu_ns`] readings (threads born in between
/// count from zero).
pub fn cpu_delta_ns(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// Total CPU nanoseconds of the live threads of `pid` since they started.
pub fn cpu_total_ns(pid: u32) -> u64 {
    thread_cpu_ns(pid).values().sum()
}

/// CPU time of the whole process `pid` in nanoseconds, exited threads included, from
/// `/proc/<pid>/stat` utime+stime: clock ticks of 10 ms (USER_HZ is 100 on Linux). For a
/// thread-per-request server such as moto, whose threads are gone by the next reading.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Resets `VmHWM` to the current RSS (`clear_refs` value 5, Linux 4.0+), so the next
/// reading is the peak of what ran in between rather than of the process's whole life.
pub fn reset_peak_rss(pid: u32) -> std::io::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let before = thread_cpu_ns(pid);
        assert!(!before.is_empty(), "schedstat unreadable");
        // Burn a little CPU so the delta is visibly positive.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = thread_cpu_ns(pid);
        assert!(cpu_delta_ns(&before, &after) > 0);
        assert!(process_cpu_ns(pid).is_some());
        let rss = status_kb(pid, "VmRSS").unwrap_or(0);
        assert!(rss > 0);
        reset_peak_rss(pid).unwrap_or(());
        let hwm = status_kb(pid, "VmHWM").unwrap_or(0);
        assert!(hwm > 0);
    }

    #[test]
    fn delta_counts_new_threads_from_zero_and_ignores_gone_ones() {
        let before = HashMap::from([(1, 100), (2, 50)]);
        let after = HashMap::from([(1, 160), (3, 7)]);
        assert_eq!(cpu_delta_ns(&before, &after), 67);
    }
}
