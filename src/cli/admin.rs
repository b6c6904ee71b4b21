//! The `psychiq` admin commands: `stats`, `queues`, `jobs`, `scheduled` / `retries` / `dead`,
//! `processes`, `enqueue` and `web`, each a thin layer over [`crate::api`].
//!
//! Output is a readable table unless `--json` is given. Bad input (arguments that are not a
//! JSON array, an unreadable time, an unknown jid) prints one `error:` line that says what
//! to do and exits with status 2; an unreachable Redis exits with status 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::api::{Api, JobRecord, SetKind, YEAR_10000, span_text, utc_text};
use crate::client::Push;
use crate::error::Error;
use crate::job::builder::Job;
use crate::job::payload::Retry;
use crate::store::connection::RedisConfig;
use crate::web::{WebConfig, router};

/// An admin command; with none, `psychiq` runs a server.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Totals and per-day history
    Stats {
        /// Days of history to show (1-180)
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=180))]
        days: u32,
    },
    /// Every queue with its size, latency and state; pause or unpause one
    Queues {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<QueuesAction>,
    },
    /// Periodic (cron) entries: list, enqueue one now, pause or resume one
    Periodic {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<PeriodicAction>,
    },
    /// Rate limiters in use: kind, size, interval, how much is taken now, how often over
    Limits,
    /// Iterable jobs in progress: list them, or cancel one
    Iterations {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<IterationsAction>,
    },
    /// Unique jobs' locks: list them, show one, or let one go
    Unique {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<UniqueAction>,
    },
    /// Batches: list them, or show one with its failed jobs
    Batches {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<BatchesAction>,
    },
    /// Where one job is now (running, in a queue, scheduled, retrying or dead), shown in full
    Job {
        /// Its jid
        jid: String,
    },
    /// The jobs of one queue: list, show, delete or clear
    Jobs {
        /// The queue name, e.g. default
        queue: String,
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<JobsAction>,
    },
    /// Jobs scheduled for later
    Scheduled {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<SetAction>,
    },
    /// Failed jobs waiting for a retry
    Retries {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<SetAction>,
    },
    /// Jobs that will not be retried
    Dead {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<SetAction>,
    },
    /// Running server processes; quiet or stop one
    Processes {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<ProcessAction>,
    },
    /// Push one job, e.g. `psychiq enqueue Billing::InvoiceJob '[42, "eur"]' --in 60`
    Enqueue(EnqueueArgs),
    /// Serve the web dashboard
    Web(WebArgs),
    /// Enqueue demo jobs of every kind, run them, and show what happened (starts a
    /// throwaway redis-server if none answers at the default address)
    #[cfg(feature = "demo")]
    Tour,
}

/// What to do with one queue's jobs.
#[derive(Debug, Clone, Subcommand)]
pub enum JobsAction {
    /// One page of jobs, newest first (the default)
    List(PageArgs),
    /// One job in full
    Show {
        /// Its jid
        jid: String,
    },
    /// Delete one job
    Delete {
        /// Its jid
        jid: String,
    },
    /// Delete the queue and every job in it (asks first; --yes for scripts)
    Clear(Confirm),
}

/// Confirmation for a command that changes many jobs at once.
#[derive(Debug, Clone, Args)]
pub struct Confirm {
    /// Do it without asking (for scripts; without a terminal the command refuses otherwise)
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// What to do with a scheduled, retry or dead set.
#[derive(Debug, Clone, Subcommand)]
pub enum SetAction {
    /// One page of jobs (the default); --search filters by any text in the job
    List(PageArgs),
    /// One job in full, with its error and backtrace
    Show {
        /// Its jid
        jid: String,
    },
    /// Put one job back on its queue now
    Retry {
        /// Its jid
        jid: String,
    },
    /// Delete one job
    Delete {
        /// Its jid
        jid: String,
    },
    /// Move one job to the dead set
    Kill {
        /// Its jid
        jid: String,
    },
    /// Put every job back on its queue now (asks first; --yes for scripts)
    RetryAll(Confirm),
    /// Delete every job (asks first; --yes for scripts)
    Clear(Confirm),
}

/// Paging and searching.
#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Page number, from 1
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub page: u64,
    /// Jobs a page (1-1000)
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub per_page: u64,
    /// Only jobs whose payload contains this text (sets only)
    #[arg(long)]
    pub search: Option<String>,
}

impl Default for PageArgs {
    /// The first page of 25, as the flags default to.
    fn default() -> PageArgs {
        PageArgs {
            page: 1,
            per_page: 25,
            search: None,
        }
    }
}

/// List, pause or unpause queues.
#[derive(Debug, Clone, Subcommand)]
pub enum QueuesAction {
    /// List queues (the default)
    List,
    /// Stop every server taking jobs from a queue (within a second; its jobs stay, and it stays paused across restarts)
    Pause {
        /// The queue name, as `psychiq queues` shows it
        queue: String,
    },
    /// Let servers take jobs from a paused queue again
    Unpause {
        /// The queue name, as `psychiq queues` shows it
        queue: String,
    },
}

