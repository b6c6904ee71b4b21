//! The TOML file of command workers: what it declares (workers, their limits, periodic
//! entries), read strictly (an unknown key is an error naming its entry) and checked before
//! anything runs (a program that is not there, a limit that is not declared).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::job::worker::WorkerOptions;
use crate::server::registry::Registry;

use super::CommandWorker;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    workers: BTreeMap<String, CommandSpec>,
    #[serde(default)]
    periodic: BTreeMap<String, PeriodicSpec>,
    #[serde(default)]
    limits: BTreeMap<String, LimitSpec>,
    #[serde(default)]
    capsules: BTreeMap<String, CapsuleSpec>,
}

/// One capsule as the TOML file describes it (see [`crate::Capsule`]): its queues (each
/// `NAME` or `NAME=WEIGHT`), how many jobs it runs at once, and optionally its prefetch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapsuleSpec {
    queues: Vec<String>,
    concurrency: usize,
    prefetch: Option<usize>,
}

impl CapsuleSpec {
    fn into_capsule(self, name: &str) -> Result<crate::Capsule, String> {
        // The flag's reader, so both say the same about a bad queue or concurrency.
        let flag = format!("{name}:{}:{}", self.queues.join(","), self.concurrency);
        let capsule = crate::Capsule::parse(&flag).map_err(|e| e.to_string())?;
        Ok(match self.prefetch {
            Some(jobs) => capsule.prefetch(jobs),
            None => capsule,
        })
    }
}

/// One rate limiter as the TOML file describes it (see [`crate::limits`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSpec {
    kind: crate::limits::LimitKind,
    size: u32,
    /// Seconds (windows and buckets).
    interval: Option<f64>,
    /// Seconds (concurrent).
    lease: Option<f64>,
    burst: Option<u32>,
    /// Seconds.
    wait: Option<f64>,
    /// Seconds.
    max_snooze: Option<f64>,
}

impl LimitSpec {
    fn into_limiter(self, name: &str) -> Result<crate::limits::Limiter, String> {
        use crate::limits::{LimitKind, Limiter};
        let seconds = |what: &str, value: Option<f64>| -> Result<Option<Duration>, String> {
            match value {
                None => Ok(None),
                Some(s) if s > 0.0 && Duration::try_from_secs_f64(s).is_ok() => {
                    Ok(Some(Duration::from_secs_f64(s)))
                }
                Some(_) => Err(format!(
                    "limit {name:?}: {what} must be a positive number of seconds"
                )),
            }
        };
        if self.size == 0 {
            return Err(format!("limit {name:?}: size must be at least 1"));
        }
        let unused = |field: &str, given: bool, for_kinds: &str| {
            if given {
                Err(format!(
                    "limit {name:?}: {field} is only for {for_kinds} limits"
                ))
            } else {
                Ok(())
            }
        };
        let concurrent = self.kind == LimitKind::Concurrent;
        unused(
            "interval",
            concurrent && self.interval.is_some(),
            "window and bucket",
        )?;
        unused("lease", !concurrent && self.lease.is_some(), "concurrent")?;
        unused(
            "burst",
            self.kind != LimitKind::Leaky && self.burst.is_some(),
            "leaky",
        )?;
        let interval = seconds("interval", self.interval)?;
        let needs_interval = || {
            interval.ok_or_else(|| {
                format!(
                    "limit {name:?}: a {:?} limit needs interval = SECONDS",
                    self.kind
                )
            })
        };
        let mut limiter = match self.kind {
            LimitKind::Concurrent => Limiter::concurrent(name, self.size),
            LimitKind::Window => Limiter::window(name, self.size, needs_interval()?),
            LimitKind::SlidingWindow => Limiter::sliding_window(name, self.size, needs_interval()?),
            LimitKind::Bucket => Limiter::bucket(name, self.size, needs_interval()?),
            LimitKind::Leaky => Limiter::leaky(name, self.size, needs_interval()?),
        };
        if let Some(lease) = seconds("lease", self.lease)? {
            limiter = limiter.lease(lease);
        }
        if let Some(burst) = self.burst {
            limiter = limiter.burst(burst);
        }
        if let Some(wait) = seconds("wait", self.wait)? {
            limiter = limiter.wait(wait);
        }
        if let Some(max_snooze) = seconds("max_snooze", self.max_snooze)? {
            limiter = limiter.max_snooze(max_snooze);
        }
        Ok(limiter)
    }
}

