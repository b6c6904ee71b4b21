//! Redis key names: Sidekiq's layout under an optional namespace, or the cluster layout.
//!
//! Every key Psychiq touches is built here, so the layout is in one place.
//! With the namespace `psychiq` the default queue lives at `psychiq:queue:default`;
//! with an empty namespace the keys are Sidekiq's bare ones (`queue:default`).
//!
//! The [cluster layout](Layout::Cluster) is for Redis Cluster, where a command or script
//! may only touch keys of one hash slot. Each queue's keys share the queue's hash tag
//! (`psychiq:{default}:queue`, `…:inprogress:ID`, and its own `…:schedule`, `…:retry`,
//! `…:dead` and `…:paused`), so a queue's jobs move between them atomically and different
//! queues land on different shards. Every other key (processes, stats, the `queues` set,
//! the extensions' keys) shares the namespace's tag (`{psychiq}:processes`): one slot, kept
//! small, written once a beat per process.

/// The namespace Psychiq uses unless told otherwise: none, so keys are Sidekiq's bare ones
/// (`queue:default`), as Sidekiq 7 and 8 (which have no namespaces) and the original Lisp
/// Psychiq (`*psychiq-namespace*` is `nil`) write them. Psychiq 0.1 used `psychiq`;
/// `-n psychiq` keeps that layout.
pub const DEFAULT_NAMESPACE: &str = "";

/// The namespace the cluster layout uses when given none: its shared keys need a hash tag.
pub const CLUSTER_NAMESPACE: &str = "psychiq";

/// Builds the Redis keys of one namespace.
///
/// ```
/// use psychiq::Keys;
/// let keys = Keys::new("psychiq");
/// assert_eq!(keys.queue("default"), "psychiq:queue:default");
/// assert_eq!(Keys::new("").retry(), "retry");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// In front of every key not tied to a queue: `NS:`, `""` or (cluster) `{NS}:`.
    prefix: String,
    namespace: String,
    layout: Layout,
}

/// How keys are laid out in Redis.
///
/// ```
/// use psychiq::{Keys, Layout};
/// let keys = Keys::with_layout("psychiq", Layout::Cluster);
/// assert_eq!(keys.queue("mail"), "psychiq:{mail}:queue");
/// assert_eq!(keys.retry_of("mail"), "psychiq:{mail}:retry");
/// assert_eq!(keys.queues(), "{psychiq}:queues");
/// assert_eq!(Keys::new("psychiq").retry_of("mail"), "psychiq:retry");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Sidekiq's keys (the default): what Ruby Sidekiq reads and writes, on one Redis
    /// (directly, or the master Sentinel names).
    #[default]
    Sidekiq,
    /// Redis Cluster's: each queue's keys in the queue's hash slot, with its own
    /// scheduled, retry and dead sets; everything else in the namespace's slot. Ruby
    /// Sidekiq does not read it. It runs on a single Redis too (the step before moving
    /// to a cluster).
    Cluster,
}

impl Layout {
    /// Its name, as `--layout` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Sidekiq => "sidekiq",
            Layout::Cluster => "cluster",
        }
    }
}

impl std::str::FromStr for Layout {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Layout, String> {
        match name {
            "sidekiq" => Ok(Layout::Sidekiq),
            "cluster" => Ok(Layout::Cluster),
            other => Err(format!(
                "unknown layout {other:?}: use sidekiq (Sidekiq's keys) or cluster (for Redis Cluster)"
            )),
        }
    }
}

impl Keys {
    /// Keys under `namespace` in Sidekiq's layout; an empty namespace gives Sidekiq's
    /// bare keys.
    pub fn new(namespace: &str) -> Self {
        Keys::with_layout(namespace, Layout::Sidekiq)
    }

    /// Keys under `namespace` in `layout`. The cluster layout needs a namespace (its
    /// shared keys carry it as their hash tag); given none it uses `psychiq`.
    pub fn with_layout(namespace: &str, layout: Layout) -> Self {
        let namespace = match layout {
            Layout::Cluster if namespace.is_empty() => CLUSTER_NAMESPACE,
            _ => namespace,
        };
        let prefix = match layout {
            Layout::Sidekiq if namespace.is_empty() => String::new(),
            Layout::Sidekiq => format!("{namespace}:"),
            Layout::Cluster => format!("{{{namespace}}}:"),
        };
        Keys {
            prefix,
            namespace: namespace.to_string(),
            layout,
        }
    }

