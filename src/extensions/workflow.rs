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

use crate::batch::Batch;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::payload;
use crate::store::keys::Keys;

/// How long a workflow's keys live after it was pushed.
pub const WORKFLOW_TTL: Duration = Duration::from_secs(30 * 86_400);

/// The sorted set of workflow ids by when they were pushed.
pub(crate) const WORKFLOWS: &str = "workflows";

/// The class of the job a batch step's batch pushes when it succeeds or dies: it ends the
/// step (every Psychiq server runs it; see [`WorkflowSteps`]).
pub const BATCH_STEP_CLASS: &str = "Psychiq::WorkflowBatchStep";

/// The payload fields a step carries (Sidekiq ignores them).
pub(crate) const WORKFLOW_FIELD: &str = "wf";
pub(crate) const STEP_FIELD: &str = "wf_step";

/// What a step that dies does to its workflow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// Nothing new starts; the waiting steps are skipped; the workflow fails (the default).
    #[default]
    Stop,
    /// Only the steps that depend on the dead one (however far down) are skipped; the rest
    /// run; the workflow fails when all have ended.
    Continue,
    /// As [`OnFailure::Stop`], and the named compensation step (added with
    /// [`Workflow::compensation`]) starts: it undoes what the succeeded steps did, reading
    /// their results as its [`inputs`].
    Compensate(String),
}

impl OnFailure {
    fn name(&self) -> String {
        match self {
            OnFailure::Stop => "stop".into(),
            OnFailure::Continue => "continue".into(),
            OnFailure::Compensate(step) => format!("compensate:{step}"),
        }
    }
}

/// What a step runs.
#[derive(Debug, Clone)]
enum Body {
    /// A job, pushed when the step starts.
    Job(Job),
    /// A job that runs only when a dead step's policy names it.
    Compensation(Job),
    /// A workflow of its own, started when the step starts; the step succeeds when it does.
    Workflow(Workflow),
    /// A batch of jobs, pushed when the step starts; the step succeeds when the batch does.
    Batch(Batch, Vec<Job>),
}

#[derive(Debug, Clone)]
struct StepDef {
    name: String,
    body: Body,
    parents: Vec<String>,
    on_failure: Option<OnFailure>,
}

/// A workflow being built: steps in the order added, each with the steps it runs after.
#[derive(Debug, Clone)]
pub struct Workflow {
    name: String,
    steps: Vec<StepDef>,
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

    fn add(mut self, name: impl Into<String>, body: Body) -> Workflow {
        self.steps.push(StepDef {
            name: name.into(),
            body,
            parents: Vec::new(),
            on_failure: None,
        });
        self
    }

    /// Adds step `name`, running `job`; it depends on nothing until [`Workflow::after`].
    pub fn step(self, name: impl Into<String>, job: Job) -> Workflow {
        self.add(name, Body::Job(job))
    }

    /// Adds step `name` that is a whole workflow: it starts when the step does, its steps'
    /// [`inputs`] with no parent of their own are the step's, and the step succeeds (with
    /// the results of its last steps, by name) when it does, or dies when it fails.
    pub fn sub_workflow(self, name: impl Into<String>, workflow: Workflow) -> Workflow {
        self.add(name, Body::Workflow(workflow))
    }

    /// Adds step `name` that is a batch of `jobs`: they are pushed when the step starts,
    /// and the step succeeds (with `{"bid": BID}` as its result) when every one of them has,
    /// or dies when one dies. The batch's success and death are the step's; its `complete`
    /// callback may be set. Its jobs are counted with the workflow's push.
    pub fn batch_step(self, name: impl Into<String>, batch: Batch, jobs: Vec<Job>) -> Workflow {
        self.add(name, Body::Batch(batch, jobs))
    }

