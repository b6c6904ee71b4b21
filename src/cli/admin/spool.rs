//! `psychiq spool status DIR` and `psychiq spool push DIR`: what reliable push's journals
//! in a directory hold, and pushing what their writers left (see `Client::reliable_push`).

use std::time::Duration;

use serde_json::json;

use super::{Failure, Outcome, SpoolAction};
use crate::cli::RedisArgs;
use crate::client::spool_journals;

pub(super) async fn spool(action: SpoolAction, redis: &RedisArgs, json_output: bool) -> Outcome {
    match action {
        SpoolAction::Status { dir } => {
            let journals = spool_journals(&dir).map_err(Failure::Other)?;
            if json_output {
                let rows: Vec<_> = journals
                    .iter()
                    .map(|j| json!({"journal": j.path, "writes": j.writes, "jobs": j.jobs, "in_use": j.in_use}))
                    .collect();
                println!("{}", json!(rows));
                return Ok(());
            }
            if journals.is_empty() {
                println!("no journal in {}: nothing waits", dir.display());
            }
            for j in &journals {
                println!(
                    "{}  {} jobs in {} writes  {}",
                    j.path.display(),
                    j.jobs,
                    j.writes,
                    if j.in_use {
                        "in use by a running process (it pushes them itself)"
                    } else {
                        "left by a process that stopped: `psychiq spool push` pushes them"
                    }
                );
            }
            Ok(())
        }
        SpoolAction::Push { dir, wait } => {
            let mut client = redis.config().client().await.map_err(Failure::Other)?;
            let adopted = client
                .reliable_push(crate::ReliablePush::journal(&dir))
                .map_err(Failure::Other)?;
            client
                .flush_spool(Duration::from_secs(wait))
                .await
                .map_err(Failure::Other)?;
            if json_output {
                println!(
                    "{}",
                    json!({"pushed_jobs": adopted.jobs, "pushed_writes": adopted.writes})
                );
            } else {
                println!(
                    "pushed {} jobs ({} writes) left in {}",
                    adopted.jobs,
                    adopted.writes,
                    dir.display()
                );
            }
            Ok(())
        }
    }
}
