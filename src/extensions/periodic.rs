//! Periodic jobs: cron-style schedules that enqueue a job at each tick, once, however many
//! processes run them (Sidekiq Enterprise's `periodic`, sidekiq-cron).
//!
//! ```
//! use psychiq::periodic::{Missed, PeriodicJob, Schedule};
//! use psychiq::{Job, Registry};
//!
//! let mut registry = Registry::new();
//! registry.periodic(
//!     PeriodicJob::new(
//!         "nightly-report",
//!         Schedule::cron("0 3 * * *")?.in_zone("Europe/Berlin")?,
//!         Job::new("Reports::Nightly", (1, "full"))?.queue("reports"),
//!     )?
//!     .missed(Missed::RunLast),
//! );
//! # Ok::<(), psychiq::Error>(())
//! ```
//!
//! The same from the TOML file that `psychiq -s FILE.toml` loads:
//!
//! ```toml
//! [periodic."nightly-report"]
//! cron = "0 3 * * *"          # 5 fields, or 6 with seconds first
//! tz = "Europe/Berlin"        # IANA name; UTC when left out
//! class = "Reports::Nightly"
//! args = [1, "full"]
//! queue = "reports"           # optional ("default")
//! retry = 5                   # optional: a number, true or false
//! missed = "run-last"         # optional: "skip" (the default) or "run-last"
//! ```
//!
//! **Once per tick.** Every server with entries wakes at each tick and runs one Lua script
//! that, atomically, checks the entry is not paused, checks its last enqueued tick
//! (`periodic:last`) is older, records this tick and pushes the job. The first process to
//! get there enqueues it; the others find the tick taken. There is no leader, so a process
//! killed with `kill -9` takes nothing with it: the others' next tick goes on as before.
//! The claim and the push are one step, so a crash can neither lose a claimed tick nor
//! enqueue one twice. The job carries `periodic` (the entry's name) and `periodic_at` (the
//! tick, Unix seconds) beside Sidekiq's keys. Client middleware does not run for these
//! pushes (unique locks included: the tick is the lock).
//!
//! **On time.** A server sleeps until the tick by the wall clock and claims it as it wakes,
//! so the job is enqueued a few milliseconds after it (the `periodic_at` to `enqueued_at`
//! gap). A tick up to [`LATE_TICK_GRACE_SECS`] old is still claimed by a server that wakes
//! late (a stalled host) or whose claim failed (Redis unreachable: it tries again every
//! second), and the latest tick before a server starts is claimed if it is that recent and
//! the entry has run before (so a restart across a tick does not lose it).
//!
//! **Downtime.** Ticks that fell while no server ran are skipped ([`Missed::Skip`]), or, with
//! [`Missed::RunLast`], the last of them runs once when a server starts.
//!
//! **Seen from outside.** Each server writes its entries to the `periodic` hash when it
//! starts and every minute, so the dashboard, `psychiq periodic` and
//! [`crate::api::Api::periodic_jobs`] know them without the code; an entry no server has declared for an
//! hour is dropped from it. `psychiq periodic pause NAME` (or the dashboard) pauses an entry
//! everywhere: its ticks are skipped until it is resumed.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::middleware::BoxFuture;
use crate::plugins::{Plugin, PluginContext};
use crate::store::connection::{Connection, redis_clock_offset};
use crate::store::keys::Keys;
use crate::store::scripts::PERIODIC_CLAIM;

pub use super::cron::Schedule;

/// How old a tick may be when a late-waking server still claims it.
pub const LATE_TICK_GRACE_SECS: i64 = 60;
/// How often a server writes its entries again (so the listing knows they are alive).
const REFRESH: Duration = Duration::from_secs(60);
/// An entry no server has written for this long is dropped from the listing.
const STALE_SECS: f64 = 3600.0;
/// The longest a server sleeps between looks at the clock (a clock that jumps is noticed).
const LONGEST_NAP: Duration = Duration::from_secs(5);

/// What a server does about ticks that fell while no server ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Missed {
    /// Skip them: the next tick is the first after start (the default).
    #[default]
    Skip,
    /// Run the last missed one once, at start (only if a tick has ever run before).
    RunLast,
}

