//! Workflows: named graphs of steps, each a job, where a step starts once every step it
//! depends on has succeeded, and reads their results.
//!
//! ```no_run
//! use psychiq::workflow::Workflow;
//! use psychiq::Job;
//! # async fn demo(client: psychiq::Client) -> psychiq::Result<()> {
//! let wid = Workflow::new("etl 2026-12-07")
//!     .step("fetch", Job::new("Etl::Fetch", ("https://example.com",))?)
//!     .step("parse", Job::new("Etl::Parse", ())?)
//!     .after(&["fetch"])
//!     .step("notify", Job::new("Etl::Notify", ())?)
//!     .after(&["parse"])
//!     .push(&client)
//!     .await?;
//! # let _ = wid; Ok(()) }
//! ```
//!
//! **Exactly once.** A workflow is hashes under `wf:WID` (its steps' jobs, parents,
//! children, states and results). A step's end is one Lua step (`workflow_step.lua`): a
//! success records the result and pushes each child whose every parent has now succeeded,
//! in the same atomic step, so a child starts once and only there; a step that runs twice
//! (a crashed process's job recovered after it had run) changes nothing the second time.
//! The end is counted by the server middleware [`WorkflowSteps`] before the job is
//! acknowledged, and a death by the farewell every path that ends a job for good shares.
//!
//! **Failure.** What a dead step does is the workflow's choice ([`OnFailure`]): stop (the
//! default: nothing new starts, waiting steps are skipped, the workflow fails) or continue
//! (only what depends on the dead step is skipped).
//!
//! **Inside a step**, [`inputs`] gives the results of the steps it depends on (a [`crate::Task`]'s
//! output is its result), and [`add_step`] adds steps while the workflow runs (a step that
//! discovers work fans out after itself).
//!
//! A step discarded or skipped unrun (an expired job, `JobError::discard`, a middleware's
//! skip) ends its workflow's way as a dead one does. Workflows need Sidekiq's layout (one
//! Redis); the cluster layout refuses them. Their keys expire 30 days after the workflow
//! was pushed (those made later with it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

#[cfg(feature = "server")]
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::payload;
use crate::store::keys::Keys;

/// How long a workflow's keys live after it was pushed.
pub const WORKFLOW_TTL: Duration = Duration::from_secs(30 * 86_400);

/// The sorted set of workflow ids by when they were pushed.
pub(crate) const WORKFLOWS: &str = "workflows";

/// The payload fields a step carries (Sidekiq ignores them).
pub(crate) const WORKFLOW_FIELD: &str = "wf";
pub(crate) const STEP_FIELD: &str = "wf_step";

/// What a step that dies does to its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// Nothing new starts; the waiting steps are skipped; the workflow fails (the default).
    #[default]
    Stop,
    /// Only the steps that depend on the dead one (however far down) are skipped; the rest
    /// run; the workflow fails when all have ended.
    Continue,
}

impl OnFailure {
    fn name(self) -> &'static str {
        match self {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
        }
    }
}

/// A workflow being built: steps in the order added, each with the steps it runs after.
#[derive(Debug, Clone)]
pub struct Workflow {
    name: String,
    steps: Vec<(String, Job, Vec<String>)>,
    on_failure: OnFailure,
}

impl Workflow {
    /// A workflow called `name` (shown with it; need not be unique).
    pub fn new(name: impl Into<String>) -> Workflow {
        Workflow {
            name: name.into(),
            steps: Vec::new(),
            on_failure: OnFailure::Stop,
        }
    }

    /// Adds step `name`, running `job`; it depends on nothing until [`Workflow::after`].
    pub fn step(mut self, name: impl Into<String>, job: Job) -> Workflow {
        self.steps.push((name.into(), job, Vec::new()));
        self
    }

    /// Makes the step added last run after each of `parents` has succeeded.
    pub fn after(mut self, parents: &[&str]) -> Workflow {
        if let Some((_, _, deps)) = self.steps.last_mut() {
            deps.extend(parents.iter().map(|p| p.to_string()));
        }
        self
    }

    /// What a dead step does to the workflow ([`OnFailure::Stop`] unless set).
    pub fn on_failure(mut self, policy: OnFailure) -> Workflow {
        self.on_failure = policy;
        self
    }

