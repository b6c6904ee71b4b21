//! Command-line flags for a server, offered to any binary that embeds Psychiq.
//!
//! The flags and defaults are the original's (`-o/--host localhost`, `-p/--port 6379`,
//! `-d/--db`, `-q/--queue QUEUE[,WEIGHT]`, `-c/--concurrency 25`, `-n/--namespace` with
//! none by default, so Sidekiq's bare keys, `-v/--verbose`), plus `--redis-url` (or `REDIS_URL`) for passwords and TLS and
//! `-t/--timeout` for shutdown. A wrong flag or value prints one clear message and exits
//! with status 2.
//!
//! ```
//! use clap::Parser;
//! use psychiq::cli::ServerArgs;
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     server: ServerArgs,
//! }
//! let args = Args::parse_from(["app", "-c", "10", "-q", "critical,3", "-q", "default,1", "-n", ""]);
//! assert_eq!(args.server.concurrency, 10);
//! assert_eq!(args.server.redis.namespace, "");
//! assert_eq!(args.server.queues[0].name(), "critical");
//! // The settings a Server takes, validated as the builder methods validate them.
//! let config: psychiq::ServerConfig = args.server.server_config();
//! # let _ = config;
//! ```

pub(crate) mod admin;
pub(crate) mod log_format;
pub(crate) mod log_stream;
#[cfg(feature = "demo")]
pub(crate) mod tour;

use std::time::Duration;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, Parser};

use crate::server::fetch::QueueSpec;
use crate::server::registry::Registry;
use crate::server::{Server, ServerConfig};
use crate::store::config::RedisConfig;

pub use crate::cli::admin::RedisArgs;

/// The server's flags.
#[derive(Debug, Clone, Args)]
#[non_exhaustive]
pub struct ServerArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub redis: RedisArgs,
    /// Queue to process, with an optional weight; repeat for more (default: "default")
    #[arg(short = 'q', long = "queue", value_name = "QUEUE[,WEIGHT]", value_parser = parse_queue)]
    pub queues: Vec<QueueSpec>,
    /// Number of jobs run at once
    #[arg(short = 'c', long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Fetched jobs that may wait for a worker beyond those running (default: twice the concurrency, grown for short jobs on one queue to cover fetch round trips; 0: none)
    #[arg(long, value_name = "JOBS", value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub prefetch: Option<u32>,
    /// A pool of its own beside -q and -c (Sidekiq 7's capsules); repeat for more: NAME:QUEUE[=WEIGHT],...:CONCURRENCY
    #[arg(long = "capsule", value_name = "NAME:QUEUES:CONCURRENCY", value_parser = parse_capsule)]
    pub capsules: Vec<crate::Capsule>,
    /// Seconds running jobs get to finish on shutdown before they are pushed back (Sidekiq's -t; --timeout also works)
    #[arg(
        short = 't',
        long,
        alias = "timeout",
        value_name = "SECONDS",
        default_value_t = 25
    )]
    pub shutdown_timeout: u64,
    /// Fetch mode: reliable (crash-safe, the default) or basic (Sidekiq OSS's BRPOP)
    #[arg(long, value_enum, default_value_t = Fetch::Reliable)]
    pub fetch: Fetch,
    /// Cancel jobs running longer than this many seconds (off unless set; a worker's own timeout wins)
    #[arg(long, value_name = "SECONDS", value_parser = parse_secs)]
    pub job_timeout: Option<Duration>,
    /// Accepted for old scripts; does nothing (every server obeys expires_at now)
    #[arg(long, hide = true)]
    pub expiring_jobs: bool,
    /// Accepted for old scripts; does nothing (every server lets unique locks go now)
    #[arg(long, hide = true)]
    pub unique_jobs: bool,
    /// Track every job's status and result for this many seconds, whatever it asks (jobs that ask keep their own; `psychiq job JID`)
    #[arg(long, value_name = "SECONDS", value_parser = parse_secs)]
    pub track_all: Option<Duration>,
    /// Write the stream of job events (`psychiq events --follow`), kept to about this many entries
    #[arg(long, value_name = "CAP", num_args = 0..=1, default_missing_value = "10000", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub events: Option<u64>,
    /// Seconds a cancelled running job may go on before its task is dropped (a command worker's group: TERM at the cancel, KILL then)
    #[arg(long, value_name = "SECONDS", value_parser = parse_secs, default_value = "10")]
    pub cancel_grace: Duration,
    /// Do not count batch jobs' outcomes (only for a fleet that runs no batch jobs: their callbacks would never fire)
    #[arg(long)]
    pub no_batches: bool,
    /// Tag shown with this process in dashboards
    #[arg(short = 'g', long, default_value = "")]
    pub tag: String,
    /// Print debug logs
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Log format: text for people, json (one object a line) for log shippers
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--fetch`: how jobs are taken from their queues ([`crate::FetchMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum Fetch {
    /// Crash-safe: a job stays in this process's in-progress hash until it has finished.
    Reliable,
    /// Sidekiq OSS's `BRPOP`: a job in flight is lost if the process dies.
    Basic,
}