/// One periodic entry: a name, a schedule and the job to push at each tick.
#[derive(Debug, Clone)]
pub struct PeriodicJob {
    name: String,
    schedule: Schedule,
    job: Job,
    missed: Missed,
}

impl PeriodicJob {
    /// An entry named `name` that pushes `job` (class, args, queue, retry and options;
    /// `Job::of::<W>` takes a worker's) at each tick of `schedule`
    /// (`Schedule::cron("0 3 * * *")?`, with `.in_zone("Europe/Berlin")?` for another zone
    /// than UTC). Fails for an empty name.
    pub fn new(
        name: impl Into<String>,
        schedule: Schedule,
        job: Job,
    ) -> std::result::Result<PeriodicJob, Error> {
        let name = name.into();
        if name.is_empty() {
            return Err(Error::Config("a periodic entry needs a name".into()));
        }
        job.check()
            .and_then(|()| job.refuse_encrypt("a periodic entry"))
            .map_err(|e| Error::Config(format!("periodic {name:?}: {e}")))?;
        Ok(PeriodicJob {
            name,
            schedule,
            job,
            missed: Missed::Skip,
        })
    }

    /// What to do about ticks missed while no server ran (default [`Missed::Skip`]).
    pub fn missed(mut self, missed: Missed) -> PeriodicJob {
        self.missed = missed;
        self
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The queue its job goes to.
    pub(crate) fn queue(&self) -> &str {
        self.job.queue_name()
    }

    /// The payload for one tick, with a new jid, enqueued at `now` on Redis's clock.
    ///
    /// The claim runs only once Redis's clock has reached the tick, so a `now` that reads
    /// earlier (this process's clock, or its offset measured a little wide) is the tick.
    pub(crate) fn payload_for(&self, tick: i64, now: f64) -> String {
        let mut job = self.job.clone();
        job.set_option("periodic", Value::String(self.name.clone()));
        job.set_option("periodic_at", Value::from(tick));
        job.payload_at(now.max(tick as f64), true)
    }

    /// How the entry is written to the `periodic` hash.
    fn record(&self, now: f64) -> EntryRecord {
        let template: Value = serde_json::from_str(&self.job.payload_now()).unwrap_or_default();
        let mut template = match template {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        for key in ["jid", "created_at", "enqueued_at"] {
            template.remove(key);
        }
        template.insert("periodic".into(), Value::String(self.name.clone()));
        EntryRecord {
            cron: self.schedule.expression().to_string(),
            tz: self.schedule.time_zone().to_string(),
            class: self.job.class().to_string(),
            queue: self.job.queue_name().to_string(),
            missed: self.missed,
            seen_at: now,
            job: Value::Object(template),
        }
    }
}

/// An entry as the `periodic` hash holds it (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EntryRecord {
    pub(crate) cron: String,
    pub(crate) tz: String,
    pub(crate) class: String,
    pub(crate) queue: String,
    pub(crate) missed: Missed,
    /// When a server last declared it (Unix seconds).
    pub(crate) seen_at: f64,
    /// The payload without jid and timestamps: what "enqueue now" pushes.
    pub(crate) job: Value,
}

pub(crate) fn entries_key(keys: &Keys) -> String {
    keys.key("periodic")
}
pub(crate) fn last_key(keys: &Keys) -> String {
    keys.key("periodic:last")
}
pub(crate) fn paused_key(keys: &Keys) -> String {
    keys.key("periodic:paused")
}
/// The last tick of each entry skipped because it was paused.
fn skipped_key(keys: &Keys) -> String {
    keys.key("periodic:skipped")
}

/// The plugin that enqueues a server's periodic entries (added by the launcher when the
/// registry declares any).
pub(crate) struct PeriodicPlugin {
    entries: Vec<PeriodicJob>,
}

impl PeriodicPlugin {
    pub(crate) fn new(entries: Vec<PeriodicJob>) -> PeriodicPlugin {
        PeriodicPlugin { entries }
    }
}

impl Plugin for PeriodicPlugin {
    fn name(&self) -> &str {
        "periodic"
    }

