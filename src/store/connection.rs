//! Where Redis is, and how to open connections to it.
//!
//! One [`RedisConfig`] describes the server (host/port/db or a URL with password, ACL user
//! and `rediss://` TLS). It opens [`Connection`]s: a shared multiplexed one for ordinary
//! commands and a dedicated one for blocking fetches, so a `BRPOP` never holds up an
//! enqueue or an acknowledgement.
//!
//! A [`Connection`] reconnects by itself after a dropped connection or a Redis restart, and
//! also after a login that failed once (a rotated password, a failover to a replica whose
//! ACLs lag): redis-rs keeps a failed login for good, so the connection is rebuilt, at most
//! once a second, until Redis accepts it again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use crate::error::{Error, Result};
use crate::store::errors::{login_refused, master_may_have_moved};
use crate::store::keys::{Keys, Layout};

/// How long an ordinary command may take before it fails (Sidekiq 7.3 uses 3 s too).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening a TCP/TLS connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The least time between two rebuilds of a connection whose login failed.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// The Redis server to use.
///
/// ```
/// use psychiq::RedisConfig;
/// let config = RedisConfig::from_parts("localhost", 6379, Some(2));
/// assert_eq!(config.display_address(), "redis://localhost:6379/2");
/// let config = RedisConfig::from_url("redis://app:secret@10.0.0.5:6380/1")?;
/// assert_eq!(config.display_address(), "redis://app:***@10.0.0.5:6380/1");
/// let config = RedisConfig::from_url("redis://app:p%40ss%2Fw0rd@10.0.0.5/1")?;
/// assert_eq!(config.display_address(), "redis://app:***@10.0.0.5/1");
/// // A password's `@` and `/` must be percent-encoded; the error says so, password masked.
/// let wrong = RedisConfig::from_url("redis://app:p@ss/w0rd@10.0.0.5/1").unwrap_err();
/// assert!(wrong.to_string().contains("%40") && !wrong.to_string().contains("w0rd"));
/// let config = RedisConfig::from_url("redis+unix:///run/redis.sock?db=2&pass=secret")?;
/// assert_eq!(config.display_address(), "redis+unix:///run/redis.sock?db=2&pass=***");
/// # Ok::<(), psychiq::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    tls: Option<Arc<TlsFiles>>,
    /// After each enqueue and each acknowledgement, `WAIT` for this many replicas.
    wait: Option<(u32, Duration)>,
    /// How keys are laid out, if chosen; a `redis+cluster://` address needs the cluster
    /// layout.
    layout: Option<Layout>,
}

/// Where a `rediss://` connection's certificates are (PEM files).
#[derive(Debug, Default, Clone)]
struct TlsFiles {
    /// The CA that signed the server's certificate, instead of the system's trust store.
    ca: Option<std::path::PathBuf>,
    /// A client certificate and its key, for servers that require one (`tls-auth-clients`).
    client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Debug shows the address with its password hidden, so a config can be logged safely.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.display_address())
            .finish()
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig::from_parts("localhost", 6379, None)
    }
}