impl From<Fetch> for crate::FetchMode {
    fn from(fetch: Fetch) -> Self {
        match fetch {
            Fetch::Reliable => crate::FetchMode::Reliable,
            Fetch::Basic => crate::FetchMode::Basic,
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

fn parse_capsule(text: &str) -> Result<crate::Capsule, String> {
    crate::Capsule::parse(text).map_err(|e| e.to_string())
}

fn parse_queue(spec: &str) -> Result<QueueSpec, String> {
    QueueSpec::parse(spec).map_err(|e| e.to_string())
}

impl ServerArgs {
    /// Where Redis is: the URL if given, else host, port and db.
    pub fn redis_config(&self) -> RedisConfig {
        self.redis.redis_config()
    }

    /// The server settings these flags describe.
    pub fn server_config(&self) -> ServerConfig {
        let mut config = self
            .redis
            .config()
            .server()
            .concurrency(self.concurrency as usize)
            .shutdown_timeout(Duration::from_secs(self.shutdown_timeout))
            .tag(self.tag.clone())
            .fetch(self.fetch.into())
            .batches(!self.no_batches)
            .cancel_grace(self.cancel_grace);
        if let Some(retention) = self.track_all {
            config = config.track_all(retention);
        }
        if let Some(cap) = self.events {
            config = config.events(cap as usize);
        }
        for queue in &self.queues {
            config = config.queue_spec(queue.clone());
        }
        for capsule in &self.capsules {
            config = config.capsule(capsule.clone());
        }
        if let Some(timeout) = self.job_timeout {
            config = config.job_timeout(timeout);
        }
        if let Some(prefetch) = self.prefetch {
            config = config.prefetch(prefetch as usize);
        }
        config
    }

    /// The tour prints its own summary; per-job lines would drown it, so only warnings
    /// show unless `-v` or `RUST_LOG` asks for more.
    #[cfg(feature = "demo")]
    fn init_tour_logging(&self) {
        if self.verbose || std::env::var_os("RUST_LOG").is_some() {
            return self.init_logging();
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(crate::cli::log_stream::LogStream { json: false }.start())
            .log_internal_errors(false)
            .try_init();
    }

    /// Logs to stderr at info (debug with `-v`; `RUST_LOG` overrides), in colour only when
    /// stderr is a terminal.
    pub fn init_logging(&self) {
        let default = if self.verbose { "debug" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        // Colours only for a terminal: a log file or a shipper gets plain text.
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
        // A line that cannot be written is dropped and counted, never a stop.
        let json = matches!(self.log_format, LogFormat::Json);
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour)
            .with_writer(crate::cli::log_stream::LogStream { json }.start())
            .log_internal_errors(false);
        // Plain text and JSON (a file, a pipe, a shipper): Psychiq writes its per-job lines
        // itself and, in text, adds a job's fields to its lines without a span per job
        // (`log_format.rs`). A terminal keeps tracing-subscriber's colours as they are.
        let installed = match self.log_format {
            LogFormat::Text if colour => builder.try_init(),
            LogFormat::Text => builder
                .event_format(crate::cli::log_format::TextFormat::new())
                .try_init(),
            LogFormat::Json => builder.json().flatten_event(true).try_init(),
        };
        if installed.is_ok() && !(colour && matches!(self.log_format, LogFormat::Text)) {
            crate::server::job_log::install(crate::cli::log_format::FastJobLines { json });
        }
    }
}

/// The whole command line of a server binary: the server flags plus the systems to load.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Runs Psychiq job servers: Sidekiq-compatible background jobs on Redis.",
    after_help = "SYSTEM is a named worker set the binary registered, or, where the binary accepts them, \
a TOML file of command workers. Without -s the binary's default systems are loaded (the psychiq \
binary has none: name one).\n\
Signals: TERM/INT/HUP stop gracefully, TSTP quiets (no new jobs), TTIN logs the running jobs."
)]
pub(crate) struct CliArgs {
    /// An admin command; without one, a server runs.
    #[command(subcommand)]
    pub command: Option<crate::cli::admin::AdminCommand>,
    /// Admin commands: print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    /// Worker set to load; repeat for more (default: the binary's default systems)
    #[arg(short = 's', long = "system", value_name = "SYSTEM")]
    pub systems: Vec<String>,
}

type Loader = Box<dyn Fn(&str) -> Option<Result<Registry, String>>>;

/// A server binary in a few lines: register named worker sets ("systems"), then `run()`.
///
/// ```no_run
/// use psychiq::cli::Cli;
/// fn main() -> std::process::ExitCode {
///     Cli::new("billing-worker")
///         .default_system("billing", psychiq::demo::registry()) // served without -s
///         .system("reports", psychiq::Registry::new())             // only with -s reports
///         .run()
/// }
/// ```
pub struct Cli {
    name: String,
    systems: BTreeMap<String, Registry>,
    /// The systems served when no `-s` is given.
    defaults: Vec<String>,
    loader: Option<Loader>,
}

impl Cli {
    /// A CLI for the binary called `name` (used in the help text).
    pub fn new(name: impl Into<String>) -> Cli {
        Cli {
            name: name.into(),
            systems: BTreeMap::new(),
            defaults: Vec::new(),
            loader: None,
        }
    }

    /// Registers a named worker set, served with `-s NAME`.
    pub fn system(mut self, name: impl Into<String>, registry: Registry) -> Cli {
        self.systems.insert(name.into(), registry);
        self
    }

    /// Registers a named worker set that is also served when no `-s` is given.
    pub fn default_system(mut self, name: impl Into<String>, registry: Registry) -> Cli {
        let name = name.into();
        self.defaults.push(name.clone());
        self.system(name, registry)
    }

    /// Resolves `-s` values that are not registered names (e.g. files); `None` means
    /// "not mine", which is reported as an unknown system.
    pub fn loader(
        mut self,
        loader: impl Fn(&str) -> Option<Result<Registry, String>> + 'static,
    ) -> Cli {
        self.loader = Some(Box::new(loader));
        self
    }

    /// Parses the process's arguments and runs the server until it is stopped.
    ///
    /// Exit status: 0 after a graceful stop, 1 when Redis cannot be reached, 2 for a wrong
    /// flag, value or system.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// As [`Cli::run`], with the arguments given.
    pub fn run_from(self, args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
        let code = self.run_parsed(args);
        // Log lines still in the buffer go out before the process ends.
        crate::cli::log_stream::flush(std::time::Duration::from_secs(5));
        code
    }

    fn run_parsed(self, args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
        let command = <CliArgs as clap::CommandFactory>::command().bin_name(self.name.clone());
        let matches = match command.try_get_matches_from(args) {
            Ok(matches) => matches,
            Err(e) => e.exit(),
        };
        let args = match <CliArgs as clap::FromArgMatches>::from_arg_matches(&matches) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        if let Some(command) = args.command {
            if let Some(flag) = server_only_flag(&matches) {
                eprintln!(
                    "error: {flag} applies to the server only; drop it, or run the server without a command"
                );
                return ExitCode::from(2);
            }
            #[cfg(feature = "demo")]
            if matches!(command, crate::cli::admin::AdminCommand::Tour) {
                args.server.init_tour_logging();
                return crate::cli::tour::run(&args.server);
            }
            if matches!(command, crate::cli::admin::AdminCommand::Web(_)) {
                args.server.init_logging();
            } else {
                // A reader that goes away (`psychiq stats | head -1`) ends the command as
                // it ends `ls` or `cat`, not as a panic on the broken pipe.
                #[cfg(unix)]
                // SAFETY: restores the default action of one signal before any thread starts.
                unsafe {
                    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                }
            }
            return match runtime() {
                Ok(runtime) => runtime.block_on(crate::cli::admin::run(
                    command,
                    &args.server.redis,
                    args.json,
                )),
                Err(code) => code,
            };
        }
        let registry = match self.registry_for(&args.systems) {
            Ok(registry) => registry,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        };
        args.server.init_logging();
        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(code) => return code,
        };
        tracing::info!(classes = ?registry.class_names(), "workers loaded");
        let mut config = args.server.server_config();
        // Sealed arguments open with the keys in PSYCHIQ_ENCRYPTION_KEYS (ids only logged).
        match crate::encryption::Keyring::from_env() {
            Ok(Some(keys)) => {
                tracing::info!(keys = ?keys, "encryption keys loaded");
                config = config.encryption(keys);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
        match runtime.block_on(Server::new(config, registry).run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}{}", e.command_line_hint());
                ExitCode::FAILURE
            }
        }
    }

    /// What to say when no `-s` is given and there is no default system.
    fn nothing_to_serve(&self) -> String {
        let known: Vec<&str> = self.systems.keys().map(String::as_str).collect();
        let files = if self.loader.is_some() {
            ", or -s FILE.toml for command workers (see README, \"Jobs in any language\")"
        } else {
            ""
        };
        let demo = if self.systems.contains_key("demo") {
            " (-s demo runs the demo workers, which write files and abort their process: \
             for trying Psychiq out, not for real data)"
        } else {
            ""
        };
        if known.is_empty() && self.loader.is_none() {
            return format!(
                "{} has no workers to serve: register them with Cli::default_system",
                self.name
            );
        }
        format!(
            "name the workers to serve with -s: {}{files}{demo}",
            if known.is_empty() {
                "none built in".to_string()
            } else {
                known.join(", ")
            }
        )
    }

    /// The workers of the named systems (the default systems when none is named).
    fn registry_for(&self, names: &[String]) -> Result<Registry, String> {
        let mut registry = Registry::new();
        // Which system brought each class: a class two systems define is refused, not
        // silently taken from the last.
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        let mut take = |registry: &mut Registry, name: &str, system: &Registry| {
            for class in system.class_names() {
                if let Some(first) = origin.insert(class.clone(), name.to_string())
                    && first != name
                {
                    return Err(format!(
                        "class {class:?} is defined by both {first:?} and {name:?}; rename one of them (each class must have one worker)"
                    ));
                }
            }
            registry.merge(system);
            Ok(())
        };
        if names.is_empty() {
            if self.defaults.is_empty() {
                return Err(self.nothing_to_serve());
            }
            for name in &self.defaults {
                take(&mut registry, name, &self.systems[name])?;
            }
        }
        for name in names {
            if let Some(system) = self.systems.get(name) {
                take(&mut registry, name, system)?;
                continue;
            }
            match self.loader.as_ref().and_then(|load| load(name)) {
                Some(loaded) => {
                    take(&mut registry, name, &loaded?)?;
                }
                None => {
                    let known: Vec<&str> = self.systems.keys().map(String::as_str).collect();
                    return Err(format!(
                        "unknown system {name:?}; {} knows: {}{}",
                        self.name,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        },
                        if self.loader.is_some() {
                            " (or a file it can load)"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        #[cfg(feature = "periodic")]
        let has_periodic = !registry.periodic_jobs().is_empty();
        #[cfg(not(feature = "periodic"))]
        let has_periodic = false;
        if registry.is_empty() && !has_periodic {
            return Err(if names.is_empty() {
                format!(
                    "no workers to run: the default systems of {} ({}) are empty; pass -s",
                    self.name,
                    self.defaults.join(", ")
                )
            } else {
                format!("no workers or periodic entries in {}", names.join(", "))
            });
        }
        Ok(registry)
    }
}

/// A server-only flag given on the command line together with an admin command.
fn server_only_flag(matches: &clap::ArgMatches) -> Option<String> {
    let command = <CliArgs as clap::CommandFactory>::command();
    command
        .get_arguments()
        .filter(|arg| !arg.is_global_set() && !matches!(arg.get_id().as_str(), "json" | "verbose"))
        .find(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|arg| match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            _ => arg.get_id().to_string(),
        })
}

/// The multi-threaded runtime, or the exit status after saying why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}
