//! The `psychiq` admin commands: `stats`, `queues`, `jobs`, `scheduled` / `retries` / `dead`,
//! `processes`, `enqueue` and `web`, each a thin layer over [`crate::api`].
//!
//! Output is a readable table unless `--json` is given. Bad input (arguments that are not a
//! JSON array, an unreadable time, an unknown jid) prints one `error:` line that says what
//! to do and exits with status 2; an unreachable Redis exits with status 1.

use std::process::ExitCode;

use serde_json::Value;

use crate::api::{Api, JobRecord, SetKind, utc_text};
use crate::error::Error;

mod args;
mod enqueue;
mod extensions;
mod groups;
mod jobs;
mod overview;
mod serve;
mod spool;
mod status;
mod workflows;

pub use args::*;
use enqueue::{enqueue, job_to_enqueue};
use extensions::{batches, iterations, limits, periodic, unique};
use jobs::{jobs, locate, set};
use overview::{processes, queues, stats};
pub use serve::serve;

/// A failure of an admin command: bad input (status 2), or what it names is not there or
/// anything else (status 1).
enum Failure {
    BadInput(String),
    NotFound(String),
    Other(Error),
}

impl Confirm {
    /// Goes on with `what` if `--yes` was given or the person at the terminal types `yes`.
    fn ask(&self, what: &str) -> std::result::Result<(), Failure> {
        use std::io::{BufRead, IsTerminal, Write};
        if self.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            return Err(Failure::BadInput(format!(
                "this would {what}; add --yes to confirm (nothing was changed)"
            )));
        }
        eprint!(
            "This will {}. Type yes to go on: ",
            crate::job::text::printable(what)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() == "yes" {
            Ok(())
        } else {
            Err(Failure::BadInput(
                "not confirmed; nothing was changed".into(),
            ))
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::NotFound(message) => Failure::NotFound(message),
            Error::Config(message) => Failure::BadInput(message),
            e => Failure::Other(e),
        }
    }
}

type Outcome = std::result::Result<(), Failure>;

/// Runs an admin command; prints its result and returns the exit status.
pub async fn run(command: AdminCommand, redis: &RedisArgs, json_output: bool) -> ExitCode {
    let result = match command {
        AdminCommand::Web(args) => serve(args, redis).await.map_err(Failure::from),
        // Reading a journal needs no Redis (it is read while Redis is away).
        AdminCommand::Spool { action } => spool::spool(action, redis, json_output).await,
        // Bad input is reported before Redis is asked anything.
        AdminCommand::Enqueue(args) => match job_to_enqueue(&args) {
            Ok(job) => match redis.config().api().await {
                Ok(api) => enqueue(&api, &Out::new(json_output, &api), &args, job).await,
                Err(e) => Err(Failure::Other(e)),
            },
            Err(bad) => Err(bad),
        },
        command => match redis.config().api().await {
            Ok(api) => {
                // Tables say where they come from, and an empty namespace (a typo in -n)
                // says which namespaces do hold jobs.
                let out = Out::new(json_output, &api);
                let warning = match json_output {
                    false => empty_namespace_warning(&api, redis).await,
                    true => None,
                };
                if let Some(warning) = warning {
                    eprintln!("{warning}");
                }
                dispatch(command, &api, &out).await
            }
            Err(e) => Err(Failure::Other(e)),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(message)) => {
            eprintln!("error: {}", crate::job::text::printable(&message));
            ExitCode::from(2)
        }
        Err(Failure::NotFound(message)) => {
            eprintln!("error: {}", crate::job::text::printable(&message));
            ExitCode::FAILURE
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e}{}", e.command_line_hint());
            ExitCode::FAILURE
        }
    }
}

