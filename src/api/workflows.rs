//! Workflows: listing them, one with its steps, cancelling and retrying one.

use super::*;
use crate::workflow::{WORKFLOWS, workflow_key};

/// A workflow as stored: its counts, and (from [`Api::workflow`]) its steps.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WorkflowStatus {
    /// Its id.
    pub wid: String,
    /// The name it was pushed with.
    pub name: String,
    /// `running`, `succeeded`, `failed` or `cancelled`; a sub-workflow may also be `held`
    /// (its step has not started) or `skipped` (its step will not).
    pub state: String,
    /// What a dead step does: `stop`, `continue` or `compensate:STEP`.
    pub policy: String,
    /// For a sub-workflow, the workflow and the step it is.
    pub parent: Option<(String, String)>,
    /// The first step that died.
    pub failed_step: Option<String>,
    /// When it was pushed (epoch seconds).
    pub created_at: f64,
    /// When its last step ended.
    pub finished_at: Option<f64>,
    /// Steps in all, succeeded, dead and skipped.
    pub total: u64,
    /// Steps that succeeded.
    pub done: u64,
    /// Steps that died.
    pub dead: u64,
    /// Steps that will not run.
    pub skipped: u64,
    /// Compensation steps no death has called for.
    pub standby: u64,
    /// Its steps, in no particular order (empty in a listing).
    pub steps: Vec<WorkflowStep>,
}

/// One step of a workflow.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WorkflowStep {
    /// Its name.
    pub name: String,
    /// `waiting`, `enqueued` (or running), `succeeded`, `dead`, `skipped`, or `standby` (a
    /// compensation step not called for).
    pub state: String,
    /// `job`, `compensation`, `workflow` (a sub-workflow, whose id is `jid`) or `batch`
    /// (whose bid is `jid`).
    pub kind: String,
    /// Its job's jid (a sub-workflow's id, a batch's bid).
    pub jid: String,
    /// Its job's queue.
    pub queue: String,
    /// The steps it runs after.
    pub parents: Vec<String>,
    /// Its result (JSON), once it succeeded.
    pub result: Option<String>,
    /// Its own failure policy, over the workflow's.
    pub on_failure: Option<String>,
    /// Why it died (the error, `discarded: …` or `cancelled`), when it died.
    pub error: Option<String>,
    /// When it started (its job was pushed; epoch seconds).
    pub started_at: Option<f64>,
    /// When it ended.
    pub ended_at: Option<f64>,
}

impl Api {
    /// The newest `count` workflows, newest first, without their steps.
    pub async fn workflows(&self, count: u64) -> Result<Vec<WorkflowStatus>> {
        let wids: Vec<String> = self
            .query(
                redis::cmd("ZREVRANGE")
                    .arg(self.keys.key(WORKFLOWS))
                    .arg(0)
                    .arg(count.saturating_sub(1) as i64),
            )
            .await?;
        let mut pipe = redis::pipe();
        for wid in &wids {
            pipe.hgetall(workflow_key(&self.keys, wid, ""));
        }
        let hashes: Vec<HashMap<String, String>> = self.query_pipe(&pipe).await?;
        Ok(wids
            .into_iter()
            .zip(hashes)
            .filter(|(_, hash)| !hash.is_empty())
            .map(|(wid, hash)| summary(wid, &hash))
            .collect())
    }

    /// Workflow `wid` with its steps; `None` if there is none (or it expired).
    pub async fn workflow(&self, wid: &str) -> Result<Option<WorkflowStatus>> {
        let key = |suffix: &str| workflow_key(&self.keys, wid, suffix);
        let mut pipe = redis::pipe();
        for suffix in [
            "",
            "state",
            "jids",
            "queues",
            "parents",
            "results",
            "kinds",
            "policies",
            "errors",
            "started_at",
            "ended_at",
        ] {
            pipe.hgetall(key(suffix));
        }
        let mut hashes: Vec<HashMap<String, String>> = self.query_pipe(&pipe).await?;
        let ended_at = hashes.pop().unwrap_or_default();
        let started_at = hashes.pop().unwrap_or_default();
        let errors = hashes.pop().unwrap_or_default();
        let policies = hashes.pop().unwrap_or_default();
        let kinds = hashes.pop().unwrap_or_default();
        let results = hashes.pop().unwrap_or_default();
        let parents = hashes.pop().unwrap_or_default();
        let queues = hashes.pop().unwrap_or_default();
        let jids = hashes.pop().unwrap_or_default();
        let states = hashes.pop().unwrap_or_default();
        let base = hashes.pop().unwrap_or_default();
        if base.is_empty() {
            return Ok(None);
        }
        let mut status = summary(wid.to_string(), &base);
        let mut steps: Vec<WorkflowStep> = states
            .into_iter()
            .map(|(name, state)| WorkflowStep {
                kind: match kinds.get(&name).map(String::as_str) {
                    Some("compensation") => "compensation",
                    Some(kind) if kind.starts_with("workflow:") => "workflow",
                    Some(kind) if kind.starts_with("batch:") => "batch",
                    _ => "job",
                }
                .to_string(),
                on_failure: policies.get(&name).cloned(),
                error: errors.get(&name).cloned(),
                started_at: started_at.get(&name).and_then(|t| t.parse().ok()),
                ended_at: ended_at.get(&name).and_then(|t| t.parse().ok()),
                jid: jids.get(&name).cloned().unwrap_or_default(),
                queue: queues.get(&name).cloned().unwrap_or_default(),
                parents: parents
                    .get(&name)
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or_default(),
                result: results.get(&name).cloned(),
                state,
                name,
            })
            .collect();
        steps.sort_by(|a, b| a.name.cmp(&b.name));
        status.steps = steps;
        Ok(Some(status))
    }