    /// Adds compensation step `name`: it runs only when a dying step's policy is
    /// [`OnFailure::Compensate`] with its name, after no step ([`Workflow::after`] is
    /// refused for it), and is skipped when the workflow ends without it. Its [`inputs`] are the results of every step that succeeded.
    ///
    /// ```
    /// use psychiq::workflow::{OnFailure, Workflow};
    /// use psychiq::Job;
    /// let order = Workflow::new("order 42")
    ///     .step("charge", Job::new("Charge", (42,)).unwrap())
    ///     .step("ship", Job::new("Ship", (42,)).unwrap())
    ///     .after(&["charge"])
    ///     .compensation("refund", Job::new("Refund", (42,)).unwrap())
    ///     .on_failure(OnFailure::Compensate("refund".into()));
    /// # let _ = order;
    /// ```
    pub fn compensation(self, name: impl Into<String>, job: Job) -> Workflow {
        self.add(name, Body::Compensation(job))
    }

    /// Makes the step added last run after each of `parents` has succeeded.
    pub fn after(mut self, parents: &[&str]) -> Workflow {
        if let Some(step) = self.steps.last_mut() {
            step.parents.extend(parents.iter().map(|p| p.to_string()));
        }
        self
    }

    /// What a dead step does to the workflow ([`OnFailure::Stop`] unless set).
    pub fn on_failure(mut self, policy: OnFailure) -> Workflow {
        self.on_failure = policy;
        self
    }

    /// What the step added last does to the workflow when it dies, over the workflow's
    /// [`Workflow::on_failure`].
    pub fn step_on_failure(mut self, policy: OnFailure) -> Workflow {
        if let Some(step) = self.steps.last_mut() {
            step.on_failure = Some(policy);
        }
        self
    }

