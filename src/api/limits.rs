//! Rate limiters in use, and how full each is.

use crate::error::{Error, Result};

use super::Api;
use crate::extensions::limits::*;

impl Api {
    /// The limiters processes have used, by name, with their use now.
    pub async fn limits(&self) -> Result<Vec<LimitSummary>> {
        let keys = self.keys();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .hgetall(registry_key(keys))
            .hgetall(over_key(keys));
        let ((secs, micros), declared, over): (
            (u64, u64),
            std::collections::HashMap<String, String>,
            std::collections::HashMap<String, String>,
        ) = self.query_pipe(&pipe).await.map_err(|e| {
            Error::Other(format!(
                "reading {} and {}: {e}",
                registry_key(keys),
                over_key(keys)
            ))
        })?;
        let now = (secs * 1000 + micros / 1000) as f64;
        let mut limiters: Vec<Limiter> = declared
            .values()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        limiters.sort_by(|a, b| a.name.cmp(&b.name));
        let mut pipe = redis::pipe();
        for limiter in &limiters {
            let key = limiter.state_key(keys);
            let interval = limiter.interval.as_millis() as f64;
            match limiter.kind {
                LimitKind::Concurrent => pipe.cmd("ZCOUNT").arg(key).arg(now).arg("+inf"),
                LimitKind::SlidingWindow => pipe
                    .cmd("ZCOUNT")
                    .arg(key)
                    .arg(format!("({}", now - interval))
                    .arg("+inf"),
                LimitKind::Window => pipe.cmd("HMGET").arg(key).arg("w").arg("n"),
                LimitKind::Bucket | LimitKind::Leaky => pipe.cmd("GET").arg(key),
            };
        }
        let names: Vec<String> = limiters.iter().map(|l| l.state_key(keys)).collect();
        let states: Vec<std::result::Result<redis::Value, String>> =
            self.query_rows(&mut pipe, 1, &names).await?;
        let number = |value: &redis::Value| -> Option<f64> {
            match value {
                redis::Value::Int(n) => Some(*n as f64),
                redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
                _ => None,
            }
        };
        Ok(limiters
            .into_iter()
            .zip(states)
            .map(|(limiter, state)| {
                let (state, unreadable) = match state {
                    Ok(state) => (state, None),
                    Err(unreadable) => (redis::Value::Nil, Some(unreadable)),
                };
                let in_use = match (limiter.kind, &state) {
                    (LimitKind::Concurrent | LimitKind::SlidingWindow, value) => {
                        number(value).unwrap_or(0.0)
                    }
                    (LimitKind::Window, redis::Value::Array(parts)) if parts.len() == 2 => {
                        let window = (now / limiter.interval.as_millis() as f64).floor();
                        match (number(&parts[0]), number(&parts[1])) {
                            (Some(w), Some(n)) if w == window => n,
                            _ => 0.0,
                        }
                    }
                    (LimitKind::Bucket | LimitKind::Leaky, value) => number(value)
                        .map_or(0.0, |tat| ((tat - now).max(0.0) / limiter.step_ms()).ceil()),
                    _ => 0.0,
                };
                LimitSummary {
                    over: over
                        .get(&limiter.name)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    in_use: in_use as u64,
                    limiter,
                    unreadable,
                }
            })
            .collect())
    }
}

impl Limiter {
    /// Its interval as the CLI and the dashboard show it: "-" for a concurrent limiter,
    /// which has none.
    #[cfg(feature = "web")]
    pub(crate) fn interval_text(&self) -> String {
        if self.kind == LimitKind::Concurrent || self.interval.is_zero() {
            "-".to_string()
        } else {
            super::span_text(self.interval.as_secs_f64())
        }
    }
}