impl RedisConfig {
    /// A server given by URL: `redis://[user:password@]host:port/db`, `rediss://` for TLS,
    /// `redis+unix:///path[?db=N&user=U&pass=P]`, or, behind Redis Sentinel,
    /// `redis+sentinel://[user:password@]sentinel1:26379,sentinel2:26379/MASTER[/db]`: the
    /// master's address is asked of the sentinels, and asked again after a failover; or a
    /// Redis Cluster, `redis+cluster://[user:password@]node1:6379,node2:6379`: any of its
    /// nodes, from which the rest are found, with keys in the [cluster layout](Layout).
    ///
    /// Fails at once, saying what is wrong, for an address that cannot be one (an unknown
    /// scheme, a port that is not a number, a Sentinel address without its master's name),
    /// so a typo in an app's settings stops it at start rather than at its first push.
    ///
    /// ```
    /// use psychiq::RedisConfig;
    /// assert!(RedisConfig::from_url("redis://10.0.0.5:6380/1").is_ok());
    /// let wrong = RedisConfig::from_url("redis://10.0.0.5:port/1").unwrap_err();
    /// assert!(wrong.to_string().contains("invalid Redis address"), "{wrong}");
    /// ```
    pub fn from_url(url: impl Into<String>) -> Result<Self> {
        let config = RedisConfig::unchecked(url.into());
        match config.client() {
            Ok(_) => Ok(config),
            Err(Error::InvalidAddress { address, reason }) if config.login_needs_encoding() => {
                Err(Error::InvalidAddress {
                    address,
                    reason: format!(
                        "{reason}; a user name or password holding @, /, ? or # must be percent-encoded (%40, %2F, %3F, %23)"
                    ),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the part before the host (up to the last `@`) holds a character a URL
    /// reads as the end of the login.
    fn login_needs_encoding(&self) -> bool {
        let Some((_, rest)) = self.url.split_once("://") else {
            return false;
        };
        rest.rsplit_once('@')
            .is_some_and(|(login, _)| login.contains(['@', '/', '?', '#']))
    }

    /// A config for `url` whose address is checked when it connects.
    fn unchecked(url: String) -> Self {
        RedisConfig {
            url,
            tls: None,
            wait: None,
            layout: None,
        }
    }

    /// Lays keys out for Redis Cluster even on one Redis (see [`Layout`]): the step
    /// before moving a namespace to a cluster, or to measure its cost. A
    /// `redis+cluster://` address always uses the cluster layout.
    ///
    /// ```
    /// use psychiq::{Layout, RedisConfig};
    /// let config = RedisConfig::default().layout(Layout::Cluster);
    /// assert_eq!(config.keys("psychiq").queue("mail"), "psychiq:{mail}:queue");
    /// let cluster = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")?;
    /// assert_eq!(cluster.key_layout(), Layout::Cluster);
    /// # Ok::<(), psychiq::Error>(())
    /// ```
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// The layout of the keys: [`Layout::Cluster`] for a cluster address or when chosen.
    pub fn key_layout(&self) -> Layout {
        if self.is_cluster() {
            Layout::Cluster
        } else {
            self.layout.unwrap_or_default()
        }
    }

    /// The keys of `namespace` on this Redis, in its [layout](RedisConfig::key_layout).
    pub fn keys(&self, namespace: &str) -> Keys {
        Keys::with_layout(namespace, self.key_layout())
    }

    /// Whether it names a Redis Cluster.
    fn is_cluster(&self) -> bool {
        self.url.starts_with("redis+cluster://")
    }

    /// For a `redis+cluster://` URL: the nodes to start from, as `redis://` URLs with the
    /// login. `None` for other URLs.
    fn cluster_nodes(&self) -> Option<Result<Vec<String>>> {
        let rest = self.url.strip_prefix("redis+cluster://")?;
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let invalid = |reason: &str| Error::InvalidAddress {
            address: self.display_address(),
            reason: reason.to_string(),
        };
        if hosts.is_empty() || hosts.split(',').any(str::is_empty) {
            return Some(Err(invalid(
                "a cluster address is redis+cluster://host:port[,host:port...]",
            )));
        }
        if hosts.contains('/') {
            return Some(Err(invalid(
                "a Redis Cluster has only database 0; drop the /db",
            )));
        }
        if self.tls.is_some() {
            return Some(Err(invalid(
                "TLS is not supported with Redis Cluster yet; use rediss:// to one Redis",
            )));
        }
        if self.layout == Some(Layout::Sidekiq) {
            return Some(Err(invalid(
                "Sidekiq's layout cannot work on a Redis Cluster (its commands cross hash slots); drop --layout sidekiq",
            )));
        }
        if self.wait.is_some() {
            return Some(Err(invalid(
                "--wait-replicas is not supported with Redis Cluster yet",
            )));
        }
        Some(Ok(hosts
            .split(',')
            .map(|host| format!("redis://{auth}{host}"))
            .collect()))
    }

    /// After each enqueue (a client's push) and each acknowledgement (a server's batch of
    /// finished jobs), waits until `replicas` replicas have the writes, or `timeout` passes
    /// (Redis's `WAIT`), so a failover loses neither a pushed job nor a finished job's
    /// acknowledgement. A wait that times out is logged; the write stands on the master.
    /// Off by default: it costs a round trip to the replicas each time.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        // Below the command timeout, so a wait that times out is not taken for a lost write.
        let timeout = timeout.clamp(Duration::from_millis(1), COMMAND_TIMEOUT / 2);
        self.wait = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// The replicas to wait for and how long, if set.
    pub(crate) fn replica_wait(&self) -> Option<(u32, Duration)> {
        self.wait
    }

    /// For `rediss://`: trusts the CA in the PEM file `path` (the one that signed the
    /// server's certificate) instead of the system's trust store.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        Arc::make_mut(self.tls.get_or_insert_default()).ca = Some(path.into());
        self
    }

    /// For `rediss://` to a server that requires client certificates: presents the
    /// certificate and key in these PEM files.
    pub fn tls_client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        Arc::make_mut(self.tls.get_or_insert_default()).client = Some((cert.into(), key.into()));
        self
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
        RedisConfig::unchecked(url)
    }

    /// The address for logs and error messages, with any password replaced by `***`: in the
    /// user part (up to the last `@`, so a password holding `/` or `@` is hidden whole) and
    /// in a `pass=` / `password=` query parameter.
    pub fn display_address(&self) -> String {
        // The credentials end at the last '@' (a password may hold '/', '?' or '@').
        let (start, after) = match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((auth, after)) => match auth.split_once(':') {
                    Some((user, _)) => (format!("{scheme}://{user}:***@"), after),
                    None => (format!("{scheme}://***@"), after),
                },
                None => (format!("{scheme}://"), rest),
            },
            None => (String::new(), self.url.as_str()),
        };
        let (host, query) = match after.split_once('?') {
            Some((host, query)) => (host, Some(query)),
            None => (after, None),
        };
        let mut shown = format!("{start}{host}");
        if let Some(query) = query {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if matches!(key, "pass" | "password") => format!("{key}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            shown = format!("{shown}?{}", pairs.join("&"));
        }
        shown
    }

    /// For a `redis+sentinel://` URL: the sentinels' addresses, the master's name, and the
    /// user, password and db for the master. `None` for other URLs.
    fn sentinel(&self) -> Option<Result<SentinelAddress>> {
        let rest = self.url.strip_prefix("redis+sentinel://")?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let mut parts = rest.splitn(3, '/');
        let hosts = parts.next().unwrap_or_default();
        let master = parts.next().unwrap_or_default().to_string();
        let db = parts.next().filter(|d| !d.is_empty());
        let invalid = |reason: &str| Error::InvalidAddress {
            address: self.display_address(),
            reason: reason.to_string(),
        };
        if hosts.is_empty() || master.is_empty() {
            return Some(Err(invalid(
                "a Sentinel address is redis+sentinel://host:26379[,host:26379...]/MASTER_NAME[/db]",
            )));
        }
        if db.is_some_and(|db| db.parse::<u32>().is_err()) {
            return Some(Err(invalid(
                "the db after the master's name must be a number",
            )));
        }
        if hosts.split(',').any(str::is_empty) {
            return Some(Err(invalid("an empty sentinel address in the list")));
        }
        if self.tls.is_some() {
            return Some(Err(invalid(
                "TLS certificates are not supported with Sentinel yet; use rediss:// to one Redis",
            )));
        }
        Some(Ok(SentinelAddress {
            // A sentinel without a port is on Sentinel's, 26379.
            sentinels: hosts
                .split(',')
                .map(|h| {
                    if h.rsplit_once(':')
                        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    {
                        format!("redis://{h}")
                    } else {
                        format!("redis://{h}:26379")
                    }
                })
                .collect(),
            master,
            auth: auth.map(str::to_string),
            db: db.map(str::to_string),
        }))
    }

    fn client(&self) -> Result<redis::Client> {
        // A cluster's nodes and a Sentinel's master are checked here and connected to in
        // `link`; the client returned is never used.
        let checked_here = match (self.cluster_nodes(), self.sentinel()) {
            (Some(nodes), _) => Some(nodes.map(drop)),
            (None, Some(sentinel)) => Some(sentinel.map(drop)),
            (None, None) => None,
        };
        if let Some(checked) = checked_here {
            checked?;
            return redis::Client::open("redis://127.0.0.1").map_err(|e| Error::InvalidAddress {
                address: self.display_address(),
                reason: e.to_string(),
            });
        }
        let invalid = |reason: String| Error::InvalidAddress {
            address: self.display_address(),
            reason,
        };
        if self.url.starts_with("rediss://") {
            install_crypto_provider();
        }
        let Some(files) = &self.tls else {
            return redis::Client::open(self.url.as_str()).map_err(|e| invalid(e.to_string()));
        };
        if !self.url.starts_with("rediss://") {
            return Err(invalid(
                "TLS certificates were given for an address without TLS; use rediss://".into(),
            ));
        }
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read the {what} {}: {e}", path.display())))
        };
        let root_cert = match &files.ca {
            Some(path) => Some(read(path, "TLS CA file")?),
            None => None,
        };
        let client_tls = match &files.client {
            Some((cert, key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert, "TLS client certificate")?,
                client_key: read(key, "TLS client key")?,
            }),
            None => None,
        };
        redis::Client::build_with_tls(
            self.url.as_str(),
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        )
        .map_err(|e| invalid(e.to_string()))
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
    pub async fn connect(&self) -> Result<Connection> {
        self.connect_with_timeout(COMMAND_TIMEOUT).await
    }

    /// Opens a connection whose commands may block for up to `timeout` (for `BRPOP`).
    pub(crate) async fn connect_with_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.client()?; // a bad address is named as one, not as a Redis error
        let manager = self.link(timeout).await.map_err(|e| self.redis_error(e))?;
        let mut connection = Connection {
            shared: Arc::new(Shared {
                config: self.clone(),
                timeout,
                current: Mutex::new(Current {
                    manager,
                    generation: 0,
                    rebuilt: Instant::now(),
                }),
                rebuilding: tokio::sync::Mutex::new(()),
            }),
        };
        let _: () = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| self.redis_error(e))?;
        Ok(connection)
    }

    /// Asks the sentinels where the master is; a client for it.
    async fn master_client(&self, sentinel: SentinelAddress) -> redis::RedisResult<redis::Client> {
        let mut sentinels = redis::sentinel::Sentinel::build(sentinel.sentinels.clone())?;
        // The master's login and db go with the lookup: redis-rs checks the master's ROLE
        // with them before it answers.
        let info = sentinel.master_settings();
        let node =
            redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
        let found = sentinels
            .async_master_for(&sentinel.master, Some(&node))
            .await?;
        let address = match found.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port) if host.contains(':') => {
                format!("[{host}]:{port}")
            }
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => other.to_string(),
        };
        tracing::debug!(
            master = sentinel.master,
            address,
            "Sentinel named the master"
        );
        // A client of our own for that address, with the same login and db.
        let info = sentinel.master_settings();
        let connection =
            redis::IntoConnectionInfo::into_connection_info(format!("redis://{address}"))?
                .set_redis_settings(info);
        redis::Client::open(connection)
    }

    /// Whether it names its master through Sentinel.
    fn is_sentinel(&self) -> bool {
        self.url.starts_with("redis+sentinel://")
    }

    /// The connection itself: to one Redis (named directly or by Sentinel) or to a cluster.
    async fn link(&self, timeout: Duration) -> redis::RedisResult<Link> {
        match self.cluster_nodes() {
            Some(nodes) => {
                let nodes = nodes.map_err(|e| {
                    RedisError::from((ErrorKind::InvalidClientConfig, "bad address", e.to_string()))
                })?;
                // redis-rs follows MOVED and ASK and reads the slots again after a failover;
                // its retries wait up to about 2.5 s in all, then the caller's own take over.
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(timeout)
                    .retries(6)
                    .min_retry_wait(50)
                    .max_retry_wait(1_000)
                    .build()?;
                Ok(Link::Cluster(client.get_async_connection().await?))
            }
            None => Ok(Link::Single(self.manager(timeout).await?)),
        }
    }

    async fn manager(&self, timeout: Duration) -> redis::RedisResult<ConnectionManager> {
        let client = match self.sentinel() {
            Some(Ok(sentinel)) => self.master_client(sentinel).await?,
            _ => self.client().map_err(|e| {
                RedisError::from((ErrorKind::InvalidClientConfig, "bad address", e.to_string()))
            })?,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        ConnectionManager::new_with_config(client, config).await
    }
}

