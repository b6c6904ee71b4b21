//! The figures: totals and history (`stat:*`), and per-class metrics and time series (Sidekiq 7/8's metric keys).

use super::*;

/// Totals, as `Sidekiq::Stats` gives them.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Jobs run, failures included (`stat:processed`).
    pub processed: u64,
    /// Jobs that failed (`stat:failed`).
    pub failed: u64,
    /// Jobs dropped unrun or unfinished, not failed: expired, or discarded by the job or a
    /// middleware (`stat:discarded`).
    pub discarded: u64,
    /// Jobs waiting in all queues.
    pub enqueued: u64,
    /// Jobs in the `schedule` set.
    pub scheduled: u64,
    /// Jobs in the `retry` set.
    pub retries: u64,
    /// Jobs in the `dead` set.
    pub dead: u64,
    /// Server processes with a live heartbeat.
    pub processes: u64,
    /// Jobs running now, summed over the live processes' heartbeats.
    pub busy: u64,
    /// Seconds the oldest job of queue `default` has waited (0 when it is empty).
    pub default_queue_latency: f64,
    /// Every known queue, by name.
    pub queues: Vec<QueueSummary>,
}

/// One UTC day's counters.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DayStats {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Jobs run that day.
    pub processed: u64,
    /// Jobs failed that day.
    pub failed: u64,
}

/// Per-class figures over time (see [`Api::class_series`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClassSeries {
    /// When each point starts (epoch seconds), oldest first.
    pub starts: Vec<u64>,
    /// The seconds each point covers (60, or 600 beyond 8 hours).
    pub step_secs: u64,
    /// Each class seen in the range, busiest first.
    pub classes: Vec<ClassPoints>,
}

/// One class's figures per point of a [`ClassSeries`].
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClassPoints {
    /// The job class.
    pub class: String,
    /// Runs of `perform` in each point.
    pub runs: Vec<u64>,
    /// Runs that failed.
    pub failed: Vec<u64>,
    /// Milliseconds spent in runs that succeeded.
    pub ms: Vec<u64>,
}

impl ClassPoints {
    /// Over the whole range: runs, failures, and the mean milliseconds of a successful run
    /// (`None` without one).
    pub fn totals(&self) -> (u64, u64, Option<f64>) {
        let (runs, failed) = (
            self.runs.iter().sum::<u64>(),
            self.failed.iter().sum::<u64>(),
        );
        let ok = runs.saturating_sub(failed);
        let mean = (ok > 0).then(|| self.ms.iter().sum::<u64>() as f64 / ok as f64);
        (runs, failed, mean)
    }
}

/// Runs of one worker class, summed over every server since the metrics began.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClassMetrics {
    /// The job class.
    pub class: String,
    /// Runs of `perform`.
    pub count: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Total seconds spent in `perform`.
    pub secs: f64,
    /// Runs per duration bucket (upper bounds 0.001, 0.005, 0.01 ... 60, 300 s; not cumulative), plus one
    /// past the last bound.
    pub buckets: Vec<u64>,
}

impl ClassMetrics {
    /// Mean seconds a run.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.secs / self.count as f64
        }
    }

    /// The upper bound of the bucket holding the 95th percentile run (`INFINITY` when it is
    /// past the last bound).
    pub fn p95(&self) -> f64 {
        let target = (self.count as f64 * 0.95).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                return crate::server::stats::DURATION_BUCKETS
                    .get(i)
                    .copied()
                    .unwrap_or(f64::INFINITY);
            }
        }
        0.0
    }
}

impl Api {
    /// Totals, queue sizes and latencies, and the live processes' busy count.
    pub async fn stats(&self) -> Result<Stats> {
        let mut pipe = redis::pipe();
        pipe.get(self.keys.stat("processed"))
            .get(self.keys.stat("failed"))
            .get(self.keys.stat("discarded"));
        // The three sets' sizes in the same round trip (every queue's, in the cluster layout).
        let queues = self.queues_with_sets().await?;
        let kinds = [SetKind::Scheduled, SetKind::Retry, SetKind::Dead];
        let per_kind = self.sets(kinds[0], &queues).len();
        for kind in kinds {
            for (key, _) in self.sets(kind, &queues) {
                pipe.zcard(key);
            }
        }
        let replies: Vec<redis::Value> = self.query_pipe(&pipe).await?;
        let read = |value: &redis::Value| -> Result<Option<Vec<u8>>> {
            redis::from_redis_value_ref(value).map_err(|e| self.config.redis_error(e.into()))
        };
        // Counters may be missing (nil) or written by Ruby as text.
        let (processed, failed, discarded) =
            (read(&replies[0])?, read(&replies[1])?, read(&replies[2])?);
        let mut sizes = [0u64; 3];
        for (i, value) in replies[3..].iter().enumerate() {
            let size: u64 = redis::from_redis_value_ref(value)
                .map_err(|e| self.config.redis_error(e.into()))?;
            sizes[i / per_kind] += size;
        }
        let [scheduled, retries, dead] = sizes;
        let (processed, failed) = (counter(processed), counter(failed));
        let queues = self.queues().await?;
        let processes = self.processes().await?;
        Ok(Stats {
            processed,
            failed,
            discarded: counter(discarded),
            enqueued: queues.iter().map(|q| q.size).sum(),
            scheduled,
            retries,
            dead,
            processes: processes.len() as u64,
            busy: processes.iter().map(|p| p.busy).sum(),
            default_queue_latency: queues
                .iter()
                .find(|q| q.name == "default")
                .map_or(0.0, |q| q.latency),
            queues,
        })
    }

