//! The recovery plugin: puts back the jobs of processes that died while running them (see
//! [`crate::server::recovery`]), at once and then every 5 s.

use std::sync::Arc;
use std::time::Duration;

use crate::job::middleware::BoxFuture;
use crate::plugins::{Plugin, PluginContext};

/// Time between recovery passes (a heartbeat's).
const EVERY: Duration = Duration::from_secs(5);

/// Recovers orphaned in-progress jobs.
pub struct Recovery;

impl Plugin for Recovery {
    fn name(&self) -> &str {
        "recovery"
    }

    fn runs_while_quiet(&self) -> bool {
        true
    }

    fn run(self: Arc<Self>, mut ctx: PluginContext) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move {
            let mut conn = ctx.connection();
            let keys = ctx.keys().clone();
            let me = ctx.identity().to_string();
            while !ctx.is_stopping() {
                let machine = crate::server::heartbeat::machine_id();
                if let Err(e) =
                    crate::server::recovery::recover_orphans(&mut conn, &keys, &me, machine).await
                {
                    tracing::warn!(error = %e, "orphan recovery failed; it runs again in 5 s");
                }
                ctx.sleep(EVERY).await;
            }
            Ok(())
        })
    }
}
