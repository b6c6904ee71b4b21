//! `psychiq groups [list QUEUE|pause QUEUE GROUP|resume QUEUE GROUP|limit QUEUE GROUP N]`.

use serde_json::json;

use super::{GroupsAction, Out, Outcome};
use crate::api::{Api, utc_text};

pub(super) async fn groups(api: &Api, out: &Out, action: GroupsAction) -> Outcome {
    match action {
        GroupsAction::List { queue, limit } => {
            let all = api.groups(&queue, limit).await?;
            let rows = all
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.backlog.to_string(),
                        format!("{}/{}", g.running, g.limit),
                        if g.paused { "paused" } else { "running" }.to_string(),
                        utc_text(g.last_job_at),
                    ]
                })
                .collect();
            out.print(
                &json!(all),
                &["group", "backlog", "running", "state", "last job (UTC)"],
                rows,
            );
        }
        GroupsAction::Pause { queue, group } => {
            let was = api.pause_group(&queue, &group).await?;
            out.done(
                json!({"paused": true, "was_running": was}),
                format!("group {group:?} of queue {queue:?}: paused (its running jobs finish)"),
            );
        }
        GroupsAction::Resume { queue, group } => {
            let was = api.resume_group(&queue, &group).await?;
            out.done(
                json!({"resumed": true, "was_paused": was}),
                format!("group {group:?} of queue {queue:?}: running"),
            );
        }
        GroupsAction::Limit { queue, group, jobs } => {
            api.set_group_limit(&queue, &group, jobs).await?;
            out.done(
                json!({"limit": jobs.max(1)}),
                format!(
                    "group {group:?} of queue {queue:?}: {} at once",
                    jobs.max(1)
                ),
            );
        }
    }
    Ok(())
}