    /// Checks the graph: unique step names, known parents, no cycle. Returns the steps'
    /// children by name.
    fn check(&self) -> Result<HashMap<&str, Vec<&str>>> {
        let bad = |why: String| Err(Error::Config(format!("workflow {:?}: {why}", self.name)));
        if self.steps.is_empty() {
            return bad("it has no steps; add them with .step(name, job)".into());
        }
        let mut names = HashSet::new();
        for (name, _, _) in &self.steps {
            if !names.insert(name.as_str()) {
                return bad(format!("two steps are named {name:?}; name each once"));
            }
        }
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, _, deps) in &self.steps {
            for dep in deps {
                if !names.contains(dep.as_str()) {
                    return bad(format!(
                        "step {name:?} runs after {dep:?}, which is not a step of it"
                    ));
                }
                children
                    .entry(dep.as_str())
                    .or_default()
                    .push(name.as_str());
            }
        }
        // Kahn's algorithm: every step must be reachable from the roots.
        let mut pending: HashMap<&str, usize> = self
            .steps
            .iter()
            .map(|(n, _, d)| (n.as_str(), d.len()))
            .collect();
        let mut ready: Vec<&str> = pending
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(s, _)| *s)
            .collect();
        let mut seen = 0;
        while let Some(step) = ready.pop() {
            seen += 1;
            for child in children.get(step).into_iter().flatten() {
                let left = pending.get_mut(child).expect("a known step");
                *left -= 1;
                if *left == 0 {
                    ready.push(child);
                }
            }
        }
        if seen < self.steps.len() {
            return bad("its steps depend on each other in a circle".into());
        }
        Ok(children)
    }

    /// Pushes the workflow in one transaction: its steps recorded, the ones with no parent
    /// enqueued. Returns its id.
    pub async fn push(self, client: &Client) -> Result<String> {
        let children = self.check()?;
        let Some(conn) = client.redis_connection() else {
            return Err(Error::Config(
                "workflows run on Redis; a test-mode client cannot push one yet".into(),
            ));
        };
        let keys = client.keys();
        if keys.is_cluster() {
            return Err(Error::Config(
                "workflows are not available in the cluster layout yet (a step's end pushes its children to queues in other slots); use one Redis".into(),
            ));
        }
        let wid = payload::new_jid();
        let now = crate::clock::now_secs();
        let base = workflow_key(keys, &wid, "");
        let key = |suffix: &str| workflow_key(keys, &wid, suffix);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.hset_multiple(
            &base,
            &[
                ("name", self.name.clone()),
                ("state", "running".to_string()),
                ("policy", self.on_failure.name().to_string()),
                ("created_at", now.to_string()),
                ("total", self.steps.len().to_string()),
                ("done", "0".to_string()),
                ("dead", "0".to_string()),
                ("skipped", "0".to_string()),
            ],
        )
        .ignore();
        let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, job, deps) in &self.steps {
            let jid = job
                .given_jid()
                .map_or_else(payload::new_jid, str::to_string);
            let job = job
                .clone()
                .option(WORKFLOW_FIELD, Value::from(wid.as_str()))
                .option(STEP_FIELD, Value::from(name.as_str()));
            let json = job.to_json(&jid, now, None)?;
            let open = json.strip_suffix('}').unwrap_or(&json).to_string();
            let queue = job.queue_name().to_string();
            pipe.hset(key("jobs"), name, &open).ignore();
            pipe.hset(key("queues"), name, &queue).ignore();
            pipe.hset(key("jids"), name, &jid).ignore();
            pipe.hset(
                key("parents"),
                name,
                serde_json::to_string(deps).unwrap_or_default(),
            )
            .ignore();
            pipe.hset(key("pending"), name, deps.len()).ignore();
            if let Some(kids) = children.get(name.as_str()) {
                pipe.hset(
                    key("children"),
                    name,
                    serde_json::to_string(kids).unwrap_or_default(),
                )
                .ignore();
            }
            let state = if deps.is_empty() {
                roots.entry(queue).or_default().push(format!(
                    "{open},\"enqueued_at\":{}}}",
                    payload::timestamp_text(now)
                ));
                "enqueued"
            } else {
                "waiting"
            };
            pipe.hset(key("state"), name, state).ignore();
        }
        for (queue, jobs) in &roots {
            pipe.sadd(keys.queues(), queue).ignore();
            pipe.lpush(keys.queue(queue), jobs).ignore();
        }
        // The index the API lists, newest last; entries go with the workflows' keys.
        pipe.zadd(keys.key(WORKFLOWS), &wid, now).ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(keys.key(WORKFLOWS))
            .arg("-inf")
            .arg(now - WORKFLOW_TTL.as_secs_f64())
            .ignore();
        for suffix in [
            "", "jobs", "queues", "jids", "parents", "pending", "children", "state", "results",
        ] {
            pipe.expire(key(suffix), WORKFLOW_TTL.as_secs() as i64)
                .ignore();
        }
        let _: () = pipe
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| Error::Other(format!("pushing workflow {:?}: {e}", self.name)))?;
        Ok(wid)
    }
}

