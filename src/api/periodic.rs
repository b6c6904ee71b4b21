//! Periodic entries: their schedules and ticks, running one now, pausing and resuming.

use crate::error::{Error, Result};
use crate::job::payload;
use serde_json::Value;
use std::collections::HashMap;

use super::Api;
use crate::extensions::periodic::*;

impl Api {
    /// The periodic entries servers have declared, by name, with their next and last
    /// ticks.
    pub async fn periodic_jobs(&self) -> Result<Vec<PeriodicSummary>> {
        let keys = self.keys();
        let mut pipe = redis::pipe();
        pipe.hgetall(entries_key(keys))
            .hgetall(last_key(keys))
            .smembers(paused_key(keys));
        type Read = (
            HashMap<String, String>,
            HashMap<String, String>,
            Vec<String>,
        );
        let (entries, last, paused): Read = self.query_pipe(&pipe).await.map_err(|e| {
            Error::Other(format!(
                "reading {}, {} and {}: {e}",
                entries_key(keys),
                last_key(keys),
                paused_key(keys)
            ))
        })?;
        let now = crate::clock::now_secs() as i64;
        let mut out: Vec<PeriodicSummary> = entries
            .into_iter()
            .map(|(name, json)| {
                let record: EntryRecord = match serde_json::from_str(&json) {
                    Ok(record) => record,
                    // Shown, not a failure of the whole list.
                    Err(e) => {
                        return PeriodicSummary::unreadable(
                            name.clone(),
                            format!("unreadable: {} field {name:?}: {e}", entries_key(keys)),
                        );
                    }
                };
                let next_at = Schedule::parse(&record.cron, &record.tz)
                    .ok()
                    .and_then(|s| s.next_after(now));
                PeriodicSummary {
                    last_at: last.get(&name).and_then(|t| t.parse().ok()),
                    paused: paused.contains(&name),
                    args: record.job.get("args").cloned().unwrap_or(Value::Null),
                    name,
                    cron: record.cron,
                    tz: record.tz,
                    class: record.class,
                    queue: record.queue,
                    missed: record.missed,
                    next_at,
                    seen_at: record.seen_at,
                    unreadable: None,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Enqueues entry `name`'s job now, outside its schedule (its ticks are unchanged);
    /// returns the new job's jid.
    pub async fn run_periodic(&self, name: &str) -> Result<String> {
        let keys = self.keys();
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(entries_key(keys)).arg(name))
            .await?;
        let record: EntryRecord = json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| no_such_entry(name))?;
        let Value::Object(mut job) = record.job else {
            return Err(no_such_entry(name));
        };
        let jid = payload::new_jid();
        let now = crate::clock::now_secs();
        job.insert("jid".into(), Value::String(jid.clone()));
        job.insert("created_at".into(), Value::from(now));
        job.insert("enqueued_at".into(), Value::from(now));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .sadd(keys.queues(), &record.queue)
            .ignore()
            .lpush(keys.queue(&record.queue), Value::Object(job).to_string())
            .ignore();
        self.query_pipe::<()>(&pipe).await?;
        Ok(jid)
    }

    /// Pauses entry `name` everywhere (its ticks are skipped); returns whether it changed.
    pub async fn pause_periodic(&self, name: &str) -> Result<bool> {
        self.change_periodic("SADD", name).await
    }

    /// Resumes a paused entry from its next tick; returns whether it was paused.
    pub async fn resume_periodic(&self, name: &str) -> Result<bool> {
        self.change_periodic("SREM", name).await
    }

    async fn change_periodic(&self, command: &str, name: &str) -> Result<bool> {
        let keys = self.keys();
        let known: bool = self
            .query(redis::cmd("HEXISTS").arg(entries_key(keys)).arg(name))
            .await?;
        if !known && command == "SADD" {
            return Err(no_such_entry(name));
        }
        let changed: u64 = self
            .query(redis::cmd(command).arg(paused_key(keys)).arg(name))
            .await?;
        Ok(changed == 1)
    }
}