/// List iterable jobs in progress or cancel one.
#[derive(Debug, Clone, Subcommand)]
pub enum IterationsAction {
    /// Unfinished iterable jobs with their cursors (the default)
    List,
    /// Stop an iterable job after its running step (or before its first); it is not run again
    Cancel {
        /// The job's jid
        jid: String,
    },
}

/// List unique jobs' locks, show one, or let one go.
#[derive(Debug, Clone, Subcommand)]
pub enum UniqueAction {
    /// The locks held now, with the jid holding each and its time left (the default)
    List {
        /// How many to show
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One lock: the jid holding it and its time left
    Show {
        /// The job's unique_key, as `psychiq unique` and the job's payload show it
        key: String,
    },
    /// Lets a lock go, so the same job can be pushed again at once
    Unlock {
        /// The job's unique_key
        key: String,
    },
}

/// List batches or show one.
#[derive(Debug, Clone, Subcommand)]
pub enum BatchesAction {
    /// The newest batches with their progress (the default)
    List {
        /// How many to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One batch: counts, times, failed jids
    Show {
        /// The batch id, as `psychiq batches` shows it
        bid: String,
    },
}

/// List periodic entries, enqueue one now, pause or resume one.
#[derive(Debug, Clone, Subcommand)]
pub enum PeriodicAction {
    /// List the entries servers declare, with next and last ticks (the default)
    List,
    /// Enqueue an entry's job now (its schedule is unchanged)
    Run {
        /// The entry's name, as `psychiq periodic` shows it
        name: String,
    },
    /// Skip an entry's ticks on every server until it is resumed
    Pause {
        /// The entry's name, as `psychiq periodic` shows it
        name: String,
    },
    /// Let a paused entry tick again, from its next tick
    Resume {
        /// The entry's name, as `psychiq periodic` shows it
        name: String,
    },
}

/// Quiet or stop a process.
#[derive(Debug, Clone, Subcommand)]
pub enum ProcessAction {
    /// List processes (the default)
    List,
    /// Stop taking new jobs (like TSTP)
    Quiet {
        /// Its identity, as `psychiq processes` shows it
        identity: String,
    },
    /// Finish running jobs and exit (like TERM)
    Stop {
        /// Its identity, as `psychiq processes` shows it
        identity: String,
    },
}

/// `psychiq enqueue`.
#[derive(Debug, Clone, Args)]
pub struct EnqueueArgs {
    /// The job class, e.g. Billing::InvoiceJob
    pub class: String,
    /// The arguments as a JSON array, e.g. '[42, "eur"]'
    #[arg(default_value = "[]")]
    pub args: String,
    /// Queue to push to
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// Run after this many seconds
    #[arg(long = "in", value_name = "SECONDS", conflicts_with = "at")]
    pub delay: Option<f64>,
    /// Run at this time: RFC 3339 (2026-11-28T09:00:00Z) or Unix seconds
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Retries: a number, true (25) or false
    #[arg(long)]
    pub retry: Option<String>,
    /// Discard the job unrun if it has not started this many seconds after it is due
    #[arg(long, value_name = "SECONDS")]
    pub expires_in: Option<f64>,
    /// Push nothing while the same job (class, queue, args) is pending, for at most this many seconds; prints the pending job's jid
    #[arg(long, value_name = "SECONDS")]
    pub unique_for: Option<f64>,
    /// CLASS is a Rails ActiveJob class: write Rails' JobWrapper payload, so a Ruby Sidekiq runs CLASS#perform(*ARGS) as perform_later would (objects are hashes with string keys)
    #[arg(long)]
    pub active_job: bool,
}

/// Where Redis is and which namespace to use: taken by the server and every admin command,
/// before or after the command name (`psychiq -n '' stats` or `psychiq stats -n ''`).
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis host
    #[arg(short = 'o', long, default_value = "localhost", global = true)]
    pub host: String,
    /// Redis port
    #[arg(short = 'p', long, default_value_t = 6379, value_parser = clap::value_parser!(u16).range(1..), global = true)]
    pub port: u16,
    /// Redis database number
    #[arg(short = 'd', long, global = true)]
    pub db: Option<u32>,
    /// Redis URL, e.g. redis://user:password@host:6379/0 or rediss:// for TLS (overrides -o/-p/-d)
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true, value_parser = RedisUrl)]
    pub redis_url: Option<RedisConfig>,
    /// Key namespace: none by default, so keys are Sidekiq's bare ones (queue:default) as Sidekiq 7/8 and the original Psychiq write them; -n psychiq reads Psychiq 0.1's keys (psychiq:queue:default)
    #[arg(short = 'n', long, default_value = crate::store::keys::DEFAULT_NAMESPACE, hide_default_value = true, global = true)]
    pub namespace: String,
    /// Key layout: sidekiq (Sidekiq's keys) or cluster (each queue in its own hash slot, for Redis Cluster; implied by a redis+cluster:// URL)
    #[arg(
        long,
        value_name = "LAYOUT",
        env = "PSYCHIQ_LAYOUT",
        hide_env_values = true,
        global = true
    )]
    pub layout: Option<crate::store::keys::Layout>,
    /// After each enqueue and acknowledgement, wait (up to 1 s) until this many replicas have the writes, so a failover loses neither
    #[arg(long, value_name = "N", env = "PSYCHIQ_WAIT_REPLICAS", global = true)]
    pub wait_replicas: Option<u32>,
    /// For rediss://: the CA (PEM) that signed Redis's certificate, instead of the system's
    #[arg(long, value_name = "FILE", env = "PSYCHIQ_TLS_CA", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// For rediss:// with client certificates: this client's certificate (PEM; with --tls-key)
    #[arg(
        long,
        value_name = "FILE",
        env = "PSYCHIQ_TLS_CERT",
        global = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// For rediss:// with client certificates: its private key (PEM; with --tls-cert)
    #[arg(
        long,
        value_name = "FILE",
        env = "PSYCHIQ_TLS_KEY",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<std::path::PathBuf>,
}