/// Where a Sentinel-managed master is found (see [`RedisConfig::from_url`]).
struct SentinelAddress {
    sentinels: Vec<String>,
    master: String,
    auth: Option<String>,
    db: Option<String>,
}

impl SentinelAddress {
    /// The master's login and db, from the URL's `user:password@` and `/db`.
    fn master_settings(&self) -> redis::RedisConnectionInfo {
        let mut info = redis::RedisConnectionInfo::default();
        if let Some(auth) = &self.auth {
            let (user, password) = auth.split_once(':').unwrap_or(("", auth));
            if !user.is_empty() {
                info = info.set_username(user);
            }
            if !password.is_empty() {
                info = info.set_password(password);
            }
        }
        if let Some(db) = &self.db {
            info = info.set_db(db.parse().unwrap_or(0));
        }
        info
    }
}

/// Makes ring rustls's crypto provider for the process, once, unless the app chose one.
///
/// rustls 0.23.48 deprecates ring's provider because it has no post-quantum key exchange.
/// ring stays Psychiq's default (it builds everywhere without a C toolchain); an app that
/// wants post-quantum key exchange installs aws-lc-rs's provider before connecting, and
/// keeps it. The `allow` keeps the deprecation out of every downstream build's warnings.
#[allow(deprecated)]
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An app that installed its own provider keeps it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A connection to Redis that comes back by itself: after a dropped connection or a restart
/// (redis-rs reconnects), and after a refused login (it is rebuilt, at most once a second,
/// until Redis accepts the login again). Cheap to clone; clones share one socket.
///
/// Use it with redis-rs's commands as any async connection:
///
/// ```no_run
/// # async fn demo() -> psychiq::Result<()> {
/// use redis::AsyncCommands;
/// let mut conn = psychiq::RedisConfig::default().connect().await?;
/// let size: u64 = conn.llen("psychiq:queue:default").await.unwrap_or(0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

