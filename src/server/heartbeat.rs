//! The heartbeat: registers the process where Sidekiq's dashboards look, and carries remote
//! control.
//!
//! Every 5 s (Sidekiq 6.4's pace) it flushes the counters, writes the running jobs to
//! `IDENTITY:work` (and `IDENTITY:workers`, which Sidekiq 6.4.1's dashboard reads), and in
//! one transaction adds the identity to `processes`, writes the identity hash (`info`,
//! `busy`, `beat`, `quiet`, `rss`, `rtt_us`, `concurrency`) with a 60 s TTL, and pops one
//! command from `IDENTITY-signals`: `TSTP` quiets the process, `TERM` stops it, `TTIN` logs
//! what is running. On exit the process removes itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::capsule::{self, Capsule};
use crate::store::connection::Connection;
use serde_json::json;
use tokio::sync::watch;

use crate::job::payload;
use crate::server::control::Control;
use crate::server::running::{Running, log_running, radix36};
use crate::server::stats::Stats;
use crate::store::keys::Keys;
use crate::store::outage::Outage;

/// Time between beats.
const BEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Lifetime of the process's keys without a beat (Sidekiq's 60 s).
const PROCESS_TTL_SECS: i64 = 60;

/// What the heartbeat writes about this process.
pub(crate) struct Heartbeat {
    pub conn: Connection,
    pub keys: Keys,
    pub identity: String,
    pub info: String,
    pub concurrency: usize,
    pub running: Running,
    pub stats: Arc<Stats>,
    pub control: Control,
    /// Whether the last beat wrote running jobs (so this one must clear them).
    pub had_work: bool,
    /// Fired after every beat ([`crate::server::events::Event::Heartbeat`]).
    pub hooks: Arc<crate::server::events::Hooks>,
}