/// Reads `--redis-url`: one that cannot be an address stops the command line before
/// anything runs, and the message shows it with its password masked (clap's own message
/// would repeat the value as given).
#[derive(Clone)]
struct RedisUrl;

impl clap::builder::TypedValueParser for RedisUrl {
    type Value = RedisConfig;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<RedisConfig, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{why}\n"))
                .with_cmd(cmd)
        };
        let url = value
            .to_str()
            .ok_or_else(|| refuse("--redis-url is not UTF-8".into()))?;
        RedisConfig::from_url(url).map_err(|e| refuse(format!("--redis-url: {e}")))
    }
}

impl RedisArgs {
    /// Where the jobs are: the Redis these flags name and the namespace.
    pub fn config(&self) -> crate::Config {
        crate::Config::new(self.redis_config()).namespace(self.namespace.clone())
    }

    /// The Redis connection settings: `--redis-url` if given, else host, port and db.
    pub fn redis_config(&self) -> RedisConfig {
        let mut config = match &self.redis_url {
            Some(url) => url.clone(),
            None => RedisConfig::from_parts(&self.host, self.port, self.db),
        };
        if let Some(ca) = &self.tls_ca {
            config = config.tls_ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.tls_client_cert(cert, key);
        }
        if let Some(replicas) = self.wait_replicas {
            config = config.wait_for_replicas(replicas, std::time::Duration::from_secs(1));
        }
        if let Some(layout) = self.layout {
            config = config.layout(layout);
        }
        config
    }
}

/// `psychiq web` flags.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// Address to listen on; anything but loopback exposes the dashboard to the network
    #[arg(long, default_value = "127.0.0.1:7433")]
    pub bind: SocketAddr,
    /// Require HTTP basic authentication with these credentials (USER:PASSWORD)
    #[arg(
        long,
        env = "PSYCHIQ_WEB_BASIC_AUTH",
        value_name = "USER:PASSWORD",
        hide_env_values = true
    )]
    pub basic_auth: Option<String>,
    /// Require this bearer token (`Authorization: Bearer TOKEN`), e.g. for a metrics scraper
    #[arg(
        long,
        env = "PSYCHIQ_WEB_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Another host name the dashboard may be reached by without authentication (repeatable;
    /// loopback names and the --bind address are always allowed)
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
    /// Mark the dashboard's cookie Secure, for a dashboard served over HTTPS by a TLS proxy
    #[arg(long)]
    pub secure_cookie: bool,
}

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
        AdminCommand::Job { jid } => locate(api, out, &jid).await,
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