    /// Processed and failed per UTC day, newest first, for the `days` days up to `until`.
    pub async fn history(&self, days: u32, until: SystemTime) -> Result<Vec<DayStats>> {
        let dates: Vec<String> = (0..days.clamp(1, 5 * 366))
            .map(|back| {
                crate::server::stats::utc_date(until - Duration::from_secs(86_400 * back as u64))
            })
            .collect();
        let mut pipe = redis::pipe();
        for name in ["processed", "failed"] {
            let keys: Vec<String> = dates
                .iter()
                .map(|d| self.keys.stat_daily(name, d))
                .collect();
            pipe.cmd("MGET").arg(keys);
        }
        type Counts = Vec<Option<Vec<u8>>>;
        let (processed, failed): (Counts, Counts) = self.query_pipe(&pipe).await?;
        Ok(dates
            .into_iter()
            .zip(processed.into_iter().zip(failed))
            .map(|(date, (p, f))| DayStats {
                date,
                processed: counter(p),
                failed: counter(f),
            })
            .collect())
    }

    /// Per-class run metrics, busiest class first.
    pub async fn class_metrics(&self) -> Result<Vec<ClassMetrics>> {
        let classes: Vec<Vec<u8>> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.key("metrics:classes")))
            .await?;
        let mut pipe = redis::pipe();
        for class in &classes {
            pipe.hgetall([self.keys.class_metrics("").as_bytes(), class].concat());
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut metrics: Vec<ClassMetrics> = classes
            .into_iter()
            .zip(hashes.into_iter().map(text_map))
            .map(|(class, fields)| {
                let int = |k: &str| {
                    fields
                        .get(k)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                ClassMetrics {
                    count: int("count"),
                    failed: int("failed"),
                    secs: fields
                        .get("secs")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0.0),
                    buckets: (0..=crate::server::stats::DURATION_BUCKETS.len())
                        .map(|i| int(&format!("b{i}")))
                        .collect(),
                    class: escape(&class).into_owned(),
                }
            })
            .collect();
        metrics.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.class.cmp(&b.class)));
        Ok(metrics)
    }

    /// Runs, failures and seconds per class over time, from the per-minute metrics every
    /// server writes in Sidekiq 8's format (what Sidekiq 7/8's Metrics tab reads): one point a
    /// minute for ranges up to 8 hours (the minutes' lifetime), one per ten minutes beyond (up
    /// to 3 days). Points run oldest first, ending at `until`'s minute.
    pub async fn class_series(&self, range: Duration, until: SystemTime) -> Result<ClassSeries> {
        const MINUTES_KEPT: u64 = 8 * 60;
        let minutes = (range.as_secs() / 60).clamp(1, 3 * 24 * 60);
        let step = if minutes <= MINUTES_KEPT { 1 } else { 10 };
        let end = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / 60;
        let end = end - end % step;
        let points: Vec<u64> = (0..minutes / step).rev().map(|i| end - i * step).collect();
        let mut pipe = redis::pipe();
        for minute in &points {
            let bucket = crate::server::stats::sidekiq_8_bucket(minute * 60, step > 1);
            pipe.hgetall(self.keys.key(&bucket));
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut classes: std::collections::BTreeMap<String, ClassPoints> = Default::default();
        for (i, hash) in hashes.into_iter().enumerate() {
            for (field, value) in text_map(hash) {
                let Some((class, kind)) = field.rsplit_once('|') else {
                    continue;
                };
                let value: u64 = value.parse().unwrap_or(0);
                let series = classes
                    .entry(class.to_string())
                    .or_insert_with(|| ClassPoints {
                        class: class.to_string(),
                        runs: vec![0; points.len()],
                        failed: vec![0; points.len()],
                        ms: vec![0; points.len()],
                    });
                match kind {
                    "p" => series.runs[i] = value,
                    "f" => series.failed[i] = value,
                    "ms" => series.ms[i] = value,
                    _ => {}
                }
            }
        }
        let mut classes: Vec<ClassPoints> = classes.into_values().collect();
        classes.sort_by_cached_key(|c| std::cmp::Reverse(c.totals().0));
        Ok(ClassSeries {
            starts: points.iter().map(|minute| minute * 60).collect(),
            step_secs: step * 60,
            classes,
        })
    }
}
