//! Processed and failed counters: counted in memory, flushed to Redis in one pipeline.
//!
//! Keys as Sidekiq writes them: `stat:processed` (every run, failures included),
//! `stat:failed`, Psychiq's own `stat:discarded` (jobs dropped on purpose: expired, or
//! discarded by their worker), and the UTC-dated `stat:processed:YYYY-MM-DD` / `stat:failed:YYYY-MM-DD`
//! with a 5-year TTL. Per-class metrics (runs, failures, total seconds and a duration
//! histogram) go to `metrics:class:CLASS` hashes, listed in the `metrics:classes` set, for
//! Psychiq's dashboard and Prometheus; the same runs are also written in Sidekiq 7.3's and
//! 8.0's metrics layouts ([`sidekiq_metrics`]), so the Metrics tab of Sidekiq's own dashboard
//! shows Psychiq's jobs. Counting in memory keeps Redis off the per-job path; a flush that
//! fails puts its counts back to be flushed next time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::store::connection::Connection;

use crate::store::keys::Keys;

/// Sidekiq's `STATS_TTL`: daily counters live five years.
pub const STATS_TTL_SECS: i64 = 5 * 365 * 24 * 60 * 60;

/// Upper bounds (seconds) of the per-class duration histogram, as Prometheus buckets.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

/// Runs of one class since the last flush.
#[derive(Debug, Default, Clone)]
struct ClassCounts {
    count: u64,
    failed: u64,
    secs: f64,
    /// Runs per bucket of [`DURATION_BUCKETS`], plus one past the last bound.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Milliseconds spent in successful runs (Sidekiq times successes only).
    ok_ms: u64,
    /// Successful runs per bucket of Sidekiq's histogram ([`SIDEKIQ_BUCKETS_MS`], plus "Slow").
    sidekiq_buckets: [u64; SIDEKIQ_BUCKETS_MS.len() + 1],
}

impl ClassCounts {
    fn add(&mut self, other: &ClassCounts) {
        self.count += other.count;
        self.failed += other.failed;
        self.secs += other.secs;
        self.ok_ms += other.ok_ms;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        for (a, b) in self.sidekiq_buckets.iter_mut().zip(other.sidekiq_buckets) {
            *a += b;
        }
    }
}

/// Counters of one server process not yet written to Redis.
#[derive(Debug, Default)]
pub struct Stats {
    processed: AtomicU64,
    failed: AtomicU64,
    /// Jobs dropped on purpose ([`crate::Outcome::Discarded`]: expired, or discarded by
    /// their worker), also counted as processed.
    discarded: AtomicU64,
    classes: Mutex<HashMap<String, ClassCounts>>,
}

