//! The poller plugin: moves due jobs of the `schedule` and `retry` sets to their queues
//! (see [`crate::server::scheduler`]), about every poll interval.

use std::sync::Arc;
use std::time::Duration;

use crate::job::middleware::BoxFuture;
use crate::plugins::{Plugin, PluginContext};
use crate::store::outage::Outage;

/// Polls the schedule and retry sets every `interval` (with Sidekiq's jitter).
pub struct Poller {
    /// The mean time between polls.
    pub interval: Duration,
}

impl Plugin for Poller {
    fn name(&self) -> &str {
        "poller"
    }

    fn run(self: Arc<Self>, mut ctx: PluginContext) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let mut conn = ctx.connection();
            let keys = ctx.keys().clone();
            let mut outage = Outage::new("scheduler");
            while !ctx.is_stopping() {
                match crate::server::scheduler::enqueue_due(&mut conn, &keys).await {
                    Ok(moved) => {
                        outage.ok();
                        if moved > 0 {
                            tracing::debug!(moved, "scheduler: enqueued due jobs");
                        }
                    }
                    Err(e) => outage.failed(&e),
                }
                // Uniform in [0.5, 1.5) × interval, as Sidekiq does, so servers spread out.
                ctx.sleep(self.interval.mul_f64(0.5 + rand::random::<f64>()))
                    .await;
            }
            Ok(())
        })
    }
}