struct Shared {
    config: RedisConfig,
    timeout: Duration,
    current: Mutex<Current>,
    /// Held while a rebuild connects, so one failure wave rebuilds once.
    rebuilding: tokio::sync::Mutex<()>,
}

/// One Redis, or a cluster: both reconnect by themselves.
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Link {
    async fn command(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Link::Single(manager) => manager.send_packed_command(cmd).await,
            Link::Cluster(cluster) => cluster.req_packed_command(cmd).await,
        }
    }

    async fn commands(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Link::Single(manager) => manager.send_packed_commands(pipeline, offset, count).await,
            Link::Cluster(cluster) => {
                let result = cluster.req_packed_commands(pipeline, offset, count).await;
                match result {
                    // redis-rs sends a pipeline to one node and refuses, before sending
                    // anything, one whose keys cross slots. One that is not a transaction
                    // goes command by command instead, all at once: commands to one node
                    // keep their order on its connection.
                    Err(e) if crossed_slots(&e) && !pipeline.is_transaction() => {
                        let sends = pipeline.cmd_iter().map(|cmd| {
                            let mut cluster = cluster.clone();
                            async move { cluster.req_packed_command(cmd).await }
                        });
                        futures_util::future::try_join_all(sends).await
                    }
                    other => other,
                }
            }
        }
    }
}