impl Stats {
    /// Counts one job run.
    pub fn record(&self, failed: bool) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one discarded job (besides [`Stats::record`]).
    pub fn record_discarded(&self) {
        self.discarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one run of `perform` for the per-class metrics (count, failures, duration).
    pub fn record_class(&self, class: &str, elapsed: Duration, failed: bool) {
        let secs = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        let mut classes = self.classes.lock().expect("class metrics lock");
        let counts = match classes.get_mut(class) {
            Some(counts) => counts,
            None => classes.entry(class.to_string()).or_default(),
        };
        counts.count += 1;
        counts.failed += u64::from(failed);
        counts.secs += secs;
        counts.buckets[bucket] += 1;
        if !failed {
            let ms = elapsed.as_millis() as u64;
            counts.ok_ms += ms;
            let bucket = SIDEKIQ_BUCKETS_MS
                .iter()
                .position(|bound| ms < *bound)
                .unwrap_or(SIDEKIQ_BUCKETS_MS.len());
            counts.sidekiq_buckets[bucket] += 1;
        }
    }

    /// Adds the pending counts to Redis; on error they are kept for the next flush.
    pub async fn flush(&self, conn: &mut Connection, keys: &Keys) -> redis::RedisResult<()> {
        let processed = self.processed.swap(0, Ordering::Relaxed);
        let failed = self.failed.swap(0, Ordering::Relaxed);
        let discarded = self.discarded.swap(0, Ordering::Relaxed);
        let classes = std::mem::take(&mut *self.classes.lock().expect("class metrics lock"));
        if processed == 0 && failed == 0 && discarded == 0 && classes.is_empty() {
            return Ok(());
        }
        let date = utc_date(SystemTime::now());
        let mut pipe = redis::pipe();
        for (class, counts) in &classes {
            let key = keys.class_metrics(class);
            pipe.sadd(keys.key("metrics:classes"), class).ignore();
            pipe.hincr(&key, "count", counts.count).ignore();
            pipe.hincr(&key, "failed", counts.failed).ignore();
            pipe.cmd("HINCRBYFLOAT")
                .arg(&key)
                .arg("secs")
                .arg(counts.secs)
                .ignore();
            for (i, n) in counts.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
                pipe.hincr(&key, format!("b{i}"), *n).ignore();
            }
        }
        if !classes.is_empty() {
            sidekiq_metrics(&mut pipe, keys, &classes, SystemTime::now());
        }
        let counters = [
            ("processed", processed),
            ("failed", failed),
            ("discarded", discarded),
        ];
        for (name, count) in counters {
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
            self.discarded.fetch_add(discarded, Ordering::Relaxed);
            let mut pending = self.classes.lock().expect("class metrics lock");
            for (class, counts) in classes {
                pending.entry(class).or_default().add(&counts);
            }
        }
        result
    }
}

/// `Sidekiq::Metrics::Histogram::BUCKET_INTERVALS` (7.3 and 8.0): upper bounds in ms, with a
/// last "Slow" bucket past them.
const SIDEKIQ_BUCKETS_MS: [u64; 25] = [
    20, 30, 45, 65, 100, 150, 225, 335, 500, 750, 1_100, 1_700, 2_500, 3_800, 5_750, 8_500, 13_000,
    20_000, 30_000, 45_000, 65_000, 100_000, 150_000, 225_000, 335_000,
];
/// How long Sidekiq keeps its minute buckets and histograms (`SHORT_TERM`, `HISTOGRAM_TTL`).
const SIDEKIQ_SHORT_TERM_SECS: i64 = 8 * 60 * 60;
/// How long Sidekiq 8 keeps its 10-minute buckets (`MID_TERM`).
const SIDEKIQ_MID_TERM_SECS: i64 = 3 * 24 * 60 * 60;

/// The name of Sidekiq 8's per-minute metrics hash holding epoch second `secs`
/// (`j|261202|9:05`), or of its 10-minute rollup (`j|261202|9:0`): the one place these names
/// are made, for the servers that write them and the API that charts them.
pub(crate) fn sidekiq_8_bucket(secs: u64, ten_minutes: bool) -> String {
    let (year, month, day) = crate::clock::civil_from_days((secs / 86_400) as i64);
    let (hour, minute) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    let yy = year % 100;
    if ten_minutes {
        format!("j|{yy:02}{month:02}{day:02}|{hour}:{}", minute / 10)
    } else {
        format!("j|{yy:02}{month:02}{day:02}|{hour}:{minute:02}")
    }
}