impl Heartbeat {
    /// A process identity as Sidekiq makes them: `hostname:pid:12 hex chars`.
    pub fn identity() -> String {
        format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            &payload::new_jid()[..12]
        )
    }

    /// The `info` JSON, written once at start and re-sent with every beat.
    pub fn info(identity: &str, tag: &str, capsules: &[Capsule]) -> String {
        let (concurrency, queues, weights, by_name) = capsule::heartbeat_fields(capsules);
        json!({
            "hostname": hostname(),
            "started_at": payload::timestamp_value(crate::clock::now_secs()),
            "pid": std::process::id(),
            "tag": tag,
            "concurrency": concurrency,
            "capsules": by_name,
            "queues": queues,
            "weights": weights,
            "labels": [],
            "identity": identity,
            "version": env!("CARGO_PKG_VERSION"),
            "embedded": false,
        })
        .to_string()
    }

    /// Beats until stopped, then removes the process from Redis.
    pub async fn run(mut self, mut done: watch::Receiver<bool>) {
        let mut outage = Outage::new("heartbeat");
        loop {
            match self.beat().await {
                Ok(obeyed) => {
                    outage.ok();
                    // Beside the beat: a slow hook must never hold the next one back.
                    if self.hooks.wants(crate::server::events::Event::Heartbeat) {
                        let hooks = Arc::clone(&self.hooks);
                        tokio::spawn(async move {
                            hooks.fire(crate::server::events::Event::Heartbeat).await
                        });
                    }
                    if obeyed {
                        continue; // beat again at once, so dashboards see the new state
                    }
                }
                Err(e) => outage.failed(&e),
            }
            let mut quiet = self.control.quiet.subscribe();
            let already_quiet = *quiet.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(BEAT_INTERVAL) => {}
                // Beat at once when the process goes quiet, so dashboards see it.
                _ = quiet.wait_for(|quiet| *quiet), if !already_quiet => {}
                _ = done.wait_for(|done| *done) => break,
            }
        }
        if let Err(e) = self.stats.flush(&mut self.conn, &self.keys).await {
            tracing::error!(error = %e, "could not flush the last counters to Redis");
        }
        let mut pipe = redis::pipe();
        pipe.srem(self.keys.key("processes"), &self.identity)
            .ignore();
        pipe.del(&self.process_keys()[..]).ignore();
        if self.inprogress_is_empty().await {
            pipe.srem(self.keys.inprogress_owners(), &self.identity)
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.conn).await {
            tracing::warn!(error = %e, "could not deregister; the entry expires in 60 s");
        }
    }

    /// Whether this process holds no in-progress job (Redis deletes empty hashes).
    async fn inprogress_is_empty(&mut self) -> bool {
        crate::server::recovery::owner_stores(&mut self.conn, &self.keys, &self.identity)
            .await
            .is_ok_and(|stores| stores.is_empty())
    }

    fn process_keys(&self) -> [String; 3] {
        let id = self.keys.key(&self.identity);
        [format!("{id}:work"), format!("{id}:workers"), id]
    }

    /// One beat; returns whether a remote signal was obeyed.
    pub async fn beat(&mut self) -> redis::RedisResult<bool> {
        if let Err(e) = self.stats.flush(&mut self.conn, &self.keys).await {
            tracing::warn!(error = %e, "could not flush counters; they are kept for the next beat");
        }
        let rtt = Instant::now();
        let () = redis::cmd("PING").query_async(&mut self.conn).await?;
        let rtt_us = rtt.elapsed().as_micros() as u64;

        let work: Vec<(String, String)> = {
            let running = self.running.lock().expect("running jobs lock");
            running
                .iter()
                .map(|(slot, job)| {
                    let value =
                        json!({"queue": &*job.work.queue, "payload": String::from_utf8_lossy(&job.work.raw), "run_at": job.run_at});
                    (radix36(*slot), value.to_string())
                })
                .collect()
        };
        let [work_key, workers_key, id_key] = self.process_keys();
        let quiet = *self.control.quiet.borrow();
        // A plain pipeline (one round trip; no MULTI/EXEC, which would add two commands).
        let mut pipe = redis::pipe();
        if self.had_work || !work.is_empty() {
            pipe.del(&[&work_key, &workers_key]).ignore();
        }
        self.had_work = !work.is_empty();
        if !work.is_empty() {
            for key in [&work_key, &workers_key] {
                pipe.hset_multiple(key, &work).ignore();
                pipe.expire(key, PROCESS_TTL_SECS).ignore();
            }
        }
        // The hash first: another process must never see this one listed but not beating.
        pipe.hset_multiple(
            &id_key,
            &[
                ("info", self.info.clone()),
                ("busy", work.len().to_string()),
                ("beat", payload::timestamp_text(crate::clock::now_secs())),
                ("quiet", quiet.to_string()),
                ("rss", rss_kb().to_string()),
                ("rtt_us", rtt_us.to_string()),
                ("concurrency", self.concurrency.to_string()),
                ("machine", machine_id().to_string()),
            ],
        )
        .ignore();
        pipe.expire(&id_key, PROCESS_TTL_SECS).ignore();
        pipe.sadd(self.keys.key("processes"), &self.identity)
            .ignore();
        // Every beat, so recovery always knows this process may own in-progress hashes.
        pipe.sadd(self.keys.inprogress_owners(), &self.identity)
            .ignore();
        pipe.rpop(format!("{id_key}-signals"), None);
        let (signal,): (Option<Vec<u8>>,) = pipe.query_async(&mut self.conn).await?;
        if let Some(signal) = &signal {
            self.obey(&String::from_utf8_lossy(signal));
        }
        Ok(signal.is_some())
    }

    fn obey(&self, signal: &str) {
        tracing::info!(signal, "remote signal received");
        match signal {
            "TSTP" | "USR1" => self.control.quiet(),
            "TERM" | "INT" => self.control.stop(),
            "TTIN" => log_running(&self.running),
            other => tracing::warn!(
                signal = other,
                "unknown remote signal ignored (TSTP, TERM and TTIN are known)"
            ),
        }
    }
}

/// This machine's boot and pid namespace (Linux: boot id and `/proc/self/ns/pid`), written to
/// the heartbeat so a process can tell whether a pid it sees missing was really in its own
/// pid namespace; empty elsewhere, where no process is ever declared gone by its pid.
pub(crate) fn machine_id() -> &'static str {
    static MACHINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        if !cfg!(target_os = "linux") {
            return String::new();
        }
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if boot.trim().is_empty() || pidns.is_empty() {
            return String::new();
        }
        format!("{}/{pidns}", boot.trim())
    });
    &MACHINE
}

/// This machine's name, as Sidekiq takes it (`DYNO` first, for Heroku).
pub(crate) fn hostname() -> String {
    std::env::var("DYNO")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Resident memory in KB (Linux `VmRSS`; 0 where unknown).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn slot_ids_are_base36() {
        assert_eq!(super::radix36(0), "0");
        assert_eq!(super::radix36(36 * 36 + 35), "10z");
    }
}