async fn stats(api: &Api, out: &Out, days: u32) -> Outcome {
    let stats = api.stats().await?;
    let history = api.history(days, SystemTime::now()).await?;
    if out.json {
        println!("{}", json!({"stats": stats, "history": history}));
        return Ok(());
    }
    let rows = vec![
        vec!["processed".into(), stats.processed.to_string()],
        vec!["failed".into(), stats.failed.to_string()],
        vec!["discarded".into(), stats.discarded.to_string()],
        vec!["enqueued".into(), stats.enqueued.to_string()],
        vec!["scheduled".into(), stats.scheduled.to_string()],
        vec!["retries".into(), stats.retries.to_string()],
        vec!["dead".into(), stats.dead.to_string()],
        vec!["processes".into(), stats.processes.to_string()],
        vec!["busy".into(), stats.busy.to_string()],
        vec![
            "default queue latency".into(),
            span_text(stats.default_queue_latency),
        ],
    ];
    println!("{}", out.source);
    print!("{}", table(&["total", "value"], &rows));
    println!();
    let rows = history
        .iter()
        .map(|d| {
            vec![
                d.date.clone(),
                d.processed.to_string(),
                d.failed.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    print!("{}", table(&["date (UTC)", "processed", "failed"], &rows));
    Ok(())
}

async fn queues(api: &Api, out: &Out, action: Option<QueuesAction>) -> Outcome {
    match action.unwrap_or(QueuesAction::List) {
        QueuesAction::List => {
            let queues = api.queues().await?;
            let rows = queues
                .iter()
                .map(|q| {
                    let state = if q.paused { "paused" } else { "running" };
                    vec![
                        q.name.clone(),
                        q.size.to_string(),
                        span_text(q.latency),
                        state.into(),
                    ]
                })
                .collect();
            out.print(&json!(queues), &["queue", "size", "latency", "state"], rows);
        }
        QueuesAction::Pause { queue } => {
            let newly = api.pause_queue(&queue).await?;
            let note = if newly {
                ""
            } else {
                " (it was paused already)"
            };
            out.done(
                json!({"paused": queue, "changed": newly}),
                format!(
                    "paused {queue}{note}: servers take none of its jobs from their next fetch (within a second); `psychiq queues unpause {queue}` resumes it"
                ),
            );
        }
        QueuesAction::Unpause { queue } => {
            let changed = api.unpause_queue(&queue).await?;
            let note = if changed { "" } else { " (it was not paused)" };
            out.done(
                json!({"unpaused": queue, "changed": changed}),
                format!("unpaused {queue}{note}: servers take its jobs again"),
            );
        }
    }
    Ok(())
}

async fn iterations(api: &Api, out: &Out, action: Option<IterationsAction>) -> Outcome {
    match action.unwrap_or(IterationsAction::List) {
        IterationsAction::List => {
            let iterations = api.iterations(100).await?;
            let now = crate::clock::now_secs();
            let rows = iterations
                .iter()
                .map(|i| {
                    vec![
                        i.jid.clone(),
                        i.unreadable
                            .clone()
                            .or_else(|| i.cursor.clone())
                            .unwrap_or("-".into()),
                        format!("{} ago", span_text(now - i.updated_at)),
                        if i.cancelled {
                            "cancelled"
                        } else {
                            "running or waiting"
                        }
                        .into(),
                    ]
                })
                .collect();
            out.print(
                &json!(iterations),
                &["jid", "cursor", "last step", "state"],
                rows,
            );
        }
        IterationsAction::Cancel { jid } => {
            let already = api.cancel_iteration(&jid).await?;
            let note = if already {
                " (it was cancelled already)"
            } else {
                ""
            };
            out.done(
                json!({"cancelled": jid, "changed": !already}),
                format!(
                    "cancelled {jid}{note}: it ends after its running step, or before its first"
                ),
            );
        }
    }
    Ok(())
}

async fn unique(api: &Api, out: &Out, action: Option<UniqueAction>) -> Outcome {
    let row = |l: &crate::extensions::UniqueLock| {
        vec![
            l.key.clone(),
            l.jid.clone(),
            span_text(l.ttl_secs.max(0) as f64),
        ]
    };
    match action.unwrap_or(UniqueAction::List { limit: 100 }) {
        UniqueAction::List { limit } => {
            let locks = api.unique_locks(limit).await?;
            let rows = locks.iter().map(row).collect();
            out.print(&json!(locks), &["key", "jid", "lets go in"], rows);
        }
        UniqueAction::Show { key } => {
            let Some(lock) = api.unique_lock(&key).await? else {
                return Err(Failure::NotFound(format!(
                    "no lock for unique_key {key:?}: the job may be pushed; `psychiq unique` lists the locks"
                )));
            };
            out.print(
                &json!(lock),
                &["key", "jid", "lets go in"],
                vec![row(&lock)],
            );
        }
        UniqueAction::Unlock { key } => {
            if !api.unlock_unique(&key).await? {
                return Err(Failure::NotFound(format!(
                    "no lock for unique_key {key:?} (it may have gone already); `psychiq unique` lists the locks"
                )));
            }
            out.done(
                json!({"key": key, "unlocked": true}),
                format!("Unlocked {key}: the same job can be pushed again"),
            );
        }
    }
    Ok(())
}

async fn batches(api: &Api, out: &Out, action: Option<BatchesAction>) -> Outcome {
    let state = |b: &crate::batch::BatchStatus| {
        if b.success_at.is_some() {
            "succeeded"
        } else if b.death_at.is_some() {
            "has dead jobs"
        } else if b.complete_at.is_some() {
            "complete"
        } else {
            "running"
        }
    };
    match action.unwrap_or(BatchesAction::List { limit: 50 }) {
        BatchesAction::List { limit } => {
            let batches = api.batches(limit).await?;
            let rows = batches
                .iter()
                .map(|b| {
                    vec![
                        b.bid.clone(),
                        b.description.clone(),
                        b.total.to_string(),
                        b.pending.to_string(),
                        b.failures.to_string(),
                        b.dead.to_string(),
                        state(b).into(),
                    ]
                })
                .collect();
            out.print(
                &json!(batches),
                &[
                    "bid",
                    "description",
                    "total",
                    "pending",
                    "failures",
                    "dead",
                    "state",
                ],
                rows,
            );
        }
        BatchesAction::Show { bid } => {
            let Some(b) = api.batch(&bid).await? else {
                return Err(Failure::NotFound(format!(
                    "no batch {bid:?} (it may have expired); `psychiq batches` lists them"
                )));
            };
            let time = |t: Option<f64>| t.map_or("-".to_string(), utc_text);
            let rows = vec![
                vec!["bid".into(), b.bid.clone()],
                vec!["description".into(), b.description.clone()],
                vec!["parent".into(), b.parent.clone().unwrap_or("-".into())],
                vec!["state".into(), state(&b).into()],
                vec!["total".into(), b.total.to_string()],
                vec!["pending".into(), b.pending.to_string()],
                vec!["failures".into(), b.failures.to_string()],
                vec!["dead".into(), b.dead.to_string()],
                vec![
                    "child batches pending".into(),
                    b.children_pending.to_string(),
                ],
                vec!["created at".into(), time(Some(b.created_at))],
                vec!["complete at".into(), time(b.complete_at)],
                vec!["success at".into(), time(b.success_at)],
                vec!["death at".into(), time(b.death_at)],
                vec!["failed jids".into(), b.failed_jids.join(" ")],
            ];
            out.print(&json!(b), &["field", "value"], rows);
        }
    }
    Ok(())
}

async fn limits(api: &Api, out: &Out) -> Outcome {
    let limits = api.limits().await?;
    let rows = limits
        .iter()
        .map(|l| {
            let limiter = &l.limiter;
            let interval = limiter.interval_text();
            vec![
                limiter.name().to_string(),
                serde_json::to_value(limiter.kind())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                limiter.size().to_string(),
                interval,
                l.unreadable
                    .clone()
                    .unwrap_or_else(|| format!("{}/{}", l.in_use, limiter.size())),
                l.over.to_string(),
            ]
        })
        .collect();
    out.print(
        &json!(limits),
        &["name", "kind", "size", "interval", "in use", "over"],
        rows,
    );
    Ok(())
}

async fn periodic(api: &Api, out: &Out, action: Option<PeriodicAction>) -> Outcome {
    use crate::extensions::cron::format_in;
    match action.unwrap_or(PeriodicAction::List) {
        PeriodicAction::List => {
            let entries = api.periodic_jobs().await?;
            let rows = entries
                .iter()
                .map(|e| {
                    let state = match (e.paused, e.is_live()) {
                        (true, _) => "paused",
                        (false, true) => "ticking",
                        (false, false) => "no server",
                    };
                    let at = |t: Option<i64>| t.map_or("-".to_string(), |t| format_in(t, &e.tz));
                    vec![
                        e.name.clone(),
                        e.cron.clone(),
                        e.tz.clone(),
                        e.class.clone(),
                        e.queue.clone(),
                        at(e.next_at),
                        at(e.last_at),
                        state.into(),
                    ]
                })
                .collect();
            out.print(
                &json!(entries),
                &[
                    "name", "cron", "tz", "class", "queue", "next", "last", "state",
                ],
                rows,
            );
        }
        PeriodicAction::Run { name } => {
            let jid = api.run_periodic(&name).await?;
            out.done(
                json!({"enqueued": name, "jid": jid}),
                format!("enqueued {name} now as {jid}; its schedule is unchanged"),
            );
        }
        PeriodicAction::Pause { name } => {
            let changed = api.pause_periodic(&name).await?;
            let note = if changed {
                ""
            } else {
                " (it was paused already)"
            };
            out.done(
                json!({"paused": name, "changed": changed}),
                format!(
                    "paused {name}{note}: no server enqueues its ticks; `psychiq periodic resume {name}` resumes it"
                ),
            );
        }
        PeriodicAction::Resume { name } => {
            let changed = api.resume_periodic(&name).await?;
            let note = if changed { "" } else { " (it was not paused)" };
            out.done(
                json!({"resumed": name, "changed": changed}),
                format!("resumed {name}{note}: it runs again from its next tick"),
            );
        }
    }
    Ok(())
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
                j.args().to_string(),
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

/// `psychiq job JID`: where the job is, then the job in full.
async fn locate(api: &Api, out: &Out, jid: &str) -> Outcome {
    use crate::api::Whereabouts;
    let (state, job) = match api.locate(jid).await? {
        None => {
            return Err(Failure::NotFound(format!(
                "no job {jid:?} is running, waiting in a queue, or in the scheduled, retry or dead set; a job that succeeded, was discarded or was deleted leaves nothing behind"
            )));
        }
        Some(Whereabouts::Running(work)) => {
            let place = format!(
                "running on {} (slot {}) from queue {} since {}",
                work.process,
                work.thread,
                work.queue,
                utc_text(work.run_at)
            );
            out.done(
                json!({"state": "running", "process": work.process, "slot": work.thread, "queue": work.queue, "run_at": work.run_at, "job": work.payload}),
                format!("{jid}: {place}\n{}", serde_json::to_string_pretty(&work.payload).unwrap_or_default()),
            );
            return Ok(());
        }
        Some(Whereabouts::Enqueued(job)) => ("enqueued", job),
        Some(Whereabouts::Scheduled(job)) => ("scheduled", job),
        Some(Whereabouts::Retrying(job)) => ("retrying", job),
        Some(Whereabouts::Dead(job)) => ("dead", job),
    };
    if out.json {
        println!(
            "{}",
            json!({"state": state, "queue": job.queue(), "at": job.score(), "job": job_json(&job)})
        );
        return Ok(());
    }
    match job.score() {
        Some(at) => println!(
            "{jid}: {state} (queue {}), at {}",
            job.queue(),
            utc_text(at)
        ),
        None => println!("{jid}: {state} in queue {}", job.queue()),
    }
    show(out, &job);
    Ok(())
}

/// The failure of a command naming a queue that does not exist.
fn no_queue(queue: &str) -> Failure {
    Failure::NotFound(format!(
        "there is no queue {queue:?}; `psychiq queues` lists them"
    ))
}

async fn jobs(api: &Api, out: &Out, queue: &str, action: Option<JobsAction>) -> Outcome {
    match action.unwrap_or_else(|| JobsAction::List(PageArgs::default())) {
        JobsAction::List(page) => {
            let start = (page.page - 1) * page.per_page;
            let jobs = api.queue_jobs(queue, start, page.per_page).await?;
            if jobs.is_empty() && !api.queue_exists(queue).await? {
                return Err(no_queue(queue));
            }
            out.print_json_text(
                &jobs_json(&jobs),
                &["jid", "class", "queue", "enqueued at (UTC)", "args"],
                job_rows(&jobs, None),
            );
        }
        JobsAction::Show { jid } => {
            let job = api
                .find_in_queue(queue, &jid)
                .await?
                .ok_or_else(|| not_found(&format!("jobs {queue}"), &jid))?;
            show(out, &job);
        }
        JobsAction::Delete { jid } => {
            let job = api
                .queue(queue)
                .find(&jid)
                .await?
                .ok_or_else(|| not_found(&format!("jobs {queue}"), &jid))?;
            let deleted = job.delete().await?;
            out.done(
                json!({"deleted": deleted}),
                if deleted {
                    format!("deleted {jid} from queue {queue}")
                } else {
                    format!("{jid} left queue {queue} before it could be deleted")
                },
            );
        }
        JobsAction::Clear(confirm) => {
            if !api.queue_exists(queue).await? {
                return Err(no_queue(queue));
            }
            let size = api.queue_size(queue).await?;
            confirm.ask(&format!("delete queue {queue} and its {size} jobs"))?;
            let count = api.clear_queue(queue).await?;
            out.done(
                json!({"deleted": count}),
                format!("cleared queue {queue}: {count} jobs deleted"),
            );
        }
    }
    Ok(())
}

async fn set(api: &Api, out: &Out, kind: SetKind, action: Option<SetAction>) -> Outcome {
    let what = kind.label();
    let set = api.set(kind);
    let find =
        |jid: String| async move { set.find(&jid).await?.ok_or_else(|| not_found(what, &jid)) };
    match action.unwrap_or_else(|| SetAction::List(PageArgs::default())) {
        SetAction::List(page) => {
            let jobs = match &page.search {
                Some(text) => api.set_search(kind, text, page.per_page as usize).await?,
                None => {
                    let start = (page.page - 1) * page.per_page;
                    api.set_page(kind, start, page.per_page).await?
                }
            };
            let value = jobs_json(&jobs);
            let when = match kind {
                SetKind::Scheduled => "runs at (UTC)",
                SetKind::Retry => "next retry (UTC)",
                SetKind::Dead => "died at (UTC)",
            };
            let mut headers = vec!["jid", "class", "queue", when, "args"];
            if kind != SetKind::Scheduled {
                headers.push("error");
            }
            out.print_json_text(&value, &headers, job_rows(&jobs, Some(kind)));
        }
        SetAction::Show { jid } => show(out, &find(jid).await?.into_record()),
        SetAction::Retry { jid } => {
            let job = find(jid.clone()).await?;
            let moved = job.retry_now().await?;
            out.done(
                json!({"retried": moved}),
                if moved {
                    format!("{jid} is back on queue {}", job.queue())
                } else {
                    format!("{jid} left {what} before it could be retried")
                },
            );
        }
        SetAction::Delete { jid } => {
            let job = find(jid.clone()).await?;
            let deleted = job.delete().await?;
            out.done(
                json!({"deleted": deleted}),
                if deleted {
                    format!("deleted {jid} from {what}")
                } else {
                    format!("{jid} left {what} before it could be deleted")
                },
            );
        }
        SetAction::Kill { jid } => {
            if kind == SetKind::Dead {
                return Err(Failure::BadInput(format!(
                    "{jid} is already dead; use `psychiq dead retry {jid}` or `psychiq dead delete {jid}`"
                )));
            }
            let job = find(jid.clone()).await?;
            let killed = job.kill().await?;
            out.done(
                json!({"killed": killed}),
                if killed {
                    format!("{jid} moved to the dead set")
                } else {
                    format!("{jid} left {what} before it could be killed")
                },
            );
        }
        SetAction::RetryAll(confirm) => {
            let size = api.set_size(kind).await?;
            confirm.ask(&format!(
                "put all {size} jobs of {what} back on their queues"
            ))?;
            let count = api.retry_all(kind).await?;
            out.done(
                json!({"retried": count}),
                format!("{count} jobs from {what} are back on their queues"),
            );
        }
        SetAction::Clear(confirm) => {
            let size = api.set_size(kind).await?;
            confirm.ask(&format!("delete all {size} jobs of {what}"))?;
            let count = api.clear(kind).await?;
            out.done(
                json!({"deleted": count}),
                format!("cleared {what}: {count} jobs deleted"),
            );
        }
    }
    Ok(())
}

async fn processes(api: &Api, out: &Out, action: Option<ProcessAction>) -> Outcome {
    let known = |identity: String| async move {
        let all = api.processes().await?;
        if all.iter().any(|p| p.identity == identity) {
            Ok(identity)
        } else {
            Err(Failure::BadInput(format!(
                "no live process {identity:?}; `psychiq processes` lists them"
            )))
        }
    };
    match action.unwrap_or(ProcessAction::List) {
        ProcessAction::List => {
            let list = api.processes().await?;
            let now = crate::clock::now_secs();
            let rows = list
                .iter()
                .map(|p| {
                    vec![
                        p.identity.clone(),
                        p.info["tag"].as_str().unwrap_or("").to_string(),
                        p.info["queues"]
                            .as_array()
                            .map(|q| {
                                q.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default(),
                        format!("{}/{}", p.busy, p.info["concurrency"]),
                        if p.quiet { "quiet" } else { "running" }.into(),
                        format!("{:.1} MB", p.rss as f64 / 1024.0),
                        format!("{} ago", span_text(now - p.beat)),
                    ]
                })
                .collect();
            out.print(
                &json!(list),
                &[
                    "identity",
                    "tag",
                    "queues",
                    "busy",
                    "state",
                    "rss",
                    "last beat",
                ],
                rows,
            );
        }
        ProcessAction::Quiet { identity } => {
            let identity = known(identity).await?;
            api.quiet(&identity).await?;
            out.done(
                json!({"quiet": identity}),
                format!("asked {identity} to quiet (it obeys within a heartbeat, 5 s)"),
            );
        }
        ProcessAction::Stop { identity } => {
            let identity = known(identity).await?;
            api.stop(&identity).await?;
            out.done(
                json!({"stop": identity}),
                format!("asked {identity} to stop (it obeys within a heartbeat, 5 s)"),
            );
        }
    }
    Ok(())
}

/// Reads `--at`: RFC 3339 (`Z` or an offset such as `+05:00`) or Unix seconds.
pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && (0.0..YEAR_10000).contains(&secs))
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    // humantime reads only `Z`: an offset is taken off by hand.
    let split = text
        .len()
        .checked_sub(6)
        .filter(|&i| text.is_char_boundary(i));
    if let Some(i) = split
        && let (local, offset) = text.split_at(i)
        && let [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] = *offset.as_bytes()
        && [h1, h2, m1, m2].iter().all(u8::is_ascii_digit)
    {
        let hours = u64::from((h1 - b'0') * 10 + (h2 - b'0'));
        let minutes = u64::from((m1 - b'0') * 10 + (m2 - b'0'));
        let offset = Duration::from_secs(hours * 3_600 + minutes * 60);
        let local = humantime::parse_rfc3339_weak(&format!("{local}Z")).ok()?;
        return if sign == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        };
    }
    humantime::parse_rfc3339_weak(text).ok()
}

/// The job `psychiq enqueue` describes, or what is wrong with the input.
fn job_to_enqueue(args: &EnqueueArgs) -> std::result::Result<Job, Failure> {
    let values: Value = serde_json::from_str(&args.args).map_err(|e| {
        Failure::BadInput(format!(
            "ARGS must be a JSON array, e.g. '[42, \"eur\"]' (quote it for the shell): {e}"
        ))
    })?;
    if !values.is_array() {
        return Err(Failure::BadInput(format!(
            "ARGS must be a JSON array, e.g. '[{}]', not {}",
            args.args, args.args
        )));
    }
    if args.class.trim().is_empty() {
        return Err(Failure::BadInput("CLASS must not be empty".into()));
    }
    if args.queue.trim().is_empty() {
        return Err(Failure::BadInput("--queue must not be empty".into()));
    }
    let job = if args.active_job {
        Job::active_job(args.class.clone(), values)
    } else {
        Job::new(args.class.clone(), values)
    };
    let mut job = job
        .map_err(|e| Failure::BadInput(e.to_string()))?
        .queue(args.queue.clone());
    if let Some(retry) = &args.retry {
        job = job.retry(match retry.as_str() {
            "true" => Retry::Default,
            "false" => Retry::Off,
            n => Retry::Max(n.parse().map_err(|_| {
                Failure::BadInput(format!("--retry takes a number, true or false, not {n:?}"))
            })?),
        });
    }
    if let Some(secs) = args.delay {
        if !(secs.is_finite() && (0.0..YEAR_10000 / 2.0).contains(&secs)) {
            return Err(Failure::BadInput(format!(
                "--in takes a number of seconds from now (e.g. 60), not {secs}"
            )));
        }
        job = job.delay(Duration::from_secs_f64(secs));
    }
    if let Some(secs) = args.expires_in {
        if !(secs.is_finite() && secs > 0.0 && secs < YEAR_10000 / 2.0) {
            return Err(Failure::BadInput(format!(
                "--expires-in takes a number of seconds after the job is due (e.g. 3600), not {secs}"
            )));
        }
        job = job.expires_in(Duration::from_secs_f64(secs));
    }
    if let Some(secs) = args.unique_for {
        // Ten years: a lock longer than that is a typo, and Redis's EX has a ceiling.
        const MOST: f64 = 10.0 * 365.0 * 86_400.0;
        if !(secs.is_finite() && (1.0..=MOST).contains(&secs)) {
            return Err(Failure::BadInput(format!(
                "--unique-for takes a number of seconds from 1 to {MOST:.0} (ten years), e.g. 600, not {secs}"
            )));
        }
        job = job.unique_for(Duration::from_secs_f64(secs));
    }
    if let Some(at) = &args.at {
        let time = parse_time(at).ok_or_else(|| {
            Failure::BadInput(format!(
                "--at {at:?}: use RFC 3339 (2026-11-28T09:00:00Z) or Unix seconds"
            ))
        })?;
        job = job.at(time);
    }
    Ok(job)
}

async fn enqueue(api: &Api, out: &Out, args: &EnqueueArgs, job: Job) -> Outcome {
    let jid = match api.client().try_push(job).await? {
        Push::Duplicate(jid) => {
            out.done(
                json!({"jid": jid, "class": args.class, "queue": args.queue, "duplicate": true}),
                format!(
                    "not enqueued: the same {} job is locked by jid {jid} (which may have finished; `psychiq unique` shows its lock and `psychiq unique unlock KEY` lets it go)",
                    args.class
                ),
            );
            return Ok(());
        }
        Push::Refused(reason) => return Err(Error::NotPushed { reason }.into()),
        push => push.jid().unwrap_or_default().to_string(),
    };
    let place = if args.delay.is_some() || args.at.is_some() {
        "scheduled".to_string()
    } else {
        format!("queue {}", args.queue)
    };
    out.done(
        json!({"jid": jid, "class": args.class, "queue": args.queue}),
        format!("enqueued {} as {jid} ({place})", args.class),
    );
    Ok(())
}

/// `psychiq web`: serves the dashboard until TERM or Ctrl-C.
pub async fn serve(args: WebArgs, redis: &RedisArgs) -> crate::Result<()> {
    let api = redis.config().api().await?;
    let credentials = match &args.basic_auth {
        None => None,
        Some(pair) => Some(pair.split_once(':').ok_or_else(|| {
            Error::Other("--basic-auth takes USER:PASSWORD (with a colon)".into())
        })?),
    };
    let open = args.basic_auth.is_none() && args.token.is_none();
    if !args.bind.ip().is_loopback() && open {
        tracing::warn!(
            bind = %args.bind,
            "the dashboard is reachable from the network without authentication; pass --basic-auth USER:PASSWORD or --token"
        );
    }
    let mut allowed_hosts = args.allowed_hosts;
    if !args.bind.ip().is_unspecified() {
        allowed_hosts.push(match args.bind.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    }
    let mut config = WebConfig::default().secure_cookie(args.secure_cookie);
    if let Some((user, password)) = credentials {
        config = config.basic_auth(user, password);
    }
    if let Some(token) = &args.token {
        config = config.token(token.clone());
    }
    for host in allowed_hosts {
        config = config.allow_host(host);
    }
    let app = router(api, config);
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| {
            Error::Other(format!(
                "cannot listen on {}: {e}; pick another with --bind ADDR:PORT",
                args.bind
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Other(e.to_string()))?;
    tracing::info!(namespace = %redis.namespace, "Psychiq dashboard on http://{address}/");
    println!("Psychiq dashboard on http://{address}/ (Ctrl-C stops it)");
    crate::web::serve(listener, app, crate::server::signals::terminate()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
