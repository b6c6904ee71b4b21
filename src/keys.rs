//! Redis key names: Sidekiq's layout under an optional namespace.
//!
//! Every key Psychiq touches is built here, so the layout is in one place.
//! With the namespace `psychiq` the default queue lives at `psychiq:queue:default`;
//! with an empty namespace the keys are Sidekiq's bare ones (`queue:default`).

/// The namespace Psychiq uses unless told otherwise, as the original's CLI documents.
pub const DEFAULT_NAMESPACE: &str = "psychiq";

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
    prefix: String,
}

impl Keys {
    /// Keys under `namespace`; an empty namespace gives Sidekiq's bare keys.
    pub fn new(namespace: &str) -> Self {
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}:")
        };
        Keys { prefix }
    }

    /// The namespace these keys live under (`""` for the bare layout).
    pub fn namespace(&self) -> &str {
        self.prefix.strip_suffix(':').unwrap_or("")
    }

    /// The string put in front of every key: `"NAMESPACE:"` or `""`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Any key under the namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The set of known queue names (`queues`).
    pub fn queues(&self) -> String {
        self.key("queues")
    }

    /// The list holding a queue's jobs (`queue:NAME`).
    pub fn queue(&self, name: &str) -> String {
        format!("{}queue:{name}", self.prefix)
    }

    /// The queue name of a `queue:NAME` key, if it is one of this namespace.
    pub fn queue_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix("queue:")
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

    /// The set of process identities that may own in-progress hashes (`inprogress`).
    pub fn inprogress_owners(&self) -> String {
        self.key("inprogress")
    }

    /// A process's hash of jobs fetched from `queue` and not yet finished
    /// (`inprogress:IDENTITY:QUEUE`, slot number → exact payload). Sidekiq does not read
    /// these keys.
    pub fn inprogress(&self, identity: &str, queue: &str) -> String {
        format!("{}inprogress:{identity}:{queue}", self.prefix)
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
}