    /// Cancels workflow `wid`: nothing new starts, its waiting steps are skipped, and its
    /// enqueued or running steps are cancelled (see [`Api::cancel`]), each counted as dead
    /// for it. Returns how many steps were enqueued or running; `None` if there is no such
    /// workflow, `Some(0)` if it is over. Safe to call again (a cancel cut short goes on).
    pub async fn cancel_workflow(&self, wid: &str) -> Result<Option<usize>> {
        let answer: redis::Value = self
            .query(
                redis::cmd("EVAL")
                    .arg(crate::store::scripts::WORKFLOW_CANCEL)
                    .arg(0)
                    .arg(self.keys.prefix())
                    .arg(wid)
                    .arg(crate::clock::now_secs()),
            )
            .await?;
        let jids: Vec<String> = match answer {
            redis::Value::Int(-1) => return Ok(None),
            redis::Value::Int(_) => return Ok(Some(0)),
            other => redis::FromRedisValue::from_redis_value(other).unwrap_or_default(),
        };
        for jid in &jids {
            // Its farewell counts it as dead for the workflow (which keeps `cancelled`).
            self.cancel(jid).await?;
        }
        Ok(Some(jids.len()))
    }

    /// Retries workflow `wid` once it has ended: its dead and skipped steps (its
    /// sub-workflows' too) wait again and those whose parents have all succeeded start,
    /// each job step under a new jid (its old dead job leaves the dead set); compensation
    /// steps go back on standby; a dead batch step runs on with its dead jobs pushed again
    /// under new jids. Its keys are kept 30 days from now. Returns how many jobs had died.
    pub async fn retry_workflow(&self, wid: &str) -> Result<usize> {
        let answer: redis::Value = self
            .query(
                redis::cmd("EVAL")
                    .arg(crate::store::scripts::WORKFLOW_RETRY)
                    .arg(0)
                    .arg(self.keys.prefix())
                    .arg(wid)
                    .arg(crate::job::payload::timestamp_text(crate::clock::now_secs()))
                    .arg(crate::workflow::WORKFLOW_TTL.as_secs()),
            )
            .await?;
        let old_jids: Vec<String> = match answer {
            redis::Value::Int(-1) => {
                return Err(Error::NotFound(format!(
                    "no workflow {wid} (or it expired)"
                )));
            }
            redis::Value::Int(-2) => {
                return Err(Error::Config(format!(
                    "workflow {wid} has no dead or skipped step to retry"
                )));
            }
            redis::Value::Int(-3) => {
                return Err(Error::Config(format!(
                    "workflow {wid} is still running; retry it once it has ended (or cancel it first)"
                )));
            }
            redis::Value::Int(_) => {
                return Err(Error::Config(format!(
                    "workflow {wid} is a step of another workflow; retry that one"
                )));
            }
            other => redis::FromRedisValue::from_redis_value(other).unwrap_or_default(),
        };
        // The old dead jobs would run their steps again under jids the workflow has dropped
        // (a cancelled one was never in the dead set).
        let dead = self.dead();
        for jid in &old_jids {
            if let Some(job) = dead.find(jid).await? {
                job.delete().await?;
            }
        }
        Ok(old_jids.len())
    }
}

/// A workflow's counts from its `wf:WID` hash.
fn summary(wid: String, hash: &HashMap<String, String>) -> WorkflowStatus {
    let text = |name: &str| hash.get(name).cloned().unwrap_or_default();
    let number = |name: &str| {
        hash.get(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let time = |name: &str| hash.get(name).and_then(|v| v.parse::<f64>().ok());
    WorkflowStatus {
        wid,
        name: text("name"),
        state: text("state"),
        policy: text("policy"),
        parent: hash
            .get("parent_wf")
            .zip(hash.get("parent_step"))
            .map(|(wf, step)| (wf.clone(), step.clone())),
        failed_step: hash.get("failed_step").cloned(),
        created_at: time("created_at").unwrap_or(0.0),
        finished_at: time("finished_at"),
        total: number("total"),
        done: number("done"),
        dead: number("dead"),
        skipped: number("skipped"),
        standby: number("standby"),
        steps: Vec::new(),
    }
}
