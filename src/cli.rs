//! Command-line flags for a server, offered to any binary that embeds Psychiq.
//!
//! The flags and defaults are the original's (`-o/--host localhost`, `-p/--port 6379`,
//! `-d/--db`, `-q/--queue QUEUE[,WEIGHT]`, `-c/--concurrency 25`, `-n/--namespace psychiq`,
//! `-v/--verbose`), plus `--redis-url` (or `REDIS_URL`) for passwords and TLS and
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
//! let config = args.server.server_config();
//! assert_eq!(config.concurrency, 10);
//! assert_eq!(config.namespace, "");
//! assert_eq!(config.queues.len(), 2);
//! ```

use std::time::Duration;

use clap::Args;

use crate::connection::RedisConfig;
use crate::fetch::QueueSpec;
use crate::server::ServerConfig;

/// The server's flags.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Redis host
    #[arg(short = 'o', long, default_value = "localhost")]
    pub host: String,
    /// Redis port
    #[arg(short = 'p', long, default_value_t = 6379, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Redis database number
    #[arg(short = 'd', long)]
    pub db: Option<u32>,
    /// Redis URL, e.g. redis://user:password@host:6379/0 or rediss:// for TLS (overrides -o/-p/-d)
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Queue to process, with an optional weight; repeat for more (default: "default")
    #[arg(short = 'q', long = "queue", value_name = "QUEUE[,WEIGHT]", value_parser = parse_queue)]
    pub queues: Vec<QueueSpec>,
    /// Number of jobs run at once
    #[arg(short = 'c', long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Key namespace ('' for Sidekiq's bare keys)
    #[arg(short = 'n', long, default_value = crate::keys::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Seconds running jobs get to finish on shutdown before they are pushed back
    #[arg(short = 't', long, default_value_t = 25)]
    pub timeout: u64,
    /// Tag shown with this process in dashboards
    #[arg(short = 'g', long, default_value = "")]
    pub tag: String,
    /// Print debug logs
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

fn parse_queue(spec: &str) -> Result<QueueSpec, String> {
    QueueSpec::parse(spec).map_err(|e| e.to_string())
}

impl ServerArgs {
    /// Where Redis is: the URL if given, else host, port and db.
    pub fn redis_config(&self) -> RedisConfig {
        match &self.redis_url {
            Some(url) => RedisConfig::from_url(url.clone()),
            None => RedisConfig::from_parts(&self.host, self.port, self.db),
        }
    }

    /// The server settings these flags describe.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            redis: self.redis_config(),
            namespace: self.namespace.clone(),
            concurrency: self.concurrency as usize,
            queues: self.queues.clone(),
            shutdown_timeout: Duration::from_secs(self.timeout),
            tag: self.tag.clone(),
            ..ServerConfig::default()
        }
    }

    /// Logs to stderr at info (debug with `-v`); `RUST_LOG` overrides.
    pub fn init_logging(&self) {
        let default = if self.verbose { "debug" } else { "info" };
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}