/// redis-rs's refusal of a pipeline whose commands are for different slots.
fn crossed_slots(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot) && e.to_string().contains("crossed")
}

struct Current {
    manager: Link,
    /// Bumped by every rebuild, so a caller that saw an older one knows it was replaced.
    generation: u64,
    rebuilt: Instant,
}

impl Connection {
    fn current(&self) -> (Link, u64) {
        let current = self.shared.current.lock().expect("connection lock");
        (current.manager.clone(), current.generation)
    }

    /// After a refused login: opens a new connection manager, unless one was opened since
    /// `seen` or less than a second ago. A failure leaves the old one; the caller's next
    /// command (after its own backoff) tries again.
    async fn rebuild(&self, seen: u64) {
        let _rebuilding = self.shared.rebuilding.lock().await;
        {
            let current = self.shared.current.lock().expect("connection lock");
            if current.generation != seen || current.rebuilt.elapsed() < REBUILD_EVERY {
                return;
            }
        }
        let fresh = self.shared.config.link(self.shared.timeout).await;
        let mut current = self.shared.current.lock().expect("connection lock");
        current.rebuilt = Instant::now();
        if let Ok(manager) = fresh {
            current.manager = manager;
            current.generation += 1;
            if self.shared.config.is_sentinel() {
                tracing::info!(
                    "connected again to the master Sentinel names for {}",
                    self.shared.config.display_address()
                );
            } else {
                tracing::info!(
                    "Redis accepted the login again on a new connection to {}",
                    self.shared.config.display_address()
                );
            }
        }
    }