    /// The namespace these keys live under (`""` for the bare layout).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The layout of these keys.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Whether these are the cluster layout's keys.
    pub fn is_cluster(&self) -> bool {
        self.layout == Layout::Cluster
    }

    /// The string put in front of every key not tied to a queue: `"NAMESPACE:"`, `""`,
    /// or in the cluster layout `"{NAMESPACE}:"`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A key of queue `queue`'s own, `NS:{QUEUE}:name` (cluster layout only).
    fn of_queue(&self, queue: &str, name: &str) -> String {
        format!("{}:{{{queue}}}:{name}", self.namespace)
    }

    /// Any key under the namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The set of known queue names (`queues`).
    pub fn queues(&self) -> String {
        self.key("queues")
    }

    /// The list holding a queue's jobs (`queue:NAME`; cluster: `NS:{NAME}:queue`).
    pub fn queue(&self, name: &str) -> String {
        match self.layout {
            Layout::Sidekiq => format!("{}queue:{name}", self.prefix),
            Layout::Cluster => self.of_queue(name, "queue"),
        }
    }

    /// The list of the queue whose name is these bytes (which need not be UTF-8).
    pub(crate) fn raw_queue(&self, name: &[u8]) -> Vec<u8> {
        match self.layout {
            Layout::Sidekiq => [self.prefix.as_bytes(), b"queue:", name].concat(),
            Layout::Cluster => [self.namespace.as_bytes(), b":{", name, b"}:queue"].concat(),
        }
    }

