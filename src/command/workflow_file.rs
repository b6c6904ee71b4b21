//! A workflow written in TOML, for command workers (or any class a server runs), pushed with
//! `psychiq workflows push FILE`.
//!
//! ```
//! let workflow = psychiq::command::parse_workflow(r#"
//!     name = "nightly export"
//!     on_failure = "compensate:clean-up"   # or "stop" (the default), "continue"
//!
//!     [[step]]
//!     name = "dump"
//!     class = "Export::Dump"
//!     args = ["2026-12-07"]
//!
//!     [[step]]
//!     name = "upload"
//!     class = "Export::Upload"
//!     after = ["dump"]
//!     queue = "network"       # optional, as are retry and options
//!     retry = 3
//!     options = { tags = ["export"] }
//!
//!     [[step]]
//!     name = "clean-up"
//!     class = "Export::CleanUp"
//!     compensation = true     # runs only when a step dies and the policy names it
//! "#).unwrap();
//! # let _ = workflow;
//! ```
//!
//! Sub-workflows and batch steps are built in Rust ([`crate::workflow::Workflow`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::job::builder::Job;
use crate::workflow::{OnFailure, Workflow};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    on_failure: Option<String>,
    #[serde(default)]
    step: Vec<StepSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepSpec {
    name: String,
    class: String,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    after: Vec<String>,
    queue: Option<String>,
    retry: Option<Value>,
    #[serde(default)]
    options: BTreeMap<String, Value>,
    on_failure: Option<String>,
    #[serde(default)]
    compensation: bool,
}

/// Reads a workflow from a TOML file (see [`parse_workflow`]).
pub fn load_workflow(path: &Path) -> Result<Workflow, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_workflow(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a workflow from TOML: its `name`, an optional `on_failure`, and its `[[step]]`s,
/// each a `name`, a `class`, and optionally `args`, `after`, `queue`, `retry`, `options`
/// (more payload fields), `on_failure` and `compensation`. The graph itself is checked
/// when it is pushed.
pub fn parse_workflow(text: &str) -> Result<Workflow, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.step.is_empty() {
        return Err("no [[step]]; each step is a table with a name and a class".into());
    }
    let mut workflow = Workflow::new(file.name);
    if let Some(policy) = &file.on_failure {
        workflow = workflow.on_failure(policy_from(policy)?);
    }
    for spec in file.step {
        let mut job = Job::new(spec.class.as_str(), spec.args)
            .map_err(|e| format!("step {:?}: {e}", spec.name))?;
        if let Some(queue) = spec.queue {
            job = job.queue(queue);
        }
        if let Some(retry) = spec.retry {
            job = job.option("retry", retry);
        }
        for (key, value) in spec.options {
            job = job.option(key, value);
        }
        workflow = if spec.compensation {
            workflow.compensation(spec.name.as_str(), job)
        } else {
            workflow.step(spec.name.as_str(), job)
        };
        workflow = workflow.after(&spec.after);
        if let Some(policy) = &spec.on_failure {
            let policy = policy_from(policy).map_err(|e| format!("step {:?}: {e}", spec.name))?;
            workflow = workflow.step_on_failure(policy);
        }
    }
    Ok(workflow)
}

fn policy_from(text: &str) -> Result<OnFailure, String> {
    match text {
        "stop" => Ok(OnFailure::Stop),
        "continue" => Ok(OnFailure::Continue),
        _ => match text.strip_prefix("compensate:") {
            Some(step) if !step.is_empty() => Ok(OnFailure::Compensate(step.to_string())),
            _ => Err(format!(
                "on_failure {text:?} is none of \"stop\", \"continue\", \"compensate:STEP\""
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_files_say_what_is_wrong() {
        let no_steps = parse_workflow("name = \"x\"").err().unwrap();
        assert!(no_steps.contains("no [[step]]"), "{no_steps}");
        let policy = parse_workflow(
            "name = \"x\"\non_failure = \"panic\"\n[[step]]\nname = \"a\"\nclass = \"A\"",
        )
        .err()
        .unwrap();
        assert!(policy.contains("none of"), "{policy}");
        let unknown =
            parse_workflow("name = \"x\"\n[[step]]\nname = \"a\"\nclass = \"A\"\nafer = []")
                .err()
                .unwrap();
        assert!(unknown.contains("afer"), "{unknown}");
    }
}
