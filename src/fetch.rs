//! Fetching jobs: which queue to take from next, and the blocking pop that takes it.
//!
//! Queues are given as `NAME[,WEIGHT]`. With no weights the order is strict: a job is
//! taken from the first queue that has one, so higher queues can starve lower ones.
//! With weights, every fetch shuffles a list holding each queue `weight` times and keeps
//! the first occurrence of each, so a queue comes first with probability proportional to
//! its weight (Sidekiq's algorithm). The pop is one `BRPOP` over that order, on a
//! connection of its own so it never blocks other commands.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use redis::aio::ConnectionManager;

use crate::error::{Error, Result};
use crate::keys::Keys;

/// How long one `BRPOP` waits for a job before returning empty (and checking for shutdown).
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// A queue to serve and its weight (0 = no weight given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue name, without the `queue:` prefix.
    pub name: String,
    /// Its weight; when every queue has 0 the order is strict.
    pub weight: u32,
}

impl QueueSpec {
    /// Parses `NAME` or `NAME,WEIGHT`, as the `-q` flag takes it.
    ///
    /// ```
    /// use psychiq::QueueSpec;
    /// assert_eq!(QueueSpec::parse("critical,3").unwrap().weight, 3);
    /// assert_eq!(QueueSpec::parse("default").unwrap().weight, 0);
    /// assert!(QueueSpec::parse("low,x").is_err());
    /// ```
    pub fn parse(spec: &str) -> Result<QueueSpec> {
        let (name, weight) = match spec.rsplit_once(',') {
            Some((name, weight)) => {
                let weight = weight.trim().parse::<u32>().map_err(|_| {
                    Error::Other(format!(
                        "queue {spec:?}: the weight after the comma must be a whole number, e.g. {name},2"
                    ))
                })?;
                (name, weight)
            }
            None => (spec, 0),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Other(format!(
                "queue {spec:?}: the queue name is empty"
            )));
        }
        Ok(QueueSpec {
            name: name.to_string(),
            weight,
        })
    }
}

/// A job taken from a queue, with the exact bytes read from Redis.
pub(crate) struct Fetched {
    pub queue: Arc<str>,
    pub raw: String,
}

/// Takes jobs from the configured queues with `BRPOP`.
pub(crate) struct Fetcher {
    conn: ConnectionManager,
    /// (queue name, its key) in configured order, de-duplicated.
    queues: Vec<(Arc<str>, String)>,
    /// Indexes into `queues`, each repeated by weight; `None` when the order is strict.
    weighted: Option<Vec<usize>>,
}

impl Fetcher {
    pub fn new(conn: ConnectionManager, keys: &Keys, specs: &[QueueSpec]) -> Fetcher {
        let mut queues: Vec<(Arc<str>, String)> = Vec::new();
        let mut weights: Vec<u32> = Vec::new();
        for spec in specs {
            match queues.iter().position(|(name, _)| **name == *spec.name) {
                Some(i) => weights[i] = weights[i].max(spec.weight),
                None => {
                    queues.push((Arc::from(spec.name.as_str()), keys.queue(&spec.name)));
                    weights.push(spec.weight);
                }
            }
        }
        let weighted = weights.iter().any(|&w| w > 0).then(|| {
            weights
                .iter()
                .enumerate()
                .flat_map(|(i, &w)| std::iter::repeat_n(i, w.max(1) as usize))
                .collect()
        });
        Fetcher {
            conn,
            queues,
            weighted,
        }
    }

    /// The queue keys in the order this fetch should try them.
    fn order(&self) -> Vec<&str> {
        match &self.weighted {
            None => self.queues.iter().map(|(_, key)| key.as_str()).collect(),
            Some(expanded) => {
                let mut shuffled = expanded.clone();
                shuffled.shuffle(&mut rand::rng());
                let mut seen = vec![false; self.queues.len()];
                shuffled
                    .into_iter()
                    .filter(|&i| !std::mem::replace(&mut seen[i], true))
                    .map(|i| self.queues[i].1.as_str())
                    .collect()
            }
        }
    }

    /// Waits up to [`FETCH_TIMEOUT`] for a job; `None` when every queue stayed empty.
    pub async fn fetch(&mut self) -> redis::RedisResult<Option<Fetched>> {
        let mut cmd = redis::cmd("BRPOP");
        cmd.arg(self.order()).arg(FETCH_TIMEOUT.as_secs());
        let popped: Option<(String, String)> = cmd.query_async(&mut self.conn).await?;
        Ok(popped.map(|(key, raw)| {
            let queue = self
                .queues
                .iter()
                .find(|(_, k)| *k == key)
                .map_or_else(|| Arc::from(key.as_str()), |(name, _)| Arc::clone(name));
            Fetched { queue, raw }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_specs_split_at_the_last_comma() {
        let spec = QueueSpec::parse("a,b,2").unwrap();
        assert_eq!((spec.name.as_str(), spec.weight), ("a,b", 2));
        assert!(QueueSpec::parse(",2").is_err());
    }
}