/// A workflow's key: `wf:WID` and its `wf:WID:suffix` hashes.
pub(crate) fn workflow_key(keys: &Keys, wid: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        keys.key(&format!("wf:{wid}"))
    } else {
        keys.key(&format!("wf:{wid}:{suffix}"))
    }
}

/// Where the running step is: its workflow and its name, with the server's Redis.
#[cfg(feature = "server")]
#[derive(Clone)]
pub(crate) struct StepEnv {
    conn: crate::store::connection::Connection,
    keys: Keys,
    wid: String,
    step: String,
}

#[cfg(feature = "server")]
tokio::task_local! {
    static STEP: StepEnv;
}

/// The running step's workflow id and name; `None` outside a workflow step.
#[cfg(feature = "server")]
pub fn current() -> Option<(String, String)> {
    STEP.try_with(|env| (env.wid.clone(), env.step.clone()))
        .ok()
}

/// The results of the steps the running step depends on, by step name (each as its JSON
/// value: `null` for a step with no output). Empty outside a workflow step.
#[cfg(feature = "server")]
pub async fn inputs() -> Result<HashMap<String, Value>> {
    let Ok(env) = STEP.try_with(Clone::clone) else {
        return Ok(HashMap::new());
    };
    let mut conn = env.conn.clone();
    let parents: Option<String> = redis::cmd("HGET")
        .arg(workflow_key(&env.keys, &env.wid, "parents"))
        .arg(&env.step)
        .query_async(&mut conn)
        .await
        .map_err(|e| Error::Other(format!("reading a workflow step's parents: {e}")))?;
    let parents: Vec<String> =
        serde_json::from_str(&parents.unwrap_or_default()).unwrap_or_default();
    if parents.is_empty() {
        return Ok(HashMap::new());
    }
    let results: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(workflow_key(&env.keys, &env.wid, "results"))
        .arg(&parents)
        .query_async(&mut conn)
        .await
        .map_err(|e| Error::Other(format!("reading a workflow step's inputs: {e}")))?;
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
#[cfg(feature = "server")]
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
#[cfg(feature = "server")]
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

/// The server middleware that counts workflow steps' successes (a death is counted by the
/// farewell) and gives each step its [`inputs`] and [`add_step`]. A job without `wf` passes
/// with a substring search of its payload.
#[cfg(feature = "server")]
pub struct WorkflowSteps {
    conn: crate::store::connection::Connection,
    keys: Keys,
}

#[cfg(feature = "server")]
impl WorkflowSteps {
    pub(crate) fn new(conn: crate::store::connection::Connection, keys: Keys) -> WorkflowSteps {
        WorkflowSteps { conn, keys }
    }
}

#[cfg(feature = "server")]
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
        // A success passes its result on; a step discarded or skipped unrun (expired, say)
        // ends without one, as a dead step does (a failure waits for its retries; a
        // death is counted by the farewell).
        let (end, result) = match &outcome {
            Outcome::Done => ("succeeded", job.signals().output().unwrap_or("null")),
            Outcome::Discarded(_) | Outcome::Skipped(_) => ("dead", ""),
            _ => return outcome,
        };
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(crate::store::scripts::WORKFLOW_STEP));
        let result = result.to_string();
        let mut outage = crate::store::outage::Outage::new("counting a workflow step");
        // Until it works, as batches are counted: the step is acknowledged only after its
        // workflow knows, so an uncounted success cannot leave its children waiting.
        let counted = crate::store::outage::until_cured(&mut outage, || {
            let mut conn = self.conn.clone();
            let (prefix, wid, step, result) = (self.keys.prefix(), &wid, &step, &result);
            async move {
                SCRIPT
                    .arg(prefix)
                    .arg(wid)
                    .arg(step)
                    .arg(end)
                    .arg(result)
                    .arg(payload::timestamp_text(crate::clock::now_secs()))
                    .invoke_async::<i64>(&mut conn)
                    .await
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
