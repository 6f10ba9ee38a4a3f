//! Metrics read from elsewhere at scrape time: the store's commit statistics (kept by the
//! writer in [`CommitStats`](crate::runtime::CommitStats)), and
//! the process's RSS, open file descriptors and CPU time (from /proc).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::runtime::{BATCH_BUCKETS, COMMIT_MICROS_BUCKETS, Ledger};

/// Encodes the store's commit histograms and the process figures when scraped.
pub(super) struct Collected {
    pub ledger: Arc<Ledger>,
}

impl std::fmt::Debug for Collected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collected")
    }
}

impl Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.ledger.stats().snapshot();
        // Bucket counts are per bucket; the last one (above every bound) is +Inf, which
        // the encoder writes from the total.
        let latency: Vec<(f64, u64)> = COMMIT_MICROS_BUCKETS
            .iter()
            .map(|&b| b as f64 / 1e6)
            .zip(stats.latency.iter().copied())
            .collect();
        encoder
            .encode_descriptor(
                "rentabot_store_commit_duration_seconds",
                "How long each store transaction took to commit, retries included (none in memory)",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(
                stats.micros as f64 / 1e6,
                stats.commits,
                &latency,
                None,
            )?;
        let size: Vec<(f64, u64)> = BATCH_BUCKETS
            .iter()
            .map(|&b| b as f64)
            .zip(stats.size.iter().copied())
            .collect();
        encoder
            .encode_descriptor(
                "rentabot_store_commit_batch_size",
                "Changes per store transaction (group commit)",
                None,
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(stats.changes as f64, stats.commits, &size, None)?;

        let process = Process::read();
        if let Some(rss) = process.rss_bytes {
            encoder
                .encode_descriptor(
                    "rentabot_process_resident_memory_bytes",
                    "Resident memory of the process (/proc/self/statm)",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&rss)?;
        }
        if let Some(fds) = process.open_fds {
            encoder
                .encode_descriptor(
                    "rentabot_process_open_fds",
                    "Open file descriptors of the process (/proc/self/fd)",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&fds)?;
        }
        if let Some(cpu) = process.cpu_seconds {
            encoder
                .encode_descriptor(
                    "rentabot_process_cpu_seconds",
                    "CPU time of the process, user and system (/proc/self/stat)",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, _, u64>(&cpu, None)?;
        }
        Ok(())
    }
}

/// What /proc says of this process; `None` where it cannot be read (not Linux).
#[derive(Debug, Default)]
struct Process {
    rss_bytes: Option<i64>,
    open_fds: Option<i64>,
    cpu_seconds: Option<f64>,
}

impl Process {
    fn read() -> Process {
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // SAFETY: as above.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
            .map(|pages| pages * page as i64);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| i64::try_from(d.count()).unwrap_or(i64::MAX));
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // After the command name (in parentheses, which may hold spaces), fields
                // 14 and 15 are utime and stime: the 12th and 13th after `) `.
                let rest = &s[s.rfind(')')? + 2..];
                let mut fields = rest.split_whitespace().skip(11);
                let utime: u64 = fields.next()?.parse().ok()?;
                let stime: u64 = fields.next()?.parse().ok()?;
                (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
            });
        Process {
            rss_bytes,
            open_fds,
            cpu_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_read_on_linux() {
        let p = Process::read();
        if cfg!(target_os = "linux") {
            assert!(p.rss_bytes.is_some_and(|b| b > 1_000_000), "{p:?}");
            assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
            assert!(p.cpu_seconds.is_some_and(|s| s >= 0.0), "{p:?}");
        }
    }
}