    /// The queue name of a queue's list key, if it is one of these keys.
    pub fn queue_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        match self.layout {
            Layout::Sidekiq => key
                .strip_prefix(self.prefix.as_str())?
                .strip_prefix("queue:"),
            Layout::Cluster => key
                .strip_prefix(self.namespace.as_str())?
                .strip_prefix(":{")?
                .strip_suffix("}:queue"),
        }
    }

    /// Where jobs for `queue` wait for their time: the `schedule` set, or in the cluster
    /// layout the queue's own (`NS:{QUEUE}:schedule`).
    pub fn schedule_of(&self, queue: &str) -> String {
        match self.layout {
            Layout::Sidekiq => self.schedule(),
            Layout::Cluster => self.of_queue(queue, "schedule"),
        }
    }

    /// Where failed jobs that will run again in `queue` wait: `retry`, or the queue's own.
    pub fn retry_of(&self, queue: &str) -> String {
        match self.layout {
            Layout::Sidekiq => self.retry(),
            Layout::Cluster => self.of_queue(queue, "retry"),
        }
    }

    /// Where jobs of `queue` that will not run again go: `dead`, or the queue's own.
    pub fn dead_of(&self, queue: &str) -> String {
        match self.layout {
            Layout::Sidekiq => self.dead(),
            Layout::Cluster => self.of_queue(queue, "dead"),
        }
    }

    /// The set fetch reads to skip `queue` while it is paused: `paused` (every paused
    /// queue's name), or in the cluster layout the queue's own (its name, while paused),
    /// which [`Keys::paused`] lists beside.
    pub fn paused_of(&self, queue: &str) -> String {
        match self.layout {
            Layout::Sidekiq => self.paused(),
            Layout::Cluster => self.of_queue(queue, "paused"),
        }
    }

    /// The sorted set of jobs to run later (`schedule`).
    pub fn schedule(&self) -> String {
        self.key("schedule")
    }

    /// The sorted set of failed jobs waiting for a retry (`retry`).
    pub fn retry(&self) -> String {
        self.key("retry")
    }

    /// The set of paused queue names (`paused`, as Sidekiq Pro keeps it): servers take
    /// nothing from them until they are unpaused.
    pub fn paused(&self) -> String {
        self.key("paused")
    }

    /// The sorted set of jobs that will not be retried (`dead`).
    pub fn dead(&self) -> String {
        self.key("dead")
    }

    /// The list where jobs of priority `priority` (1 to 9) wait for queue `name`
    /// (Sidekiq's layout only).
    pub fn priority_queue(&self, name: &str, priority: u8) -> String {
        self.key(&format!("prio:{priority}:{name}"))
    }

    /// The set of queues that have groups.
    pub fn grouped(&self) -> String {
        self.key("grouped")
    }

    /// Key `kind` of queue `queue`'s groups (`grpknown`, `grplimit`...), or of group
    /// `group` of it (`grp`, `grprun`), as `group_common.lua` names them.
    pub fn group_key(&self, kind: &str, queue: &str, group: Option<&str>) -> String {
        match group {
            Some(group) => self.key(&format!("{kind}:{queue}:{group}")),
            None => self.key(&format!("{kind}:{queue}")),
        }
    }

    /// The set of queues that may have jobs in priority lists.
    pub fn prioritized(&self) -> String {
        self.key("prioritized")
    }

    /// The set of process identities that may own in-progress hashes (`inprogress`).
    pub fn inprogress_owners(&self) -> String {
        self.key("inprogress")
    }

    /// A process's hash of jobs fetched from `queue` and not yet finished
    /// (`inprogress:IDENTITY:QUEUE`, slot number → exact payload). Sidekiq does not read
    /// these keys.
    pub fn inprogress(&self, identity: &str, queue: &str) -> String {
        match self.layout {
            Layout::Sidekiq => format!("{}inprogress:{identity}:{queue}", self.prefix),
            Layout::Cluster => self.of_queue(queue, &format!("inprogress:{identity}")),
        }
    }

    /// A tracked job's status hash (`status:JID`): its state, times, progress, error and
    /// result (see [`crate::status`]).
    pub fn status(&self, jid: &str) -> String {
        format!("{}status:{jid}", self.prefix)
    }

    /// The list a tracked job's final state is pushed to (`status:JID:done`), for callers
    /// to wait on with a blocking pop.
    pub fn status_done(&self, jid: &str) -> String {
        format!("{}status:{jid}:done", self.prefix)
    }

    /// The sorted set of cancelled jids (`cancels`), scored by when (Redis's clock): every
    /// server reads it to stop the jobs it runs.
    pub fn cancels(&self) -> String {
        self.key("cancels")
    }

    /// The capped stream of job events (`events`).
    pub fn events(&self) -> String {
        self.key("events")
    }

    /// A total counter, e.g. `stat:processed`.
    pub fn stat(&self, name: &str) -> String {
        format!("{}stat:{name}", self.prefix)
    }

    /// A class's run metrics (`metrics:class:CLASS`): count, failed, secs, b0..b14.
    pub fn class_metrics(&self, class: &str) -> String {
        format!("{}metrics:class:{class}", self.prefix)
    }

    /// A daily counter, e.g. `stat:processed:2026-11-27` (the date is UTC).
    pub fn stat_daily(&self, name: &str, date: &str) -> String {
        format!("{}stat:{name}:{date}", self.prefix)
    }
}

/// Escapes Redis glob characters so a name matches only itself in `SCAN MATCH`.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_name_round_trips_only_in_its_namespace() {
        let keys = Keys::new("ns");
        assert_eq!(keys.queue_name(&keys.queue("low")), Some("low"));
        assert_eq!(keys.queue_name("other:queue:low"), None);
        assert_eq!(Keys::new("").queue_name("queue:a:b"), Some("a:b"));
        assert_eq!(keys.namespace(), "ns");
        assert_eq!(Keys::new("").namespace(), "");
    }

    #[test]
    fn the_cluster_layout_tags_each_queue_and_the_rest_with_the_namespace() {
        let keys = Keys::with_layout("ns", Layout::Cluster);
        assert_eq!(keys.queue_name(&keys.queue("a:b")), Some("a:b"));
        assert_eq!(keys.queue_name("ns:queue:a"), None);
        assert_eq!(
            keys.inprogress("host:1:abc", "low"),
            "ns:{low}:inprogress:host:1:abc"
        );
        assert_eq!(keys.dead_of("low"), "ns:{low}:dead");
        assert_eq!(keys.paused_of("low"), "ns:{low}:paused");
        assert_eq!(keys.stat("processed"), "{ns}:stat:processed");
        assert_eq!(keys.prefix(), "{ns}:");
        assert_eq!(
            Keys::with_layout("", Layout::Cluster).prefix(),
            "{psychiq}:"
        );
        assert_eq!("cluster".parse(), Ok(Layout::Cluster));
        assert!("shards".parse::<Layout>().is_err());
    }
}