    fn run(self: Arc<Self>, mut ctx: PluginContext) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let conn = ctx.connection();
            let keys = ctx.keys().clone();
            let entries = &self.entries;
            declare(&conn, &keys, entries)
                .await
                .map_err(|e| e.to_string())?;
            let mut declared = tokio::time::Instant::now();
            // Ticks are read on Redis's clock: this process's plus the offset, measured
            // again with each refresh and whenever Redis says a tick is not yet due.
            let mut offset = redis_clock_offset(&mut conn.clone())
                .await
                .map_err(|e| e.to_string())?;
            if offset.abs() > 1.0 {
                tracing::warn!(
                    offset_s = offset,
                    "this machine's clock is {offset:.1} s off Redis's; periodic ticks follow Redis's"
                );
            }
            let now = crate::clock::now_secs() + offset;
            // The latest tick before start: run once if the entry asks for missed ticks,
            // or if it is less than the grace old (it fell while this server restarted, or
            // its claim failed before a restart). Either only if the entry has run before:
            // a new entry starts with its next tick.
            for entry in entries {
                if let Some(tick) = last_tick_at_or_before(&entry.schedule, now as i64)
                    && (entry.missed == Missed::RunLast
                        || now - tick as f64 <= LATE_TICK_GRACE_SECS as f64)
                {
                    claim(&conn, &keys, entry, tick, offset, true)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            let mut next: Vec<Option<i64>> = entries
                .iter()
                .map(|e| e.schedule.next_after(now as i64))
                .collect();
            while !ctx.is_stopping() {
                let now = crate::clock::now_secs() + offset;
                let mut failed = false;
                for (entry, due) in entries.iter().zip(next.iter_mut()) {
                    while let Some(tick) = *due
                        && (tick as f64) <= now
                    {
                        if now - tick as f64 > LATE_TICK_GRACE_SECS as f64 {
                            tracing::warn!(
                                entry = entry.name,
                                tick,
                                "periodic ticks skipped: this server could not claim them within {LATE_TICK_GRACE_SECS} s"
                            );
                            *due = entry.schedule.next_after(now as i64 - LATE_TICK_GRACE_SECS);
                            continue;
                        }
                        match claim(&conn, &keys, entry, tick, offset, false).await {
                            Ok(NOT_YET_DUE) => {
                                // Our clock ran ahead since it was measured: measure again.
                                if let Ok(measured) = redis_clock_offset(&mut conn.clone()).await {
                                    offset = measured;
                                }
                                failed = true;
                                break;
                            }
                            Ok(_) => *due = entry.schedule.next_after(tick),
                            Err(e) => {
                                // Kept due: tried again in a second, while still in grace.
                                tracing::warn!(entry = entry.name, tick, error = %e, "cannot claim a periodic tick; trying again in a second");
                                failed = true;
                                break;
                            }
                        }
                    }
                }
                if declared.elapsed() >= REFRESH {
                    match declare(&conn, &keys, entries).await {
                        Ok(()) => declared = tokio::time::Instant::now(),
                        Err(e) => tracing::warn!(error = %e, "cannot write the periodic entries"),
                    }
                    if let Ok(measured) = redis_clock_offset(&mut conn.clone()).await {
                        offset = measured;
                    }
                }
                if failed {
                    ctx.sleep(Duration::from_secs(1)).await;
                    continue;
                }
                let soonest = next.iter().flatten().min().copied();
                let nap = soonest
                    .map(|tick| {
                        Duration::from_secs_f64(
                            (tick as f64 - crate::clock::now_secs() - offset).max(0.0),
                        )
                    })
                    .unwrap_or(LONGEST_NAP)
                    .min(LONGEST_NAP);
                ctx.sleep(nap).await;
            }
            Ok(())
        })
    }
}

/// What [`claim`] answers when Redis's clock has not reached the tick yet.
const NOT_YET_DUE: i64 = -2;

