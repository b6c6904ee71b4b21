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

use crate::error::Result;
use crate::store::config::{COMMAND_TIMEOUT, RedisConfig, SentinelAddress};
use crate::store::errors::{login_refused, master_may_have_moved};

/// How long opening a TCP/TLS connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The least time between two rebuilds of a connection whose login failed.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

impl RedisConfig {
    /// Opens a reconnecting, multiplexed connection and checks it with a `PING`.
    ///
    /// Cheap to clone; every clone shares one socket. Commands time out after 3 s, so a
    /// caller never hangs on an unreachable server.
    pub async fn connect(&self) -> Result<Connection> {
        self.connect_with_timeout(COMMAND_TIMEOUT).await
    }

    /// A connection that works like [`RedisConfig::connect`]'s once Redis answers, and
    /// fails each command as unreachable until then (looking again at most once a
    /// second): for an app that must start while Redis is away, with reliable push
    /// ([`crate::Client::reliable_push`]). A bad address is still an error at once.
    pub async fn connect_lazily(&self) -> Result<Connection> {
        self.client()?;
        let link = self.link(COMMAND_TIMEOUT).await.unwrap_or(Link::NotYet);
        Ok(self.connection(link, COMMAND_TIMEOUT))
    }

    fn connection(&self, manager: Link, timeout: Duration) -> Connection {
        Connection {
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
        }
    }

    /// Opens a connection whose commands may block for up to `timeout` (for `BRPOP`).
    pub(crate) async fn connect_with_timeout(&self, timeout: Duration) -> Result<Connection> {
        self.client()?; // a bad address is named as one, not as a Redis error
        let manager = self.link(timeout).await.map_err(|e| self.redis_error(e))?;
        let mut connection = self.connection(manager, timeout);
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

/// One Redis, or a cluster: both reconnect by themselves. `NotYet`: a lazy connection
/// whose Redis has not answered yet (each command tries to link first).
#[derive(Clone)]
enum Link {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    NotYet,
}

/// What a command on a connection that never reached Redis fails with.
fn not_yet() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        "Redis has not answered yet",
    ))
}

impl Link {
    async fn command(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Link::Single(manager) => manager.send_packed_command(cmd).await,
            Link::Cluster(cluster) => cluster.req_packed_command(cmd).await,
            Link::NotYet => Err(not_yet()),
        }
    }

    async fn commands(
        &mut self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Link::NotYet => Err(not_yet()),
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
    /// A lazy connection whose Redis has not answered yet.
    fn never_linked(&self) -> bool {
        let current = self.shared.current.lock().expect("connection lock");
        matches!(current.manager, Link::NotYet)
    }

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
            let first = matches!(current.manager, Link::NotYet);
            current.manager = manager;
            current.generation += 1;
            if first {
                tracing::info!(
                    "Redis at {} answers: connected",
                    self.shared.config.display_address()
                );
            } else if self.shared.config.is_sentinel() {
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
        if result.is_err() && self.never_linked() {
            // Linked in the background: a command never waits for Redis to come back.
            let connection = self.clone();
            tokio::spawn(async move { connection.rebuild(generation).await });
        } else if let Err(e) = &result
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
            Link::Cluster(_) | Link::NotYet => 0,
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