    /// Checks the graph (and its sub-workflows'): steps, unique names, known parents, no
    /// cycle, compensation steps that nothing runs after and that policies name. Returns the
    /// steps' children by name.
    fn check(&self) -> Result<HashMap<&str, Vec<&str>>> {
        let bad = |why: String| Err(Error::Config(format!("workflow {:?}: {why}", self.name)));
        if self.steps.is_empty() {
            return bad("it has no steps; add them with .step(name, job)".into());
        }
        let mut names = HashSet::new();
        for step in &self.steps {
            if !names.insert(step.name.as_str()) {
                return bad(format!(
                    "two steps are named {:?}; name each once",
                    step.name
                ));
            }
        }
        let compensations: HashSet<&str> = self
            .steps
            .iter()
            .filter(|s| matches!(s.body, Body::Compensation(_)))
            .map(|s| s.name.as_str())
            .collect();
        let policies = self
            .steps
            .iter()
            .filter_map(|s| s.on_failure.as_ref())
            .chain([&self.on_failure]);
        for policy in policies {
            if let OnFailure::Compensate(name) = policy
                && !compensations.contains(name.as_str())
            {
                return bad(format!(
                    "its failure policy compensates with {name:?}, which is not a compensation step of it; add it with .compensation({name:?}, job)"
                ));
            }
        }
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for step in &self.steps {
            match &step.body {
                Body::Workflow(sub) => {
                    sub.check()?;
                }
                Body::Batch(batch, _)
                    if batch.has_callback("success") || batch.has_callback("death") =>
                {
                    return bad(format!(
                        "batch step {:?} has its own success or death callback; its success and death are the step's (run what follows as a later step)",
                        step.name
                    ));
                }
                _ => {}
            }
            if compensations.contains(step.name.as_str()) && !step.parents.is_empty() {
                return bad(format!(
                    "compensation step {:?} runs after other steps; it runs when one dies, after none",
                    step.name
                ));
            }
            for dep in &step.parents {
                if !names.contains(dep.as_str()) {
                    return bad(format!(
                        "step {:?} runs after {dep:?}, which is not a step of it",
                        step.name
                    ));
                }
                if compensations.contains(dep.as_str()) {
                    return bad(format!(
                        "step {:?} runs after compensation step {dep:?}; nothing runs after one",
                        step.name
                    ));
                }
                children
                    .entry(dep.as_str())
                    .or_default()
                    .push(step.name.as_str());
            }
        }
        // Kahn's algorithm: every step must be reachable from the roots.
        let mut pending: HashMap<&str, usize> = self
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.parents.len()))
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

    /// Pushes the workflow (with its sub-workflows) in one transaction: its steps recorded,
    /// the ones with no parent started. Returns its id.
    pub async fn push(self, client: &Client) -> Result<String> {
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
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
        self.write(&mut pipe, keys, &wid, None, now, &mut roots)?;
        for (queue, jobs) in &roots {
            pipe.sadd(keys.queues(), queue).ignore();
            pipe.lpush(keys.queue(queue), jobs).ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(keys.key(WORKFLOWS))
            .arg("-inf")
            .arg(now - WORKFLOW_TTL.as_secs_f64())
            .ignore();
        let _: () = pipe
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| Error::Other(format!("pushing workflow {:?}: {e}", self.name)))?;
        Ok(wid)
    }

    /// Adds to `pipe` the writes that record this workflow as `wid`: a step of `parent`
    /// (its workflow id and step name) that waits to be started, or started now (its roots
    /// added to `roots` by queue).
    fn write(
        &self,
        pipe: &mut redis::Pipeline,
        keys: &Keys,
        wid: &str,
        parent: Option<(&str, &str, bool)>,
        now: f64,
        roots: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        let children = self.check()?;
        let base = workflow_key(keys, wid, "");
        let key = |suffix: &str| workflow_key(keys, wid, suffix);
        let started = parent.is_none_or(|(_, _, started)| started);
        let compensations = self
            .steps
            .iter()
            .filter(|s| matches!(s.body, Body::Compensation(_)))
            .count();
        let mut fields = vec![
            ("name", self.name.clone()),
            (
                "state",
                if started { "running" } else { "held" }.to_string(),
            ),
            ("policy", self.on_failure.name()),
            ("created_at", now.to_string()),
            ("total", self.steps.len().to_string()),
            ("done", "0".to_string()),
            ("dead", "0".to_string()),
            ("skipped", "0".to_string()),
            ("standby", compensations.to_string()),
        ];
        if let Some((parent_wf, parent_step, _)) = parent {
            fields.push(("parent_wf", parent_wf.to_string()));
            fields.push(("parent_step", parent_step.to_string()));
        }
        pipe.hset_multiple(&base, &fields).ignore();
        for step in &self.steps {
            let name = step.name.as_str();
            let root = step.parents.is_empty() && !matches!(step.body, Body::Compensation(_));
            let state = match (&step.body, root && started) {
                (Body::Compensation(_), _) => "standby",
                (_, true) => "enqueued",
                (_, false) => "waiting",
            };
            match &step.body {
                Body::Job(job) | Body::Compensation(job) => {
                    let jid = job
                        .given_jid()
                        .map_or_else(payload::new_jid, str::to_string);
                    let job = job
                        .clone()
                        .option(WORKFLOW_FIELD, Value::from(wid))
                        .option(STEP_FIELD, Value::from(name));
                    let json = job.to_json(&jid, now, None)?;
                    let open = json.strip_suffix('}').unwrap_or(&json).to_string();
                    let queue = job.queue_name().to_string();
                    pipe.hset(key("jobs"), name, &open).ignore();
                    pipe.hset(key("queues"), name, &queue).ignore();
                    pipe.hset(key("jids"), name, &jid).ignore();
                    if state == "enqueued" {
                        roots.entry(queue).or_default().push(format!(
                            "{open},\"enqueued_at\":{}}}",
                            payload::timestamp_text(now)
                        ));
                    }
                    if matches!(step.body, Body::Compensation(_)) {
                        pipe.hset(key("kinds"), name, "compensation").ignore();
                    }
                }
                Body::Workflow(sub) => {
                    let sub_wid = payload::new_jid();
                    sub.write(
                        pipe,
                        keys,
                        &sub_wid,
                        Some((wid, name, state == "enqueued")),
                        now,
                        roots,
                    )?;
                    pipe.hset(key("jids"), name, &sub_wid).ignore();
                    pipe.hset(key("kinds"), name, format!("workflow:{sub_wid}"))
                        .ignore();
                }
                Body::Batch(batch, jobs) => {
                    // Its success and death callbacks end the step (see [`BatchStepEnd`]),
                    // on the queue of its first job, which a server running it serves.
                    let queue = jobs.first().map_or("default", Job::queue_name).to_string();
                    let end = Job::new(BATCH_STEP_CLASS, crate::NoArgs)?
                        .queue(queue.clone())
                        .option(WORKFLOW_FIELD, Value::from(wid))
                        .option(STEP_FIELD, Value::from(name));
                    let batch = batch.clone().on_success(end.clone()).on_death(end);
                    let held = batch.write_held(pipe, keys, jobs.clone(), now)?;
                    if state == "enqueued" {
                        for (queue, open) in held {
                            roots.entry(queue).or_default().push(format!(
                                "{open},\"enqueued_at\":{}}}",
                                payload::timestamp_text(now)
                            ));
                        }
                    } else {
                        let held = serde_json::to_string(&held).unwrap_or_default();
                        pipe.hset(key("jobs"), name, held).ignore();
                    }
                    pipe.hset(key("queues"), name, &queue).ignore();
                    pipe.hset(key("jids"), name, batch.bid()).ignore();
                    pipe.hset(key("kinds"), name, format!("batch:{}", batch.bid()))
                        .ignore();
                }
            }
            pipe.hset(
                key("parents"),
                name,
                serde_json::to_string(&step.parents).unwrap_or_default(),
            )
            .ignore();
            pipe.hset(key("pending"), name, step.parents.len()).ignore();
            if let Some(kids) = children.get(name) {
                pipe.hset(
                    key("children"),
                    name,
                    serde_json::to_string(kids).unwrap_or_default(),
                )
                .ignore();
            }
            if let Some(policy) = &step.on_failure {
                pipe.hset(key("policies"), name, policy.name()).ignore();
            }
            pipe.hset(key("state"), name, state).ignore();
        }
        // The index the API lists, newest last; entries go with the workflows' keys.
        pipe.zadd(keys.key(WORKFLOWS), wid, now).ignore();
        for suffix in WORKFLOW_HASHES {
            pipe.expire(key(suffix), WORKFLOW_TTL.as_secs() as i64)
                .ignore();
        }
        Ok(())
    }
}