/// Claims `tick` of `entry` and pushes its job if no process has; logs what happened and
/// returns the script's answer (1 pushed, 0 taken, -1 paused, [`NOT_YET_DUE`]).
async fn claim(
    conn: &Connection,
    keys: &Keys,
    entry: &PeriodicJob,
    tick: i64,
    clock_offset: f64,
    only_if_run_before: bool,
) -> redis::RedisResult<i64> {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PERIODIC_CLAIM));
    let queue = entry.job.queue_name();
    let claimed: i64 = SCRIPT
        .key(last_key(keys))
        .key(paused_key(keys))
        .key(keys.queue(queue))
        .key(keys.queues())
        .key(skipped_key(keys))
        .arg(&entry.name)
        .arg(tick)
        .arg(entry.payload_for(tick, crate::clock::now_secs() + clock_offset))
        .arg(queue)
        .arg(if only_if_run_before { "1" } else { "0" })
        .invoke_async(&mut conn.clone())
        .await?;
    match claimed {
        1 => tracing::info!(entry = entry.name, tick, queue, "periodic job enqueued"),
        -1 => tracing::debug!(
            entry = entry.name,
            tick,
            "periodic entry paused; tick skipped"
        ),
        _ => {}
    }
    Ok(claimed)
}

/// Writes the entries to the `periodic` hash and drops those no server declared for an hour.
async fn declare(
    conn: &Connection,
    keys: &Keys,
    entries: &[PeriodicJob],
) -> redis::RedisResult<()> {
    let now = crate::clock::now_secs();
    let key = entries_key(keys);
    let all: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut conn.clone())
        .await?;
    let mut pipe = redis::pipe();
    for (name, json) in &all {
        let stale = serde_json::from_str::<EntryRecord>(json)
            .map(|record| now - record.seen_at > STALE_SECS)
            .unwrap_or(true);
        if stale && !entries.iter().any(|e| &e.name == name) {
            pipe.hdel(&key, name).ignore();
        }
    }
    for entry in entries {
        let json = serde_json::to_string(&entry.record(now)).unwrap_or_default();
        pipe.hset(&key, &entry.name, json).ignore();
    }
    pipe.query_async::<()>(&mut conn.clone()).await
}

/// The latest tick at or before `now`, if one falls within the last 400 days.
fn last_tick_at_or_before(schedule: &Schedule, now: i64) -> Option<i64> {
    let mut window = 60;
    while window <= 400 * 86_400 {
        if let Some(mut tick) = schedule.next_after(now - window)
            && tick <= now
        {
            while let Some(next) = schedule.next_after(tick).filter(|&t| t <= now) {
                tick = next;
            }
            return Some(tick);
        }
        window *= 4;
    }
    None
}

/// A periodic entry as the API reads it from Redis.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PeriodicSummary {
    /// The entry's name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    /// Its time zone (IANA name).
    pub tz: String,
    /// The class it enqueues.
    pub class: String,
    /// The queue it pushes to.
    pub queue: String,
    /// Its arguments.
    pub args: Value,
    /// What happens to ticks missed while no server ran.
    pub missed: Missed,
    /// The next tick (Unix seconds), if the expression still parses here.
    pub next_at: Option<i64>,
    /// The last tick enqueued (Unix seconds).
    pub last_at: Option<i64>,
    /// Whether it is paused.
    pub paused: bool,
    /// When a server last declared it (Unix seconds): an entry no running server declares
    /// is not ticking.
    pub seen_at: f64,
    /// Why it could not be read (not the JSON servers write), naming its key and field.
    pub unreadable: Option<String>,
}

impl PeriodicSummary {
    #[cfg(feature = "api")]
    pub(crate) fn unreadable(name: String, why: String) -> PeriodicSummary {
        PeriodicSummary {
            name,
            cron: String::new(),
            tz: String::new(),
            class: why.clone(),
            queue: String::new(),
            args: Value::Null,
            missed: Missed::Skip,
            next_at: None,
            last_at: None,
            paused: false,
            seen_at: 0.0,
            unreadable: Some(why),
        }
    }

    /// Whether a server has declared it within the last two minutes (so it is ticking).
    pub fn is_live(&self) -> bool {
        crate::clock::now_secs() - self.seen_at < 2.0 * REFRESH.as_secs_f64()
    }
}

#[cfg(feature = "api")]
pub(crate) fn no_such_entry(name: &str) -> Error {
    Error::NotFound(format!(
        "no periodic entry {name:?}; `psychiq periodic list` shows those servers declare"
    ))
}
