//! What a running step sees of its workflow: where it is, its parents' results, and steps
//! it adds after itself.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{STEP_FIELD, WORKFLOW_FIELD, workflow_key};
use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::payload;
use crate::store::keys::Keys;

/// Where the running step is: its workflow and its name, with the server's Redis.
#[derive(Clone)]
pub(super) struct StepEnv {
    pub(super) conn: crate::store::connection::Connection,
    pub(super) keys: Keys,
    pub(super) wid: String,
    pub(super) step: String,
}

tokio::task_local! {
    pub(super) static STEP: StepEnv;
}

/// The running step's workflow id and name; `None` outside a workflow step.
pub fn current() -> Option<(String, String)> {
    STEP.try_with(|env| (env.wid.clone(), env.step.clone()))
        .ok()
}

/// The results of the steps the running step depends on, by step name (each as its JSON
/// value: `null` for a step with no output). A first step of a sub-workflow has the inputs
/// of the step its workflow is; a compensation step has the results of every step that
/// succeeded. Empty outside a workflow step.
pub async fn inputs() -> Result<HashMap<String, Value>> {
    let Ok(env) = STEP.try_with(Clone::clone) else {
        return Ok(HashMap::new());
    };
    let failed =
        |e: redis::RedisError| Error::Other(format!("reading a workflow step's inputs: {e}"));
    let mut conn = env.conn.clone();
    let (mut wid, mut step) = (env.wid.clone(), env.step.clone());
    // Up through sub-workflows until a step with parents (or a compensation step).
    let (wid, parents) = loop {
        let key = |suffix: &str| workflow_key(&env.keys, &wid, suffix);
        type Found = Option<String>;
        let (parents, kind, up): (Found, Found, (Found, Found)) = redis::pipe()
            .hget(key("parents"), &step)
            .hget(key("kinds"), &step)
            .cmd("HMGET")
            .arg(key(""))
            .arg("parent_wf")
            .arg("parent_step")
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        if kind.as_deref() == Some("compensation") {
            let all: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(key("results"))
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            return Ok(all
                .into_iter()
                .map(|(name, result)| (name, serde_json::from_str(&result).unwrap_or(Value::Null)))
                .collect());
        }
        let parents: Vec<String> =
            serde_json::from_str(&parents.unwrap_or_default()).unwrap_or_default();
        match up {
            (Some(parent_wf), Some(parent_step)) if parents.is_empty() => {
                (wid, step) = (parent_wf, parent_step);
            }
            _ => break (wid, parents),
        }
    };
    if parents.is_empty() {
        return Ok(HashMap::new());
    }
    let results: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(workflow_key(&env.keys, &wid, "results"))
        .arg(&parents)
        .query_async(&mut conn)
        .await
        .map_err(failed)?;
    Ok(parents
        .into_iter()
        .zip(results)
        .map(|(name, result)| {
            let value = result
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or(Value::Null);
            (name, value)
        })
        .collect())
}

/// The result of parent step `name`, read as `T`.
pub async fn input<T: DeserializeOwned>(name: &str) -> Result<T> {
    let mut all = inputs().await?;
    let value = all.remove(name).ok_or_else(|| {
        Error::NotFound(format!(
            "step {name:?} is not a step this one runs after, or this is not a workflow step"
        ))
    })?;
    serde_json::from_value(value).map_err(|e| {
        Error::Payload(format!(
            "the result of step {name:?} does not read as expected: {e}"
        ))
    })
}

/// Adds step `name` running `job` to the running step's workflow, after `parents` (steps of
/// it, the running one among them if it should wait for this one to succeed). Adding a step
/// that exists changes nothing, so a step that runs twice adds its steps once.
pub async fn add_step(name: &str, job: Job, parents: &[&str]) -> Result<()> {
    let Ok(env) = STEP.try_with(Clone::clone) else {
        return Err(Error::Config(
            "add_step works inside a workflow step only".into(),
        ));
    };
    let jid = job
        .given_jid()
        .map_or_else(payload::new_jid, str::to_string);
    let job = job
        .option(WORKFLOW_FIELD, Value::from(env.wid.as_str()))
        .option(STEP_FIELD, Value::from(name));
    let now = crate::clock::now_secs();
    job.refuse_encrypt("a workflow")?;
    let json = job.to_json(&jid, now, None)?;
    let open = json.strip_suffix('}').unwrap_or(&json);
    let added: i64 = redis::cmd("EVAL")
        .arg(crate::store::scripts::WORKFLOW_ADD)
        .arg(0)
        .arg(env.keys.prefix())
        .arg(&env.wid)
        .arg(name)
        .arg(open)
        .arg(job.queue_name())
        .arg(serde_json::to_string(parents).unwrap_or_default())
        .arg(payload::timestamp_text(now))
        .query_async(&mut env.conn.clone())
        .await
        .map_err(|e| Error::Other(format!("adding step {name:?}: {e}")))?;
    match added {
        -1 => Err(Error::Config(format!(
            "step {name:?} runs after a step that is not in workflow {}",
            env.wid
        ))),
        -2 => Err(Error::Config(format!("workflow {} is over", env.wid))),
        _ => Ok(()),
    }
}
