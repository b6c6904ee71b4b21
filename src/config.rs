//! Where a fleet's jobs live, written once: the Redis, its key layout and the namespace.

use crate::client::Client;
use crate::error::Result;
use crate::store::config::RedisConfig;
use crate::store::keys::{DEFAULT_NAMESPACE, Keys};

/// Where jobs live: the Redis (address, TLS, replicas to wait for), the key layout and the
/// namespace. The client, the server and the API are all built from one `Config`, so the
/// namespace an app pushes to and the one its servers take from cannot drift apart.
///
/// ```no_run
/// use psychiq::{Config, Registry};
/// # async fn demo() -> psychiq::Result<()> {
/// let jobs = Config::from_url("redis://127.0.0.1:6379/0")?.namespace("shop");
///
/// let client = jobs.client().await?;                     // in the web app
/// let server = jobs.server().concurrency(10).queue("mail"); // in the worker process
/// psychiq::Server::new(server, Registry::new()).run().await?;
/// # let _ = client; Ok(()) }
/// ```
///
/// Without [`Config::namespace`], keys are Sidekiq's bare ones (`queue:default`), which a
/// Ruby Sidekiq beside it reads.
#[derive(Debug, Clone)]
pub struct Config {
    redis: RedisConfig,
    namespace: String,
}

impl Default for Config {
    /// `redis://localhost:6379`, bare keys.
    fn default() -> Self {
        Config::new(RedisConfig::default())
    }
}

impl From<RedisConfig> for Config {
    fn from(redis: RedisConfig) -> Self {
        Config::new(redis)
    }
}

impl Config {
    /// Jobs in `redis`, with bare keys until [`Config::namespace`] says otherwise.
    pub fn new(redis: RedisConfig) -> Config {
        Config {
            redis,
            namespace: DEFAULT_NAMESPACE.to_string(),
        }
    }

    /// Jobs in the Redis at `url` (see [`RedisConfig::from_url`] for the forms); fails at
    /// once for an address that cannot be one.
    pub fn from_url(url: impl Into<String>) -> Result<Config> {
        Ok(Config::new(RedisConfig::from_url(url)?))
    }

    /// Puts every key under `namespace` (`NAMESPACE:queue:default`), so apps can share a
    /// Redis; `""` is bare keys.
    ///
    /// ```
    /// let config = psychiq::Config::default().namespace("shop");
    /// assert_eq!(config.keys().queue("mail"), "shop:queue:mail");
    /// assert_eq!(psychiq::Config::default().keys().queue("mail"), "queue:mail");
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = namespace.into();
        self
    }

    /// The Redis and its layout.
    pub fn redis(&self) -> &RedisConfig {
        &self.redis
    }

    /// The namespace (`""`: bare keys).
    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    /// The keys jobs live under.
    pub fn keys(&self) -> Keys {
        self.redis.keys(&self.namespace)
    }

    /// Connects a client that pushes jobs here.
    pub async fn client(&self) -> Result<Client> {
        Client::connect(&self.redis, &self.namespace).await
    }
}
