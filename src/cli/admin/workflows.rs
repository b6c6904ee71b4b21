//! `psychiq workflows [list|show WID|cancel WID|retry WID|push FILE]`.

use serde_json::json;

use super::{Failure, Out, Outcome, WorkflowsAction};
use crate::api::{Api, utc_text};

pub(super) async fn workflows(api: &Api, out: &Out, action: Option<WorkflowsAction>) -> Outcome {
    match action.unwrap_or(WorkflowsAction::List { limit: 50 }) {
        WorkflowsAction::List { limit } => {
            let all = api.workflows(limit).await?;
            let rows = all
                .iter()
                .map(|w| {
                    vec![
                        w.wid.clone(),
                        w.name.clone(),
                        w.state.clone(),
                        format!("{}/{}", w.done, w.total),
                        w.dead.to_string(),
                        w.skipped.to_string(),
                        utc_text(w.created_at),
                    ]
                })
                .collect();
            out.print(
                &json!(all),
                &[
                    "wid",
                    "name",
                    "state",
                    "succeeded",
                    "dead",
                    "skipped",
                    "pushed (UTC)",
                ],
                rows,
            );
        }
        WorkflowsAction::Show { wid } => {
            let workflow = api.workflow(&wid).await?.ok_or_else(|| not_found(&wid))?;
            let rows = workflow
                .steps
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        match s.kind.as_str() {
                            "job" => s.state.clone(),
                            kind => format!("{} ({kind})", s.state),
                        },
                        s.parents.join(", "),
                        s.jid.clone(),
                        s.result
                            .clone()
                            .or_else(|| s.error.clone())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            if !out.json {
                println!(
                    "workflow {} ({}): {}, {}/{} succeeded, {} dead, {} skipped, policy {}{}{}",
                    workflow.wid,
                    workflow.name,
                    workflow.state,
                    workflow.done,
                    workflow.total,
                    workflow.dead,
                    workflow.skipped,
                    workflow.policy,
                    workflow
                        .failed_step
                        .as_ref()
                        .map(|s| format!(", first death: {s}"))
                        .unwrap_or_default(),
                    workflow
                        .parent
                        .as_ref()
                        .map(|(wf, step)| format!(", step {step:?} of workflow {wf}"))
                        .unwrap_or_default(),
                );
            }
            out.print(
                &json!(workflow),
                &["step", "state", "after", "jid", "result or error"],
                rows,
            );
        }
        WorkflowsAction::Cancel { wid } => {
            let stopped = api
                .cancel_workflow(&wid)
                .await?
                .ok_or_else(|| not_found(&wid))?;
            out.done(
                json!({"cancelled": true, "steps_stopped": stopped}),
                format!("workflow {wid}: cancelled; {stopped} steps stopped or skipped"),
            );
        }
        #[cfg(feature = "command")]
        WorkflowsAction::Push { file } => {
            let workflow = crate::command::load_workflow(&file).map_err(Failure::BadInput)?;
            let wid = workflow.push(&api.client()).await?;
            out.done(
                json!({"wid": wid}),
                format!("workflow {wid} pushed; `psychiq workflows show {wid}` follows it"),
            );
        }
        WorkflowsAction::Retry { wid } => {
            let dead = api.retry_workflow(&wid).await?;
            out.done(
                json!({"retried": true, "dead_steps": dead}),
                format!(
                    "workflow {wid}: running again from its {dead} dead steps and what was skipped; `psychiq workflows show {wid}` follows it"
                ),
            );
        }
    }
    Ok(())
}

fn not_found(wid: &str) -> Failure {
    Failure::NotFound(format!(
        "no workflow {wid:?} (or it expired, 30 days after it was pushed); `psychiq workflows` lists them"
    ))
}
