//! Building a workflow and pushing it: steps (jobs, sub-workflows, batches, compensation),
//! the graph's check, and the one transaction that records it and starts its first steps.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::{BATCH_STEP_CLASS, STEP_FIELD, WORKFLOW_FIELD, WORKFLOW_TTL, WORKFLOWS};
use crate::batch::Batch;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::builder::Job;
use crate::job::payload;
use crate::store::keys::Keys;

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
    /// their results as its [`inputs`](super::inputs).
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
    /// [`inputs`](super::inputs) with no parent of their own are the step's, and the step succeeds (with
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
    /// refused for it), and is skipped when the workflow ends without it. Its [`inputs`](super::inputs) are the results of every step that succeeded.
    ///
    /// ```
    /// use psychiq::workflow::{OnFailure, Workflow};
    /// use psychiq::Job;
    /// let order = Workflow::new("order 42")
    ///     .step("charge", Job::new("Charge", (42,)).unwrap())
    ///     .step("ship", Job::new("Ship", (42,)).unwrap())
    ///     .after(["charge"])
    ///     .compensation("refund", Job::new("Refund", (42,)).unwrap())
    ///     .on_failure(OnFailure::Compensate("refund".into()));
    /// # let _ = order;
    /// ```
    pub fn compensation(self, name: impl Into<String>, job: Job) -> Workflow {
        self.add(name, Body::Compensation(job))
    }

    /// Makes the step added last run after each of `parents` has succeeded (names as
    /// `&["a", "b"]`, or any list of strings).
    pub fn after<S: AsRef<str>>(mut self, parents: impl IntoIterator<Item = S>) -> Workflow {
        if let Some(step) = self.steps.last_mut() {
            step.parents
                .extend(parents.into_iter().map(|p| p.as_ref().to_string()));
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
        if self
            .steps
            .iter()
            .all(|s| matches!(s.body, Body::Compensation(_)))
        {
            return bad("it has no steps to run; add them with .step(name, job)".into());
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
                    job.refuse_encrypt("a workflow")?;
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
                    // Its jobs are kept with the step (pushed when it starts; a retry
                    // pushes its dead ones again).
                    let held = batch.write_held(pipe, keys, jobs.clone(), now)?;
                    if state == "enqueued" {
                        for (queue, open) in &held {
                            roots.entry(queue.clone()).or_default().push(format!(
                                "{open},\"enqueued_at\":{}}}",
                                payload::timestamp_text(now)
                            ));
                        }
                    }
                    let held = serde_json::to_string(&held).unwrap_or_default();
                    pipe.hset(key("jobs"), name, held).ignore();
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
            if state == "enqueued" {
                pipe.hset(key("started_at"), name, payload::timestamp_text(now))
                    .ignore();
            }
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
const WORKFLOW_HASHES: [&str; 14] = [
    "",
    "jobs",
    "queues",
    "jids",
    "parents",
    "pending",
    "children",
    "state",
    "results",
    "kinds",
    "policies",
    "errors",
    "started_at",
    "ended_at",
];

/// A workflow's key: `wf:WID` and its `wf:WID:suffix` hashes.
pub(crate) fn workflow_key(keys: &Keys, wid: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        keys.key(&format!("wf:{wid}"))
    } else {
        keys.key(&format!("wf:{wid}:{suffix}"))
    }
}
