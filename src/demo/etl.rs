//! The ETL workflow the tour runs and the README shows: fetch pages in parallel, parse each,
//! merge the counts, notify. The tour has no network, so `Etl::Fetch` makes a page's text
//! up from its address.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::workflow::{self, Workflow};
use crate::{Job, JobError, NoArgs, Result, Task};

/// The workflow: `fetch-N` and then `parse-N` for each page, `merge` after every parse,
/// `notify` after the merge (appending the totals to `report_path` as a line of JSON), all
/// on `queue`.
pub fn etl_workflow(pages: &[&str], report_path: &str, queue: &str) -> Result<Workflow> {
    let job = |class: &str, args: Value| Job::new(class, args).map(|job| job.queue(queue));
    let mut etl = Workflow::new(format!("etl of {} pages", pages.len()));
    let mut parses = Vec::new();
    for (i, url) in pages.iter().enumerate() {
        etl = etl
            .step(format!("fetch-{i}"), job("Etl::Fetch", json!([url]))?)
            .step(format!("parse-{i}"), job("Etl::Parse", json!([i]))?)
            .after([format!("fetch-{i}")]);
        parses.push(format!("parse-{i}"));
    }
    Ok(etl
        .step("merge", job("Etl::Merge", json!([]))?)
        .after(&parses)
        .step("notify", job("Etl::Notify", json!([report_path]))?)
        .after(["merge"]))
}

/// What a page holds: its address and its words, counted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// The pages counted.
    pub pages: Vec<String>,
    /// Each word's count.
    pub words: BTreeMap<String, u64>,
}

/// `[url]`: the page's text (made up from its address: no network in the tour).
pub(crate) struct Fetch;
impl Task for Fetch {
    type Args = (String,);
    type Output = String;
    fn class_name() -> String {
        "Etl::Fetch".into()
    }
    async fn run(&self, (url,): (String,)) -> std::result::Result<String, JobError> {
        let name = url.rsplit('/').next().unwrap_or(&url);
        Ok(format!("{url} says hello from {name} and hello again"))
    }
}

/// `[i]`: counts the words of the page `fetch-i` fetched.
pub(crate) struct Parse;
impl Task for Parse {
    type Args = (usize,);
    type Output = Counts;
    fn class_name() -> String {
        "Etl::Parse".into()
    }
    async fn run(&self, (i,): (usize,)) -> std::result::Result<Counts, JobError> {
        let page: String = workflow::input(&format!("fetch-{i}")).await?;
        let mut counts = Counts::default();
        let mut words = page.split_whitespace();
        counts
            .pages
            .push(words.next().unwrap_or_default().to_string());
        for word in words {
            *counts.words.entry(word.to_string()).or_default() += 1;
        }
        Ok(counts)
    }
}

/// `[]`: adds up the counts of every parse.
pub(crate) struct Merge;
impl Task for Merge {
    type Args = NoArgs;
    type Output = Counts;
    fn class_name() -> String {
        "Etl::Merge".into()
    }
    async fn run(&self, _: NoArgs) -> std::result::Result<Counts, JobError> {
        let mut total = Counts::default();
        for (_, parsed) in workflow::inputs().await? {
            let parsed: Counts = serde_json::from_value(parsed)?;
            total.pages.extend(parsed.pages);
            for (word, n) in parsed.words {
                *total.words.entry(word).or_default() += n;
            }
        }
        total.pages.sort();
        Ok(total)
    }
}

/// `[path]`: appends the merged totals to `path`, as the notice a real one would send.
pub(crate) struct Notify;
impl Task for Notify {
    type Args = (String,);
    type Output = ();
    fn class_name() -> String {
        "Etl::Notify".into()
    }
    async fn run(&self, (path,): (String,)) -> std::result::Result<(), JobError> {
        let merged: Counts = workflow::input("merge").await?;
        let line =
            serde_json::json!({"etl": "done", "pages": merged.pages.len(), "words": merged.words});
        super::append_line(Some(&Value::from(path)), &[line])
    }
}