/// A workflow's hashes by suffix ("" is `wf:WID` itself).
const WORKFLOW_HASHES: [&str; 11] = [
    "", "jobs", "queues", "jids", "parents", "pending", "children", "state", "results", "kinds",
    "policies",
];

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
/// value: `null` for a step with no output). A first step of a sub-workflow has the inputs
/// of the step its workflow is; a compensation step has the results of every step that
/// succeeded. Empty outside a workflow step.
#[cfg(feature = "server")]
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
#[cfg(feature = "server")]
pub(crate) struct BatchStepEnd;

#[cfg(feature = "server")]
impl crate::Worker for BatchStepEnd {
    type Args = crate::NoArgs;
    async fn perform(&self, _: crate::NoArgs) -> crate::JobResult {
        Ok(())
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
        let batch_result;
        // A success passes its result on; a step discarded or skipped unrun (expired, say)
        // ends without one, as a dead step does (a failure waits for its retries; a
        // death is counted by the farewell).
        let (end, result, jid) = match (&outcome, &batch_event) {
            (Outcome::Done, Some((bid, event))) => {
                batch_result = serde_json::json!({ "bid": bid }).to_string();
                let end = if event == "success" {
                    "succeeded"
                } else {
                    "dead"
                };
                (end, batch_result.as_str(), bid.as_str())
            }
            (Outcome::Done, None) => (
                "succeeded",
                job.signals().output().unwrap_or("null"),
                job.jid(),
            ),
            (Outcome::Discarded(_) | Outcome::Skipped(_), _) => ("dead", "", job.jid()),
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