/// One periodic entry as the TOML file describes it (see [`crate::periodic`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodicSpec {
    cron: String,
    #[serde(default = "utc")]
    tz: String,
    class: String,
    #[serde(default)]
    args: Vec<serde_json::Value>,
    queue: Option<String>,
    retry: Option<toml::Value>,
    #[serde(default)]
    missed: crate::periodic::Missed,
}

fn utc() -> String {
    "UTC".into()
}

impl PeriodicSpec {
    fn into_entry(self, name: &str) -> Result<crate::periodic::PeriodicJob, String> {
        if self.class.is_empty() {
            return Err(format!("periodic {name:?}: class must name a job class"));
        }
        if self.queue.as_deref() == Some("") {
            return Err(format!(
                "periodic {name:?}: queue must be a name (or left out: \"default\")"
            ));
        }
        let mut job = crate::Job::new(self.class, &self.args).map_err(|e| e.to_string())?;
        if let Some(queue) = self.queue {
            job = job.queue(queue);
        }
        match self.retry {
            None => {}
            Some(toml::Value::Boolean(on)) => {
                job = job.retry(if on {
                    crate::Retry::Default
                } else {
                    crate::Retry::Off
                })
            }
            Some(toml::Value::Integer(n)) if n >= 0 => {
                job = job.retry(crate::Retry::Max(n.min(u32::MAX as i64) as u32))
            }
            Some(other) => {
                return Err(format!(
                    "periodic {name:?}: retry must be true, false or a number of retries, not {other}"
                ));
            }
        }
        let schedule = crate::periodic::Schedule::parse(&self.cron, &self.tz)
            .map_err(|e| format!("periodic {name:?}: {e}"))?;
        crate::periodic::PeriodicJob::new(name, schedule, job)
            .map(|entry| entry.missed(self.missed))
            .map_err(|e| e.to_string())
    }
}

/// One command worker as the TOML file describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandSpec {
    pub(super) command: Vec<String>,
    pub(super) dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) timeout: Option<f64>,
    /// The name of a `[limits.NAME]` table to run each job within.
    pub(super) limit: Option<String>,
}

/// Whether `program` can be started: a path (relative to `dir`, if given) to a file, or a
/// name found in one of `PATH`'s directories.
fn program_exists(program: &str, dir: Option<&Path>) -> bool {
    let path = Path::new(program);
    if program.contains('/') {
        let path = match dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        };
        return path.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Reads a TOML file of command workers into a registry.
pub fn load_workers(path: &Path) -> Result<Registry, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_workers(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses TOML text of command workers into a registry.
pub fn parse_workers(text: &str) -> Result<Registry, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.workers.is_empty() && file.periodic.is_empty() {
        return Err(
            "no [workers.\"ClassName\"] or [periodic.\"name\"] table; see the README's command workers and periodic jobs sections".into(),
        );
    }
    let mut registry = Registry::new();
    for (name, spec) in file.periodic {
        registry.periodic(spec.into_entry(&name)?);
    }
    for (name, spec) in file.capsules {
        registry.capsule(spec.into_capsule(&name)?);
    }
    // Every limit is checked, used or not, so a broken one is named as broken.
    for (name, spec) in &file.limits {
        spec.clone().into_limiter(name)?;
    }
    for (class, spec) in file.workers {
        if class.is_empty() {
            return Err("a [workers.\"\"] table: a worker needs a class name".into());
        }
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err(format!(
                "worker {class:?}: command must name a program, e.g. command = [\"python3\", \"job.py\"]"
            ));
        }
        if let Some(t) = spec.timeout
            && !(t > 0.0 && Duration::try_from_secs_f64(t).is_ok())
        {
            return Err(format!(
                "worker {class:?}: timeout must be a positive number of seconds"
            ));
        }
        if let Some(dir) = &spec.dir
            && !dir.is_dir()
        {
            return Err(format!(
                "worker {class:?}: dir {} is not a directory here",
                dir.display()
            ));
        }
        if !program_exists(&spec.command[0], spec.dir.as_deref()) {
            return Err(format!(
                "worker {class:?}: program {:?} is not found (not a file, nor on PATH); give its path",
                spec.command[0]
            ));
        }
        let mut options = WorkerOptions::default();
        if let Some(limit) = &spec.limit {
            let Some(limit_spec) = file.limits.get(limit) else {
                let declared: Vec<&String> = file.limits.keys().collect();
                return Err(format!(
                    "worker {class:?}: no [limits.{limit:?}] table for its limit (the file declares {declared:?})"
                ));
            };
            options = options.rate_limit(limit_spec.clone().into_limiter(limit)?);
        }
        let handler = CommandWorker {
            spec: Arc::new(spec),
            options,
        };
        registry.register_raw(class, handler);
    }
    Ok(registry)
}
