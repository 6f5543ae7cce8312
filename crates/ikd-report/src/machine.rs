//! When and where a report was written: the UTC time and the machine.

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian calendar).
fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

/// What the report says about the machine that wrote it.
///
/// ```
/// let m = ikd_report::Machine::detect();
/// assert!(m.cores >= 1);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo` (or `unknown`).
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory in GiB from `/proc/meminfo`, when readable.
    pub memory_gib: Option<f64>,
    /// Operating system and architecture.
    pub os: String,
}

impl Machine {
    /// Reads the machine's description.
    ///
    /// ```
    /// println!("{}", ikd_report::Machine::detect().os);
    /// ```
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix("MemTotal:")?;
            let kib: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib / (1024.0 * 1024.0))
        });
        Self {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }

    /// One line for people: CPU, cores, memory, system.
    ///
    /// ```
    /// let m = ikd_report::Machine { cpu: "EPYC".into(), cores: 2, memory_gib: Some(24.0), os: "linux x86_64".into() };
    /// assert_eq!(m.describe(), "EPYC — 2 logical cores, 24 GiB memory, linux x86_64");
    /// ```
    pub fn describe(&self) -> String {
        let mem = self.memory_gib.map_or(String::new(), |g| format!(", {g:.0} GiB memory"));
        format!("{} — {} logical cores{mem}, {}", self.cpu, self.cores, self.os)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert!(utc_now().ends_with(" UTC"));
    }
}
