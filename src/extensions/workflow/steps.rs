//! The server's side of a step's end: the middleware that counts a success (a death is
//! counted by the farewell with the same arguments), and the worker of a batch step's end.

use serde_json::Value;

use super::inside::{STEP, StepEnv};
use super::{BATCH_STEP_CLASS, STEP_FIELD, WORKFLOW_FIELD};
use crate::job::payload;
use crate::store::keys::Keys;

/// The arguments of `workflow_step.lua` for step `step` of workflow `wid` ending as `end`
/// (`succeeded` or `dead`) with `result` (JSON, for a success), run as job `jid`: one list
/// for the middleware's success and the farewell's death.
pub(crate) fn step_end_args(
    keys: &Keys,
    wid: &str,
    step: &str,
    end: &str,
    result: &str,
    jid: &str,
) -> Vec<String> {
    vec![
        keys.prefix().to_string(),
        wid.to_string(),
        step.to_string(),
        end.to_string(),
        result.to_string(),
        payload::timestamp_text(crate::clock::now_secs()),
        jid.to_string(),
    ]
}

/// The worker of [`BATCH_STEP_CLASS`], registered on every server: its job is a batch
/// step's batch callback, and [`WorkflowSteps`] around it ends the step.
pub(crate) struct BatchStepEnd;

impl crate::Worker for BatchStepEnd {
    type Args = crate::NoArgs;
    async fn perform(&self, _: crate::NoArgs) -> crate::JobResult {
        Ok(())
    }
}

/// The server middleware that counts workflow steps' successes (a death is counted by the
/// farewell) and gives each step its [`inputs`](super::inputs) and
/// [`add_step`](super::add_step). A job without `wf` passes
/// with a substring search of its payload.
pub struct WorkflowSteps {
    conn: crate::store::connection::Connection,
    keys: Keys,
}

impl WorkflowSteps {
    pub(crate) fn new(conn: crate::store::connection::Connection, keys: Keys) -> WorkflowSteps {
        WorkflowSteps { conn, keys }
    }
}

impl crate::job::middleware::ServerMiddleware for WorkflowSteps {
    fn wants(&self, payload: &str) -> bool {
        payload.contains("\"wf\"")
    }

    async fn call(
        &self,
        job: &crate::context::JobContext,
        next: crate::job::middleware::Next<'_>,
    ) -> crate::Outcome {
        use crate::Outcome;
        let field = |name: &str| job.field(name).and_then(Value::as_str).map(str::to_string);
        let (Some(wid), Some(step)) = (field(WORKFLOW_FIELD), field(STEP_FIELD)) else {
            return next.run().await;
        };
        let env = StepEnv {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            wid: wid.clone(),
            step: step.clone(),
        };
        let outcome = STEP.scope(env, next.run()).await;
        // A batch step's batch succeeded or died: this job (its callback) ends the step,
        // named by the batch's bid.
        let batch_event = (job.class() == BATCH_STEP_CLASS)
            .then(|| job.field("batch_event"))
            .flatten()
            .and_then(|e| {
                Some((
                    e["bid"].as_str()?.to_string(),
                    e["event"].as_str()?.to_string(),
                ))
            });
        // A batch step's result, or a discarded step's reason.
        let batch_result;
        // A success passes its result on; a step discarded or skipped unrun (expired, say)
        // ends without one, as a dead step does (a failure waits for its retries; a
        // death is counted by the farewell).
        let (end, result, jid) = match (&outcome, &batch_event) {
            (Outcome::Done, Some((bid, event))) => {
                let end = if event == "success" {
                    batch_result = serde_json::json!({ "bid": bid }).to_string();
                    "succeeded"
                } else {
                    batch_result = format!("a job of batch {bid} died");
                    "dead"
                };
                (end, batch_result.as_str(), bid.as_str())
            }
            (Outcome::Done, None) => (
                "succeeded",
                job.signals().output().unwrap_or("null"),
                job.jid(),
            ),
            (Outcome::Discarded(why) | Outcome::Skipped(why), _) => {
                batch_result = format!("discarded: {why}");
                ("dead", batch_result.as_str(), job.jid())
            }
            _ => return outcome,
        };
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(crate::store::scripts::WORKFLOW_STEP));
        let mut outage = crate::store::outage::Outage::new("counting a workflow step");
        // Until it works, as batches are counted: the step is acknowledged only after its
        // workflow knows, so an uncounted success cannot leave its children waiting.
        let counted = crate::store::outage::until_cured(&mut outage, || {
            let mut conn = self.conn.clone();
            let args = step_end_args(&self.keys, &wid, &step, end, result, jid);
            async move {
                let mut invocation = SCRIPT.prepare_invoke();
                invocation.arg(args);
                invocation.invoke_async::<i64>(&mut conn).await
            }
        })
        .await;
        match counted {
            Ok(_) => outcome,
            Err(e) => Outcome::Failed(crate::JobError::new(
                "Psychiq::WorkflowError",
                format!("counting step {step:?} of workflow {wid}: {e}"),
            )),
        }
    }
}
