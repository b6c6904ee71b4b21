//! Capsules: several pools in one process (Sidekiq 7's), each with its own queues,
//! concurrency and prefetch, so a slow queue at concurrency 2 runs beside a fast one at 50
//! without either taking the other's workers. The server's own queues and concurrency are
//! the capsule `default`; each capsule has its own fetch connection and in-progress hashes,
//! and a queue belongs to one capsule.
//!
//! ```
//! use psychiq::{Capsule, ServerConfig};
//! let config = ServerConfig::default()
//!     .queue("default")
//!     .concurrency(50)
//!     .capsule(Capsule::new("reports", 2).queue("reports").weighted_queue("exports", 1));
//! # let _ = config;
//! let flag = Capsule::parse("reports:reports,exports=2:3").unwrap();
//! assert_eq!(flag.name(), "reports");
//! ```

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::server::fetch::QueueSpec;

/// The name of the capsule the server's own queues and concurrency make.
pub const DEFAULT_CAPSULE: &str = "default";

/// One pool of workers with its own queues (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capsule {
    pub(crate) name: String,
    pub(crate) queues: Vec<QueueSpec>,
    pub(crate) concurrency: usize,
    pub(crate) prefetch: Option<usize>,
}

impl Capsule {
    /// A capsule called `name` running `concurrency` jobs at once; give it queues.
    pub fn new(name: impl Into<String>, concurrency: usize) -> Capsule {
        Capsule {
            name: name.into(),
            queues: Vec::new(),
            concurrency: concurrency.max(1),
            prefetch: None,
        }
    }

    /// Serves `name` (in strict order after the queues added before it).
    pub fn queue(mut self, name: impl Into<String>) -> Capsule {
        self.queues.push(QueueSpec {
            name: name.into(),
            weight: 0,
        });
        self
    }

    /// Serves `name` with a weight (see [`crate::ServerConfig::weighted_queue`]).
    pub fn weighted_queue(mut self, name: impl Into<String>, weight: u32) -> Capsule {
        self.queues.push(QueueSpec {
            name: name.into(),
            weight: weight.max(1),
        });
        self
    }

    /// Jobs held beyond those running at most (twice the concurrency unless set).
    pub fn prefetch(mut self, jobs: usize) -> Capsule {
        self.prefetch = Some(jobs);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads `NAME:QUEUE[=WEIGHT],...:CONCURRENCY`, the `--capsule` flag's form.
    pub fn parse(text: &str) -> Result<Capsule> {
        let bad = |why: &str| {
            Error::Config(format!(
                "capsule {text:?}: {why}; write NAME:QUEUE[=WEIGHT],...:CONCURRENCY, e.g. reports:reports,exports=2:3"
            ))
        };
        let mut parts = text.split(':');
        let (Some(name), Some(queues), Some(concurrency), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("it needs three parts"));
        };
        let concurrency: usize = concurrency
            .trim()
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("the concurrency must be a whole number above 0"))?;
        let mut capsule = Capsule::new(name.trim(), concurrency);
        for queue in queues.split(',').map(str::trim) {
            capsule = match queue.split_once('=') {
                Some((queue, weight)) => {
                    let weight = weight
                        .trim()
                        .parse()
                        .map_err(|_| bad("a weight must be a whole number"))?;
                    capsule.weighted_queue(queue.trim(), weight)
                }
                None => capsule.queue(queue),
            };
        }
        check_names(&capsule).map_err(|why| bad(&why))?;
        Ok(capsule)
    }

    /// `mode` and `weights` as Sidekiq writes them for a capsule.
    fn heartbeat_entry(&self) -> Value {
        let weights: serde_json::Map<String, Value> = self
            .queues
            .iter()
            .map(|q| (q.name.clone(), Value::from(q.weight)))
            .collect();
        let mode = if self.queues.iter().all(|q| q.weight == 0) {
            "strict"
        } else if self.queues.iter().all(|q| q.weight == 1) {
            "random"
        } else {
            "weighted"
        };
        json!({"concurrency": self.concurrency, "mode": mode, "weights": weights})
    }
}

fn check_names(capsule: &Capsule) -> std::result::Result<(), String> {
    if capsule.name.is_empty() {
        return Err("its name is empty".into());
    }
    if capsule.queues.is_empty() || capsule.queues.iter().any(|q| q.name.is_empty()) {
        return Err("a queue name is empty".into());
    }
    Ok(())
}

/// Checks the capsules of one server (the default one first): names unique, each with
/// queues, and each queue in one capsule only (their in-progress hashes are per queue).
pub(crate) fn check(capsules: &[Capsule]) -> Result<()> {
    let mut names = HashSet::new();
    let mut queues = HashSet::new();
    for capsule in capsules {
        check_names(capsule)
            .map_err(|why| Error::Config(format!("capsule {:?}: {why}", capsule.name)))?;
        if !names.insert(capsule.name.as_str()) {
            return Err(Error::Config(format!(
                "two capsules are named {:?} ({DEFAULT_CAPSULE:?} is the server's own queues); name each once",
                capsule.name
            )));
        }
        // A queue named twice in one capsule is one queue (the fetcher keeps its highest
        // weight); only another capsule's is refused.
        let own: HashSet<&str> = capsule.queues.iter().map(|q| q.name.as_str()).collect();
        for queue in own {
            if !queues.insert(queue) {
                return Err(Error::Config(format!(
                    "queue {queue:?} is in two capsules; a queue belongs to one"
                )));
            }
        }
    }
    Ok(())
}

/// The capsule fields of a process's heartbeat (Sidekiq 8's form, with 7's `queues` and
/// `weights` beside): total concurrency, every queue, a weights map per capsule, and
/// `capsules` by name.
pub(crate) fn heartbeat_fields(capsules: &[Capsule]) -> (usize, Vec<String>, Value, Value) {
    let concurrency = capsules.iter().map(|c| c.concurrency).sum();
    let queues = capsules
        .iter()
        .flat_map(|c| c.queues.iter().map(|q| q.name.clone()))
        .collect();
    let entries: Vec<Value> = capsules.iter().map(Capsule::heartbeat_entry).collect();
    let weights = Value::Array(entries.iter().map(|e| e["weights"].clone()).collect());
    let by_name: serde_json::Map<String, Value> = capsules
        .iter()
        .zip(entries)
        .map(|(c, e)| (c.name.clone(), e))
        .collect();
    (concurrency, queues, weights, Value::Object(by_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_and_wrong_ones_say_what_to_write() {
        let capsule = Capsule::parse("reports:reports,exports=2:3").unwrap();
        assert_eq!(capsule.concurrency, 3);
        assert_eq!(
            capsule.queues,
            [
                QueueSpec {
                    name: "reports".into(),
                    weight: 0
                },
                QueueSpec {
                    name: "exports".into(),
                    weight: 2
                }
            ]
        );
        for wrong in [
            "reports", "a:b:0", "a:b:x", ":b:1", "a::1", "a:b=x:1", "a:b:1:2",
        ] {
            let error = Capsule::parse(wrong).unwrap_err().to_string();
            assert!(error.contains("NAME:QUEUE"), "{wrong}: {error}");
        }
        let twice = check(&[
            Capsule::new("a", 1).queue("q"),
            Capsule::new("b", 1).queue("q"),
        ]);
        assert!(twice.unwrap_err().to_string().contains("in two capsules"));
    }
}
