//! Machine facts and the command line, gathered before a run and printed with its figures (shared by the benchmark
//! programs): cores, CPU, memory, the load average (other work on the machine shows up in the figures), the scratch
//! directory's file system, the date.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Machine facts and the command line, gathered before the run.
pub struct Facts {
    pub date_utc: String,
    pub cores: usize,
    pub cpu: String,
    pub memory: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the facts were gathered.
    pub load_average: String,
    pub scratch: String,
    pub command: String,
}

impl Facts {
    pub fn gather(scratch_dir: &Path) -> Facts {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(|| "unknown".to_string(), |kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)));
        Facts {
            date_utc: now_utc(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory,
            load_average: load_average(),
            scratch: format!("{} ({})", scratch_dir.display(), filesystem_of(scratch_dir)),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}

impl Facts {
    /// The facts as Markdown list items, one per line.
    pub fn markdown(&self) -> String {
        format!(
            "- date: {}\n- machine: {} cores (available_parallelism), {}, {} RAM; load average {} at the start\n\
             - data files: {}\n- command: `{}`",
            self.date_utc, self.cores, self.cpu, self.memory, self.load_average, self.scratch, self.command
        )
    }
}

/// `/proc/loadavg`'s three averages, `1.23 0.98 0.71` ("unknown" when unreadable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The file system type of the mount holding `dir` (longest mount-point prefix in `/proc/mounts`): fsync costs
/// nothing on tmpfs, which would flatter both systems' writes.
fn filesystem_of(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point).then(|| (point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown file system".to_string(), |(_, fs)| fs)
}

/// `YYYY-MM-DD HH:MM UTC`, from the system clock (no time-zone database needed).
fn now_utc() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).expect("days since 1970 fit in i64"));
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Howard Hinnant's days-to-civil algorithm: days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }
}