    async fn after<T>(
        &self,
        generation: u64,
        result: redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && (login_refused(e) || (self.shared.config.is_sentinel() && master_may_have_moved(e)))
        {
            self.rebuild(generation).await;
        }
        result
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (mut manager, generation) = self.current();
            let result = manager.command(cmd).await;
            self.after(generation, result).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (mut manager, generation) = self.current();
            let result = manager.commands(pipeline, offset, count).await;
            self.after(generation, result).await
        })
    }

    fn get_db(&self) -> i64 {
        match self.current().0 {
            Link::Single(manager) => manager.get_db(),
            Link::Cluster(_) => 0,
        }
    }
}

/// `WAIT`s for the replicas `config` asks for (if any) on `conn`; logs a wait that ends with
/// fewer. `what` names the writes for the log.
pub(crate) async fn wait_for_replicas(conn: &mut Connection, config: &RedisConfig, what: &str) {
    let Some((replicas, timeout)) = config.replica_wait() else {
        return;
    };
    let confirmed: redis::RedisResult<u32> = redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout.as_millis() as u64)
        .query_async(conn)
        .await;
    match confirmed {
        Ok(n) if n >= replicas => {}
        Ok(n) => tracing::warn!(
            confirmed = n,
            wanted = replicas,
            "{what}: only {n} of {replicas} replicas confirmed within {timeout:?}; kept on the master"
        ),
        Err(e) => tracing::warn!(error = %e, "{what}: could not wait for the replicas"),
    }
}

/// How far Redis's clock is ahead of this process's (seconds; negative if behind). Any
/// clock that decides something shared by several processes is Redis's: each process
/// reads its own clock plus this offset.
#[cfg(feature = "periodic")]
pub(crate) async fn redis_clock_offset(conn: &mut Connection) -> redis::RedisResult<f64> {
    let asked = crate::clock::now_secs();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    let answered = crate::clock::now_secs();
    // Redis read its clock about halfway through the round trip.
    Ok(secs as f64 + micros as f64 / 1e6 - (asked + answered) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_addresses_are_read_and_wrong_ones_named() {
        let config = RedisConfig::unchecked("redis+sentinel://u:p@a:26379,b:26380/main/3".into());
        assert_eq!(
            config.display_address(),
            "redis+sentinel://u:***@a:26379,b:26380/main/3"
        );
        let sentinel = config.sentinel().unwrap().unwrap();
        assert_eq!(sentinel.sentinels, ["redis://a:26379", "redis://b:26380"]);
        let defaulted = RedisConfig::unchecked("redis+sentinel://a,b:1/m".into()).sentinel();
        assert_eq!(
            defaulted.unwrap().unwrap().sentinels,
            ["redis://a:26379", "redis://b:1"]
        );
        assert_eq!(sentinel.master, "main");
        assert_eq!(
            (sentinel.auth.as_deref(), sentinel.db.as_deref()),
            (Some("u:p"), Some("3"))
        );
        for wrong in [
            "redis+sentinel://a:26379",
            "redis+sentinel://a:1/m/x",
            "redis+sentinel://a,,b/m",
        ] {
            let error = RedisConfig::from_url(wrong).unwrap_err().to_string();
            assert!(error.contains("invalid Redis address"), "{error}");
        }
        assert!(
            RedisConfig::unchecked("redis://h".into())
                .sentinel()
                .is_none()
        );
    }

    #[test]
    fn passwords_are_hidden_whole() {
        let shown = |url: &str| RedisConfig::unchecked(url.into()).display_address();
        assert_eq!(shown("redis://:a/b@c@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(shown("redis://u:pa?ss@h/0"), "redis://u:***@h/0");
        assert_eq!(shown("rediss://u:x@h"), "rediss://u:***@h");
        assert_eq!(shown("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            shown("redis+unix:///s?user=u&password=p"),
            "redis+unix:///s?user=u&password=***"
        );
        assert!(!format!("{:?}", RedisConfig::unchecked("redis://:top@h".into())).contains("top"));
    }
}
