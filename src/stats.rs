//! Processed and failed counters: counted in memory, flushed to Redis in one pipeline.
//!
//! Keys as Sidekiq writes them: `stat:processed` (every run, failures included),
//! `stat:failed`, and the UTC-dated `stat:processed:YYYY-MM-DD` / `stat:failed:YYYY-MM-DD`
//! with a 5-year TTL. Counting in memory keeps Redis off the per-job path; a flush that
//! fails puts its counts back to be flushed next time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use redis::aio::ConnectionManager;

use crate::keys::Keys;

/// Sidekiq's `STATS_TTL`: daily counters live five years.
pub const STATS_TTL_SECS: i64 = 5 * 365 * 24 * 60 * 60;

/// Counters of one server process not yet written to Redis.
#[derive(Debug, Default)]
pub struct Stats {
    processed: AtomicU64,
    failed: AtomicU64,
}

impl Stats {
    /// Counts one job run.
    pub fn record(&self, failed: bool) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the pending counts to Redis; on error they are kept for the next flush.
    pub async fn flush(&self, conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<()> {
        let processed = self.processed.swap(0, Ordering::Relaxed);
        let failed = self.failed.swap(0, Ordering::Relaxed);
        if processed == 0 && failed == 0 {
            return Ok(());
        }
        let date = utc_date(SystemTime::now());
        let mut pipe = redis::pipe();
        for (name, count) in [("processed", processed), ("failed", failed)] {
            if count > 0 {
                let daily = keys.stat_daily(name, &date);
                pipe.incr(keys.stat(name), count).ignore();
                pipe.incr(&daily, count).ignore();
                pipe.expire(&daily, STATS_TTL_SECS).ignore();
            }
        }
        let result = pipe.query_async::<()>(conn).await;
        if result.is_err() {
            self.processed.fetch_add(processed, Ordering::Relaxed);
            self.failed.fetch_add(failed, Ordering::Relaxed);
        }
        result
    }
}

/// The UTC date of `time` as `YYYY-MM-DD`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_795_714_845);
/// assert_eq!(psychiq::stats::utc_date(t), "2026-11-26");
/// ```
pub fn utc_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a (year, month, day) date: Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_leap_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }
}
