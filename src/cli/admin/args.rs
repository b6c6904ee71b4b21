//! The admin commands' flags and subcommands, as clap reads them.

use std::net::SocketAddr;

use clap::{Args, Subcommand};

use crate::store::config::RedisConfig;

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
    /// Reliable push's journals in a directory: what waits there, and pushing it now
    Spool {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: SpoolAction,
    },
    /// A queue's groups (Job::group): backlog, running, limit, paused; pause, resume, limit one
    Groups {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: GroupsAction,
    },
    /// Workflows: list them, show one with its steps, or cancel one
    Workflows {
        #[command(subcommand)]
        #[allow(missing_docs)]
        action: Option<WorkflowsAction>,
    },
    /// Where one job is now and what happened to it: a tracked job's status (state, times,
    /// progress, error, result), else where it is (running, in a queue, scheduled,
    /// retrying or dead), shown in full
    Job {
        /// Its jid
        jid: String,
    },
    /// Cancel a job: a waiting one is removed, a running one stopped within a second; never
    /// retried
    Cancel {
        /// Its jid
        jid: String,
    },
    /// The stream of job events (servers write it with --events): the last ones, and with
    /// --follow the new ones as they come
    Events {
        /// Keep printing new events until interrupted
        #[arg(long, short)]
        follow: bool,
        /// Only events of this class
        #[arg(long)]
        class: Option<String>,
        /// How many of the latest events to print first
        #[arg(long, default_value_t = 20)]
        last: u64,
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

/// What to do with workflows.
#[derive(Debug, Clone, Subcommand)]
pub enum WorkflowsAction {
    /// The newest workflows with their counts (the default)
    List {
        /// How many to show
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One workflow: its steps with their states, parents and results
    Show {
        /// The workflow id, as `psychiq workflows` shows it
        wid: String,
    },
    /// Cancel a workflow: nothing new starts, waiting steps are skipped, running ones cancelled
    Cancel {
        /// The workflow id
        wid: String,
    },
    /// Retry a workflow that ended: its dead and skipped steps run again (under new jids)
    Retry {
        /// The workflow id
        wid: String,
    },
    /// Push a workflow written in TOML (a name, `on_failure`, and `[[step]]` tables)
    #[cfg(feature = "command")]
    Push {
        /// The TOML file
        file: std::path::PathBuf,
    },
}

/// Reliable push's journals (see `Client::reliable_push`).
#[derive(Debug, Clone, Subcommand)]
pub enum SpoolAction {
    /// Each journal in DIR with the jobs it holds, and whether a running process holds it
    Status {
        /// The directory the app names in ReliablePush::journal
        dir: std::path::PathBuf,
    },
    /// Push the jobs of every journal in DIR whose process stopped (in order, each once)
    Push {
        /// The directory the app names in ReliablePush::journal
        dir: std::path::PathBuf,
        /// Seconds to wait for Redis before giving up (the jobs stay in the journal)
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

/// List a queue's groups, or pause, resume, limit or rate-limit one.
#[derive(Debug, Clone, Subcommand)]
pub enum GroupsAction {
    /// The groups whose jobs arrived last, with backlog, running jobs, limit and state
    List {
        /// The queue
        queue: String,
        /// How many to show
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// No server starts another of the group's jobs until it is resumed
    Pause {
        /// The queue
        queue: String,
        /// The group's key
        group: String,
    },
    /// Its jobs start again, in its next turn
    Resume {
        /// The queue
        queue: String,
        /// The group's key
        group: String,
    },
    /// How many of the group's jobs may run at once
    Limit {
        /// The queue
        queue: String,
        /// The group's key
        group: String,
        /// At least 1 (1: one at a time, in order)
        jobs: u64,
    },
    /// At most COUNT of the group's jobs start in any window of SECONDS ('none' lifts it)
    Rate {
        /// The queue
        queue: String,
        /// The group's key
        group: String,
        /// COUNT/SECONDS (e.g. 100/60), or none
        rate: String,
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
