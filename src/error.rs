//! The library's error type: every variant says what went wrong and what to do next.

/// What can go wrong talking to Redis or building a job.
///
/// Its `Debug` form is its `Display` form, so `fn main() -> psychiq::Result<()>` prints a
/// sentence that says what to do, not a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis could not be reached or answered with an error.
    #[error(
        "Redis at {address}: {source}. {}",
        crate::store::errors::explain(source)
    )]
    Redis {
        /// Where we tried to talk to (password hidden).
        address: String,
        /// What redis-rs reported.
        #[source]
        source: redis::RedisError,
    },
    /// A Redis URL or address that cannot be used.
    #[error(
        "invalid Redis address {address:?}: {reason}. Use redis://[user:password@]host:port/db or rediss:// for TLS"
    )]
    InvalidAddress {
        /// The address as given (password hidden).
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// Job arguments or options that cannot be written as a Sidekiq payload.
    #[error("cannot build the job payload: {0}")]
    Payload(String),
    /// A client middleware refused the push; nothing was written. (`Client::try_push` gives
    /// a refusal as a value instead.)
    #[error("not pushed: {reason}")]
    NotPushed {
        /// Why the middleware refused it.
        reason: String,
    },
    /// Test mode (`psychiq::testing::inline`): the job, performed at once, failed.
    #[error("job {jid} failed: {error}")]
    JobFailed {
        /// The failed job's jid.
        jid: String,
        /// Its error.
        error: Box<crate::JobError>,
    },
    /// The job was cancelled before it could give a result.
    #[error("job {jid} was cancelled")]
    Cancelled {
        /// The cancelled job's jid.
        jid: String,
    },
    /// Waiting for a job's result took longer than allowed; the job goes on.
    #[error(
        "gave up waiting for job {jid} (still {state}); it goes on, wait again with client.handle(jid)"
    )]
    WaitTimedOut {
        /// The job's jid.
        jid: String,
        /// Its state when the wait ended.
        state: String,
    },
    /// A setting that cannot be used (a cron expression, a time zone, a limiter's size); the
    /// message says which and how to write it.
    #[error("{0}")]
    Config(String),
    /// What was asked for does not exist (a periodic entry, a limiter); the message says
    /// how to list what does.
    #[error("{0}")]
    NotFound(String),
    /// A command failed for a reason not tied to one address (e.g. a transaction aborted).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Whether waiting may cure it (Redis unreachable, restarting, failing over).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Error::Redis { source, .. } if crate::store::errors::waiting_may_cure(source))
    }

    /// What the command line adds to this error when it ends the program: the flags that
    /// set what went wrong, and for a Redis never reached, how to get one.
    #[cfg(feature = "cli")]
    pub(crate) fn command_line_hint(&self) -> &'static str {
        let Error::Redis { source, .. } = self else {
            return "";
        };
        use crate::store::errors::Addressing;
        match crate::store::errors::addressing(source) {
            Some(Addressing::Unreachable) => {
                " (the address comes from --redis-url / REDIS_URL or -o/-p/-d). No Redis yet? \
                 `sudo apt-get install redis-server` (Debian, Ubuntu), `brew install redis && \
                 brew services start redis` (macOS) or `docker run -d -p 6379:6379 redis`"
            }
            Some(Addressing::Login) => " (the user and password come from --redis-url / REDIS_URL)",
            Some(Addressing::Tls) => {
                " (the CA comes from --tls-ca, a client certificate from --tls-cert and --tls-key)"
            }
            None => "",
        }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
