//! A rate limit as a job's option: a named limiter's kind, size and timing, which a
//! worker's options and the `psychiq::limits` API name. How a limit is enforced (its
//! scripts, leases and snoozes) is the `limits` extension's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a concurrent lease lives without renewal unless [`Limiter::lease`] says.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How long a job may be snoozed for a limit before it fails, unless
/// [`Limiter::max_snooze`] says.
pub const DEFAULT_MAX_SNOOZE: Duration = Duration::from_secs(3600);
/// The longest interval a window or bucket may have (longer ones are cut to it).
const LONGEST_INTERVAL: Duration = Duration::from_secs(366 * 86_400);
/// The longest lease, in-place wait and snoozing time (longer ones are cut to it).
const LONGEST_LEASE: Duration = Duration::from_secs(86_400);
const LONGEST_WAIT: Duration = Duration::from_secs(3600);
const LONGEST_SNOOZING: Duration = Duration::from_secs(366 * 86_400);
/// What a limiter limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LimitKind {
    /// At most `size` holders at once.
    Concurrent,
    /// At most `size` per fixed, aligned interval.
    Window,
    /// At most `size` in any interval.
    SlidingWindow,
    /// Bursts of up to `size`, refilled at `size` per interval.
    Bucket,
    /// `size` per interval, evenly spaced, bursts of `burst`.
    Leaky,
}

/// A named limit, shared by every process that uses the same name and namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limiter {
    pub(crate) name: String,
    pub(crate) kind: LimitKind,
    pub(crate) size: u32,
    #[serde(with = "millis")]
    pub(crate) interval: Duration,
    #[serde(with = "millis")]
    pub(crate) lease: Duration,
    pub(crate) burst: u32,
    #[serde(with = "millis")]
    pub(crate) wait: Duration,
    #[serde(with = "millis")]
    pub(crate) max_snooze: Duration,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Limiter {
    fn new(name: impl Into<String>, kind: LimitKind, size: u32, interval: Duration) -> Limiter {
        Limiter {
            name: name.into(),
            kind,
            size: size.max(1),
            interval: interval.clamp(Duration::from_millis(1), LONGEST_INTERVAL),
            lease: DEFAULT_LEASE,
            burst: 1,
            wait: Duration::ZERO,
            max_snooze: DEFAULT_MAX_SNOOZE,
        }
    }

    /// At most `size` holders at once (a size of 0 counts as 1).
    pub fn concurrent(name: impl Into<String>, size: u32) -> Limiter {
        Limiter::new(name, LimitKind::Concurrent, size, Duration::ZERO)
    }

    /// At most `size` per `interval`, in windows aligned to it (a minute's window starts on
    /// the minute).
    pub fn window(name: impl Into<String>, size: u32, interval: Duration) -> Limiter {
        Limiter::new(name, LimitKind::Window, size, interval)
    }

    /// At most `size` in any `interval`.
    pub fn sliding_window(name: impl Into<String>, size: u32, interval: Duration) -> Limiter {
        Limiter::new(name, LimitKind::SlidingWindow, size, interval)
    }

    /// A token bucket: bursts of up to `size`, refilled at `size` per `interval`.
    pub fn bucket(name: impl Into<String>, size: u32, interval: Duration) -> Limiter {
        Limiter::new(name, LimitKind::Bucket, size, interval)
    }

    /// A leaky bucket: `size` per `interval`, one every `interval / size`, with bursts of
    /// [`Limiter::burst`] (1 unless set).
    pub fn leaky(name: impl Into<String>, size: u32, interval: Duration) -> Limiter {
        Limiter::new(name, LimitKind::Leaky, size, interval)
    }

    /// How long a concurrent lease lives without renewal (30 s unless set, at most a day):
    /// how long the places of a killed process stay taken. Holders renew every third of it.
    pub fn lease(mut self, lease: Duration) -> Limiter {
        self.lease = lease.clamp(Duration::from_millis(100), LONGEST_LEASE);
        self
    }

    /// A leaky bucket's burst: how many may pass at once after a quiet spell.
    pub fn burst(mut self, burst: u32) -> Limiter {
        self.burst = burst.clamp(1, self.size);
        self
    }

    /// How long to wait in place for room before snoozing the job (0 unless set, at most an
    /// hour: a snoozed job frees its worker for others).
    pub fn wait(mut self, wait: Duration) -> Limiter {
        self.wait = wait.min(LONGEST_WAIT);
        self
    }

    /// How long a job may keep being snoozed for this limit before it fails with
    /// `Psychiq::OverLimit` (an hour unless set, at most a year). The time counts from the
    /// job's first snooze since it last failed (`snoozed_at`), whatever snoozed it.
    pub fn max_snooze(mut self, max_snooze: Duration) -> Limiter {
        self.max_snooze = max_snooze.min(LONGEST_SNOOZING);
        self
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it limits.
    pub fn kind(&self) -> LimitKind {
        self.kind
    }

    /// Its size (holders at once, or grants per interval).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Its interval (zero for a concurrent limiter).
    pub fn interval(&self) -> Duration {
        self.interval
    }
}
