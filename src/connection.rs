//! Where Redis is, and how to open connections to it.
//!
//! One [`RedisConfig`] describes the server (host/port/db or a URL with password, ACL user
//! and `rediss://` TLS). It opens two kinds of connections: a shared multiplexed one for
//! ordinary commands and a dedicated one for blocking fetches, so a `BRPOP` never holds up
//! an enqueue or an acknowledgement.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};

/// How long an ordinary command may take before it fails (Sidekiq 7.3 uses 3 s too).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a TCP/TLS connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The Redis server to use.
///
/// ```
/// use psychiq::RedisConfig;
/// let config = RedisConfig::from_parts("localhost", 6379, Some(2));
/// assert_eq!(config.display_address(), "redis://localhost:6379/2");
/// let config = RedisConfig::from_url("redis://app:secret@10.0.0.5:6380/1");
/// assert_eq!(config.display_address(), "redis://app:***@10.0.0.5:6380/1");
/// let config = RedisConfig::from_url("redis://app:p@ss@10.0.0.5/1");
/// assert_eq!(config.display_address(), "redis://app:***@10.0.0.5/1");
/// ```
#[derive(Clone, Debug)]
pub struct RedisConfig {
    url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig::from_parts("localhost", 6379, None)
    }
}

impl RedisConfig {
    /// A server given by URL: `redis://[user:password@]host:port/db`, `rediss://` for TLS,
    /// or `redis+unix:///path`.
    pub fn from_url(url: impl Into<String>) -> Self {
        RedisConfig { url: url.into() }
    }

    /// A server given by host, port and optional database number.
    pub fn from_parts(host: &str, port: u16, db: Option<u32>) -> Self {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // an IPv6 address needs brackets in a URL
        } else {
            host.to_string()
        };
        let url = match db {
            Some(db) => format!("redis://{host}:{port}/{db}"),
            None => format!("redis://{host}:{port}"),
        };
        RedisConfig { url }
    }

    /// The address for logs and error messages, with any password replaced by `***`.
    pub fn display_address(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        // The credentials end at the last '@' before the path.
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end]
            .rsplit_once('@')
            .map(|(auth, _)| (auth, &rest[auth.len() + 1..]))
        {
            Some((auth, host)) => match auth.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => format!("{scheme}://***@{host}"),
            },
            None => self.url.clone(),
        }
    }

    fn client(&self) -> Result<redis::Client> {
        redis::Client::open(self.url.as_str()).map_err(|e| Error::InvalidAddress {
            address: self.display_address(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn redis_error(&self, source: redis::RedisError) -> Error {
        Error::Redis {
            address: self.display_address(),
            source,
        }
    }

    /// Opens a reconnecting, multiplexed connection and checks it with a `PING`.
    ///
    /// Cheap to clone; every clone shares one socket. Commands time out after 3 s, so a
    /// caller never hangs on an unreachable server.
    pub async fn connect(&self) -> Result<ConnectionManager> {
        self.connect_with_timeout(COMMAND_TIMEOUT).await
    }

    /// Opens a connection whose commands may block for up to `timeout` (for `BRPOP`).
    pub(crate) async fn connect_with_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConnectionManager> {
        let client = self.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| self.redis_error(e))?;
        let _: () = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(e))?;
        Ok(conn)
    }
}

/// Logs a Redis outage once when it starts and once when it ends, with its length.
#[derive(Debug)]
pub(crate) struct Outage {
    /// Which part of the server is talking (e.g. "fetch").
    what: &'static str,
    since: Option<std::time::Instant>,
}

impl Outage {
    pub fn new(what: &'static str) -> Outage {
        Outage { what, since: None }
    }

    /// A command failed: logs it if this starts an outage.
    pub fn failed(&mut self, error: &redis::RedisError) {
        if self.since.is_none() {
            tracing::error!(error = %error, "{}: cannot reach Redis; will keep trying", self.what);
            self.since = Some(std::time::Instant::now());
        }
    }

    /// A command succeeded: logs the recovery if an outage was going on; returns whether it was.
    pub fn ok(&mut self) -> bool {
        match self.since.take() {
            Some(since) => {
                tracing::info!(
                    downtime_s = since.elapsed().as_secs_f64(),
                    "{}: Redis is back",
                    self.what
                );
                true
            }
            None => false,
        }
    }
}

/// Runs `pipe` until Redis answers, with capped backoff (100 ms doubling to 5 s), logging
/// the outage once through `outage`. For writes that must not be dropped.
pub(crate) async fn query_until_ok(
    conn: &mut ConnectionManager,
    pipe: &redis::Pipeline,
    outage: &mut Outage,
) {
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = pipe.query_async::<()>(conn).await {
        outage.failed(&e);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    outage.ok();
}
