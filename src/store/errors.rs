//! What a Redis error means: whether waiting may cure it, whether the cure is in how
//! Redis is addressed, and one sentence for logs and the command line.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The server's error code (`OOM`, `BUSY`, ...), also for a pipeline whose commands failed.
pub(crate) fn error_code(e: &RedisError) -> Option<String> {
    if let Some(code) = e.code() {
        return Some(code.to_string());
    }
    let failures = e.clone().into_server_errors()?;
    failures.first().map(|(_, first)| first.code().to_string())
}

/// Whether Redis refused the login (wrong password, unknown or disabled ACL user, or a
/// password now required): the connection must log in anew.
pub(crate) fn login_refused(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(error_code(e).as_deref(), Some("NOAUTH" | "WRONGPASS"))
}

/// Whether an error may mean a failover moved the master (behind Sentinel, the connection
/// then asks the sentinels again): the old one is unreachable, or has become a replica.
pub(crate) fn master_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// The failures whose cure is in how Redis is addressed, which the command line names its
/// own flags for (see `Error::command_line_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addressing {
    /// No Redis answers at the address.
    Unreachable,
    /// The user or password is refused.
    Login,
    /// The TLS handshake failed.
    Tls,
}

/// Which [`Addressing`] failure `e` is, if any.
pub(crate) fn addressing(e: &RedisError) -> Option<Addressing> {
    if login_refused(e) {
        return Some(Addressing::Login);
    }
    let text = e.to_string().to_lowercase();
    if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        return Some(Addressing::Tls);
    }
    let dropped = !e.is_timeout() && (e.is_connection_dropped() || e.is_connection_refusal());
    (e.kind() == ErrorKind::Io || (dropped && error_code(e).is_none()))
        .then_some(Addressing::Unreachable)
}

/// What a Redis error means and what to do about it, in one sentence for logs and the CLI.
pub fn explain(e: &RedisError) -> &'static str {
    match addressing(e) {
        Some(Addressing::Login) => {
            return "Redis refused the login. Check the user and password in the Redis URL against Redis's requirepass or ACL (a server logs in again until it is accepted)";
        }
        Some(Addressing::Tls) => {
            return "The TLS handshake failed. Check that the server's certificate is signed by the CA given (RedisConfig::tls_ca_file) and names the host in the URL, and, if Redis requires client certificates (tls-auth-clients), give one (RedisConfig::tls_client_cert)";
        }
        Some(Addressing::Unreachable) => {
            return "Cannot reach Redis. Check that redis-server is running and the address is right";
        }
        None => {}
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => {
            "The Redis ACL user lacks a permission Psychiq needs. Grant it its keys (~* or ~NAMESPACE:*), channels (&*) and commands (+@all, or +@read +@write +@list +@sortedset +@set +@hash +@string +@scripting +@connection +@keyspace)"
        }
        ErrorKind::Server(ServerErrorKind::ReadOnly) => {
            "This Redis is a read-only replica (a failover demoted it?). Point --redis-url at the master"
        }
        ErrorKind::Server(ServerErrorKind::CrossSlot | ServerErrorKind::Moved) => {
            "This Redis is a Redis Cluster: address it as redis+cluster://host:port[,host:port...], which uses the cluster layout of keys (--layout cluster)"
        }
        ErrorKind::Server(ServerErrorKind::BusyLoading) => {
            "Redis is loading its data set after a restart. Wait until it is ready"
        }
        ErrorKind::Server(ServerErrorKind::NoScript) => {
            "Redis lost its script cache (a restart or SCRIPT FLUSH). The script is sent again"
        }
        ErrorKind::Server(
            ServerErrorKind::MasterDown | ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain,
        ) => "Redis's master is down or its cluster is not serving. Wait for the failover",
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            "Redis answered with data of an unexpected shape (a key of the wrong type, or bytes that are not UTF-8 where text is needed)"
        }
        _ => match error_code(e).as_deref() {
            Some("OOM") => {
                "Redis is out of memory (maxmemory reached). Free memory or raise maxmemory"
            }
            Some("BUSY") => {
                "Redis is busy running a long script. Wait, or stop it with SCRIPT KILL / FUNCTION KILL"
            }
            Some("MISCONF") => {
                "Redis cannot save to disk and refuses writes (MISCONF). Fix its disk or its save settings"
            }
            Some("WRONGTYPE") => {
                "A Redis key Psychiq uses holds the wrong type of value (did another program write it?)"
            }
            _ if e.is_timeout() => {
                "Redis did not answer in time (overloaded, or the network is down)"
            }
            _ => "Redis answered with an error",
        },
    }
}

/// Whether waiting may cure `e`: Redis is unreachable, restarting, failing over, out of
/// memory or busy, or refuses a login an operator can fix. Anything else (a key of the
/// wrong type, a script error, a transaction refused) comes back the same every time, so
/// whoever meets it must fail, not loop.
pub(crate) fn waiting_may_cure(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    if login_refused(e) {
        return true;
    }
    let transient = |code: &str| {
        matches!(
            code,
            "TRYAGAIN"
                | "MASTERDOWN"
                | "CLUSTERDOWN"
                | "LOADING"
                | "READONLY"
                | "MOVED"
                | "ASK"
                | "OOM"
                | "BUSY"
                | "MISCONF"
                | "NOPERM"
                | "NOREPLICAS"
        )
    };
    // Redis full of clients answers a new connection with a plain `ERR`.
    let passes = |failure: &redis::ServerError| {
        transient(failure.code())
            || failure
                .details()
                .is_some_and(|d| d.contains("max number of clients"))
    };
    match e.clone().into_server_errors() {
        // Every failed command of a pipeline must be one that passes.
        Some(failures) if !failures.is_empty() => {
            failures.iter().all(|(_, failure)| passes(failure))
        }
        _ => matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
        ),
    }
}

#[cfg(test)]
mod examples {
    // Usage examples of internal helpers (doc examples before these became crate-private).
    #[test]
    fn explain_example() {
        let e = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "WRONGPASS"));
        assert!(crate::store::errors::explain(&e).contains("refused the login"));
    }
}
