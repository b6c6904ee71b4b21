//! Where Redis is: a [`RedisConfig`] read from a URL (one Redis, `rediss://` with TLS, a
//! Unix socket, Sentinel, or a Cluster) or from host, port and db, checked when it is read,
//! shown with its password masked, and the key layout it implies.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::keys::{Keys, Layout};

/// How long an ordinary command may take before it fails (Sidekiq 7.3 uses 3 s too).
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

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
    pub(super) url: String,
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
    pub(super) client: Option<(std::path::PathBuf, std::path::PathBuf)>,
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
        match config.check() {
            Ok(()) => Ok(config),
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

    /// Checks that the address can be one, without connecting or installing anything (an
    /// app may install its own TLS crypto provider after reading its settings).
    fn check(&self) -> Result<()> {
        match (self.cluster_nodes(), self.sentinel()) {
            (Some(nodes), _) => nodes.map(drop),
            (None, Some(sentinel)) => sentinel.map(drop),
            (None, None) => redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
                .map(drop)
                .map_err(|e| Error::InvalidAddress {
                    address: self.display_address(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Whether it names its master through Sentinel.
    pub(super) fn is_sentinel(&self) -> bool {
        self.url.starts_with("redis+sentinel://")
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
    pub(super) fn cluster_nodes(&self) -> Option<Result<Vec<String>>> {
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
            // Not a URL at all (`app:secret@host`): still nothing before the last '@' shows.
            None => match self.url.rsplit_once('@') {
                Some((_, after)) => ("***@".to_string(), after),
                None => (String::new(), self.url.as_str()),
            },
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
    pub(super) fn sentinel(&self) -> Option<Result<SentinelAddress>> {
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

    pub(super) fn client(&self) -> Result<redis::Client> {
        self.check()?;
        // A cluster's nodes and a Sentinel's master are connected to in `link`; the client
        // returned is never used.
        if self.is_cluster() || self.is_sentinel() {
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
}

/// Where a Sentinel-managed master is found (see [`RedisConfig::from_url`]).
pub(super) struct SentinelAddress {
    pub(super) sentinels: Vec<String>,
    pub(super) master: String,
    auth: Option<String>,
    db: Option<String>,
}

impl SentinelAddress {
    /// The master's login and db, from the URL's `user:password@` and `/db`.
    pub(super) fn master_settings(&self) -> redis::RedisConnectionInfo {
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
        assert_eq!(shown("app:secret@h:6379"), "***@h:6379");
        assert_eq!(shown("redis:/u:secret@h"), "***@h");
        assert_eq!(shown("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            shown("redis+unix:///s?user=u&password=p"),
            "redis+unix:///s?user=u&password=***"
        );
        assert!(!format!("{:?}", RedisConfig::unchecked("redis://:top@h".into())).contains("top"));
    }
}