/// Adds the runs of `classes` to the keys Sidekiq's metrics read (`lib/sidekiq/metrics/` of
/// 7.3.10 and 8.0.10), in the minute of `now`: a hash of `CLASS|p` (runs), `CLASS|f`
/// (failures) and `CLASS|ms` (time in successful runs) per minute, and a BITFIELD of 26 u16
/// counters per class and minute for the histogram. The two versions name them differently,
/// so both are written: 7.3 `j|20261202|9:5` and `CLASS-02-09:5`; 8.0 `j|261202|9:05`, its
/// 10-minute rollup `j|261202|9:0`, and `h|CLASS-2-9:5`.
fn sidekiq_metrics(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    classes: &HashMap<String, ClassCounts>,
    now: SystemTime,
) {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = crate::clock::civil_from_days((secs / 86_400) as i64);
    let (hour, minute) = ((secs % 86_400) / 3_600, (secs % 3_600) / 60);
    let buckets = [
        (
            format!("j|{year:04}{month:02}{day:02}|{hour}:{minute}"),
            SIDEKIQ_SHORT_TERM_SECS,
        ),
        (sidekiq_8_bucket(secs, false), SIDEKIQ_SHORT_TERM_SECS),
        (sidekiq_8_bucket(secs, true), SIDEKIQ_MID_TERM_SECS),
    ];
    for (bucket, ttl) in &buckets {
        let key = keys.key(bucket);
        for (class, counts) in classes {
            pipe.hincr(&key, format!("{class}|p"), counts.count)
                .ignore();
            if counts.failed > 0 {
                pipe.hincr(&key, format!("{class}|f"), counts.failed)
                    .ignore();
            }
            if counts.count > counts.failed {
                pipe.hincr(&key, format!("{class}|ms"), counts.ok_ms)
                    .ignore();
            }
        }
        pipe.expire(&key, *ttl).ignore();
    }
    for (class, counts) in classes {
        if counts.sidekiq_buckets.iter().all(|n| *n == 0) {
            continue;
        }
        for histogram in [
            format!("{class}-{day:02}-{hour:02}:{minute}"),
            format!("h|{class}-{day}-{hour}:{minute}"),
        ] {
            let key = keys.key(&histogram);
            let mut bitfield = redis::cmd("BITFIELD");
            bitfield.arg(&key).arg("OVERFLOW").arg("SAT");
            for (i, n) in counts
                .sidekiq_buckets
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
            {
                bitfield
                    .arg("INCRBY")
                    .arg("u16")
                    .arg(format!("#{i}"))
                    .arg(*n);
            }
            pipe.add_command(bitfield).ignore();
            pipe.expire(&key, SIDEKIQ_SHORT_TERM_SECS).ignore();
        }
    }
}

/// The UTC date of `time` as `YYYY-MM-DD`.
pub fn utc_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = crate::clock::civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidekiq_metrics_keys_are_each_versions_own() {
        let mut classes = HashMap::new();
        let mut counts = ClassCounts {
            count: 3,
            failed: 1,
            ok_ms: 40,
            ..ClassCounts::default()
        };
        counts.sidekiq_buckets[1] = 2;
        classes.insert("Billing::Charge".to_string(), counts);
        // 2026-12-02 09:05:30 UTC.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_202_330);
        let mut pipe = redis::pipe();
        sidekiq_metrics(&mut pipe, &Keys::new(""), &classes, now);
        let written = String::from_utf8_lossy(&pipe.get_packed_pipeline()).to_string();
        for key in [
            "j|20261202|9:5",
            "j|261202|9:05",
            "j|261202|9:0\r\n",
            "Billing::Charge-02-09:5",
            "h|Billing::Charge-2-9:5",
            "Billing::Charge|p",
            "Billing::Charge|f",
            "Billing::Charge|ms",
        ] {
            assert!(written.contains(key), "{key} in {written}");
        }
    }

    #[test]
    fn dates_around_leap_days() {
        assert_eq!(crate::clock::civil_from_days(0), (1970, 1, 1));
        assert_eq!(crate::clock::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(crate::clock::civil_from_days(20_513), (2026, 3, 1));
    }
}

#[cfg(test)]
mod examples {
    // Usage examples of internal helpers (doc examples before these became crate-private).
    #[test]
    fn utc_date_example() {
        use std::time::{Duration, UNIX_EPOCH};
        let t = UNIX_EPOCH + Duration::from_secs(1_795_714_845);
        assert_eq!(crate::server::stats::utc_date(t), "2026-11-26");
    }
}