/// When the namespace holds none of the keys every Sidekiq-layout namespace has, a warning
/// listing the namespaces of this Redis that do (from their `queues` and `processes` keys,
/// found by a bounded `SCAN`).
async fn empty_namespace_warning(api: &Api, redis: &RedisArgs) -> Option<String> {
    let keys = api.keys();
    if keys.is_cluster() {
        return None;
    }
    let probe = [
        "queues",
        "processes",
        "stat:processed",
        "retry",
        "dead",
        "schedule",
    ];
    let mut exists = redis::cmd("EXISTS");
    for name in probe {
        exists.arg(keys.key(name));
    }
    let found: u64 = exists.query_async(&mut api.connection()).await.ok()?;
    if found > 0 {
        return None;
    }
    let mut others = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    // At most 20 pages of 1,000 keys: a hint, not an inventory.
    for _ in 0..20 {
        let (next, names): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut api.connection())
            .await
            .ok()?;
        for name in names {
            let name = String::from_utf8_lossy(&name);
            for kind in ["queues", "processes"] {
                if name == kind {
                    others.insert(String::new());
                } else if let Some(prefix) = name.strip_suffix(&format!(":{kind}")) {
                    others.insert(prefix.to_string());
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let listed: Vec<String> = others
        .iter()
        .map(|ns| crate::api::namespace_label(ns))
        .collect();
    Some(if listed.is_empty() {
        format!(
            "warning: nothing is stored under namespace {} in this Redis, nor under any other",
            crate::api::namespace_label(&redis.namespace)
        )
    } else {
        format!(
            "warning: nothing is stored under namespace {} in this Redis; these namespaces hold jobs: {} (pick one with -n)",
            crate::api::namespace_label(&redis.namespace),
            listed.join(", ")
        )
    })
}

async fn dispatch(command: AdminCommand, api: &Api, out: &Out) -> Outcome {
    match command {
        AdminCommand::Stats { days } => stats(api, out, days).await,
        AdminCommand::Queues { action } => queues(api, out, action).await,
        AdminCommand::Periodic { action } => periodic(api, out, action).await,
        AdminCommand::Limits => limits(api, out).await,
        AdminCommand::Batches { action } => batches(api, out, action).await,
        AdminCommand::Unique { action } => unique(api, out, action).await,
        AdminCommand::Iterations { action } => iterations(api, out, action).await,
        AdminCommand::Job { jid } => {
            if status::tracked(api, out, &jid).await? {
                return Ok(());
            }
            locate(api, out, &jid).await
        }
        AdminCommand::Cancel { jid } => status::cancel(api, out, &jid).await,
        AdminCommand::Workflows { action } => workflows::workflows(api, out, action).await,
        AdminCommand::Groups { action } => groups::groups(api, out, action).await,
        AdminCommand::Spool { .. } => unreachable!("run before Redis is asked"),
        AdminCommand::Events {
            follow,
            class,
            last,
        } => status::events(api, out, follow, class.as_deref(), last).await,
        AdminCommand::Jobs { queue, action } => jobs(api, out, &queue, action).await,
        AdminCommand::Scheduled { action } => set(api, out, SetKind::Scheduled, action).await,
        AdminCommand::Retries { action } => set(api, out, SetKind::Retry, action).await,
        AdminCommand::Dead { action } => set(api, out, SetKind::Dead, action).await,
        AdminCommand::Processes { action } => processes(api, out, action).await,
        AdminCommand::Enqueue(_) | AdminCommand::Web(_) => {
            unreachable!("run() handles these before connecting")
        }
        #[cfg(feature = "demo")]
        AdminCommand::Tour => unreachable!("Cli::run_from runs the tour itself"),
    }
}

/// Prints tables for people or JSON for scripts.
struct Out {
    json: bool,
    /// Which Redis and namespace, the title of every table.
    source: String,
}

impl Out {
    fn new(json: bool, api: &Api) -> Out {
        Out {
            json,
            source: format!("Redis {}", api.source()),
        }
    }

    fn print(&self, value: &Value, headers: &[&str], rows: Vec<Vec<String>>) {
        self.print_json_text(&value.to_string(), headers, rows);
    }

    /// As [`Out::print`], with the JSON already written (jobs keep their exact text).
    fn print_json_text(&self, json: &str, headers: &[&str], rows: Vec<Vec<String>>) {
        if self.json {
            println!("{json}");
        } else {
            println!("{}", self.source);
            print!("{}", table(headers, &rows));
        }
    }

    fn done(&self, value: Value, message: String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{message}");
        }
    }
}

/// Columns padded to their widest cell; long cells cut at 60 characters.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    const MAX: usize = 60;
    let cut = |cell: &str| -> String {
        // Control characters a job carries (ESC, BEL, ...) must not reach the terminal.
        let one_line =
            crate::job::text::printable(&cell.replace(['\n', '\r', '\t'], " ")).into_owned();
        if one_line.chars().count() > MAX {
            one_line.chars().take(MAX - 1).chain(['…']).collect()
        } else {
            one_line
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cut(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut text = line(headers.to_vec());
    for row in &rows {
        text += &line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        text += "(none)\n";
    }
    text
}

/// A job as `--json` prints it, its `item` the payload's own text (so numbers keep their
/// digits: an integer past 64 bits is not turned into a float), or the payload as a string
/// when it is not a JSON object.
fn job_json(job: &JobRecord) -> String {
    #[derive(serde::Serialize)]
    struct Shown<'a> {
        jid: &'a str,
        class: &'a str,
        queue: &'a str,
        score: Option<f64>,
        item: Item<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum Item<'a> {
        Exact(&'a serde_json::value::RawValue),
        Text(&'a str),
    }
    let raw = job.raw();
    let exact = job
        .item()
        .and_then(|_| serde_json::from_str::<&serde_json::value::RawValue>(raw.trim()).ok());
    let shown = Shown {
        jid: job.jid(),
        class: job.display_class(),
        queue: job.queue(),
        score: job.score(),
        item: exact.map_or(Item::Text(raw), Item::Exact),
    };
    serde_json::to_string(&shown).unwrap_or_default()
}

/// Jobs as `--json` prints them: an array of [`job_json`]s.
fn jobs_json(jobs: &[JobRecord]) -> String {
    let shown: Vec<String> = jobs.iter().map(job_json).collect();
    format!("[{}]", shown.join(","))
}

fn not_found(what: &str, jid: &str) -> Failure {
    Failure::BadInput(format!(
        "no job with jid {jid:?} in {what}; list them with `psychiq {what}` (it may have run or moved meanwhile)"
    ))
}

fn job_rows(jobs: &[JobRecord], set: Option<SetKind>) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            let when = match set {
                Some(_) => utc_text(j.score().unwrap_or(0.0)),
                None => utc_text(j.enqueued_at().unwrap_or(0.0)),
            };
            let mut row = vec![
                j.jid().to_string(),
                j.display_class().to_string(),
                j.queue().to_string(),
                when,
                if j.is_encrypted() {
                    crate::encryption::SHOWN.to_string()
                } else {
                    j.args().to_string()
                },
            ];
            if matches!(set, Some(SetKind::Retry | SetKind::Dead)) {
                row.push(format!(
                    "{}: {}",
                    j.error_class().unwrap_or(""),
                    j.error_message().unwrap_or("")
                ));
            }
            row
        })
        .collect()
}

fn show(out: &Out, job: &JobRecord) {
    if out.json {
        println!("{}", job_json(job));
        return;
    }
    // JSON escapes control characters inside strings; raw text and backtraces are escaped here.
    let item = job.item().map_or_else(
        || crate::job::text::printable(job.raw()).into_owned(),
        |i| serde_json::to_string_pretty(i).unwrap_or_default(),
    );
    println!("{item}");
    if !job.is_utf8() {
        println!("(the stored bytes are not UTF-8; those that are not are shown as \\xHH)");
    }
    if let Some(lines) = job.backtrace() {
        println!("\nbacktrace:");
        for line in lines {
            println!("  {}", crate::job::text::printable(&line));
        }
    }
}

/// The failure of a command naming a queue that does not exist.
fn no_queue(queue: &str) -> Failure {
    Failure::NotFound(format!(
        "there is no queue {queue:?}; `psychiq queues` lists them"
    ))
}

#[cfg(test)]
mod tests {
    use super::enqueue::parse_time;
    use super::*;
    use crate::api::span_text;
    use std::time::{Duration, SystemTime};

    #[test]
    fn times_and_spans_read_and_print() {
        assert_eq!(utc_text(1_795_714_845.0), "2026-11-26 17:40:45");
        assert_eq!(
            parse_time("2026-11-26T17:40:45Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_714_845))
        );
        assert_eq!(
            parse_time("2026-11-26T22:40:45+05:00"),
            parse_time("2026-11-26T17:40:45Z")
        );
        assert_eq!(
            parse_time("2026-11-26T12:10:45.5-05:30"),
            parse_time("2026-11-26T17:40:45.5Z")
        );
        assert!(parse_time("2026-11-26T17:40:45+5:00").is_none());
        assert!(parse_time("1795714845.5").is_some());
        assert!(parse_time("tomorrow").is_none());
        assert!(parse_time("1e20").is_none());
        assert_eq!(utc_text(1.7e12), "1700000000000");
        assert_eq!(span_text(59.6), "1m 0s");
        assert_eq!(span_text(3_725.0), "1h 2m");
    }

    #[test]
    fn tables_pad_columns_and_cut_long_cells() {
        let text = table(
            &["a", "b"],
            &[
                vec!["long cell".into(), "x\ny".into()],
                vec!["s".into(), "z".repeat(80)],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "a          b");
        assert_eq!(lines[1], "long cell  x y");
        assert!(lines[2].ends_with('…') && lines[2].chars().count() == 11 + 60);
        assert_eq!(table(&["a"], &[]), "a\n(none)\n");
    }
}
