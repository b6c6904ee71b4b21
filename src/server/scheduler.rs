//! The poller: moves due jobs from the `retry` and `schedule` sets to their queues.
//!
//! One Lua script takes up to 100 due jobs from a set, stamps `enqueued_at`, and pushes
//! each to its queue, all atomically, so any number of servers can poll the same sets and
//! no job is enqueued twice or lost between the pop and the push. A member that is not
//! JSON is moved to the dead set with an error instead of being dropped. Members are bytes:
//! one that is not UTF-8 is moved like any other, and the server that takes it moves it to
//! the dead set with its exact bytes, so it never stops the others.
//!
//! Servers poll every `poll_interval` (2 s by default) with jitter, so a due job starts
//! within about two seconds (Sidekiq's default is 2.5–7.5 s): that loop is the poller plugin
//! ([`crate::server::poller`]).

use std::sync::LazyLock;

use crate::store::connection::Connection;
use crate::store::scripts::ENQUEUE_DUE;
use redis::Script;

use crate::job::payload;
use crate::store::keys::Keys;

/// Jobs moved per script call; the poller calls again while a call moves this many.
const BATCH: usize = 100;

/// Moves every due job of the `retry` and `schedule` sets to its queue; returns how many.
///
/// Safe to call from many processes at once: each job is moved exactly once. In the
/// cluster layout every known queue has its own two sets, looked at side by side.
pub async fn enqueue_due(conn: &mut Connection, keys: &Keys) -> redis::RedisResult<usize> {
    if !keys.is_cluster() {
        return enqueue_due_from(conn, keys, &Sets::shared(keys)).await;
    }
    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.queues())
        .query_async(conn)
        .await?;
    let moves = queues.iter().map(|queue| {
        let mut conn = conn.clone();
        let sets = Sets::of_queue(keys, queue);
        async move { enqueue_due_from(&mut conn, keys, &sets).await }
    });
    let moved = futures_util::future::try_join_all(moves).await?;
    Ok(moved.into_iter().sum())
}

/// The sets one script call reads, and where their jobs go.
struct Sets {
    retry: String,
    schedule: String,
    /// Cluster layout: the queue they feed and its dead set.
    own: Option<(String, String)>,
}

impl Sets {
    fn shared(keys: &Keys) -> Sets {
        Sets {
            retry: keys.retry(),
            schedule: keys.schedule(),
            own: None,
        }
    }

    fn of_queue(keys: &Keys, queue: &str) -> Sets {
        Sets {
            retry: keys.retry_of(queue),
            schedule: keys.schedule_of(queue),
            own: Some((keys.queue(queue), keys.dead_of(queue))),
        }
    }
}

async fn enqueue_due_from(
    conn: &mut Connection,
    keys: &Keys,
    sets: &Sets,
) -> redis::RedisResult<usize> {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_DUE));
    let script = &*SCRIPT;
    // A cheap look first (the earliest score of each set), so an idle poll costs two
    // commands and the script runs only when something is due.
    let now = crate::clock::now_secs();
    type First = Vec<(Vec<u8>, f64)>; // the lowest-scored member (any bytes), if any
    let (retry_first, schedule_first): (First, First) = redis::pipe()
        .cmd("ZRANGE")
        .arg(&sets.retry)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .cmd("ZRANGE")
        .arg(&sets.schedule)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    let due = |first: &[(Vec<u8>, f64)]| first.first().is_some_and(|(_, score)| *score <= now);
    if !due(&retry_first) && !due(&schedule_first) {
        return Ok(0);
    }
    let mut moved = 0;
    // One call looks at both sets; call again while a set may hold more due jobs.
    loop {
        let now = crate::clock::now_secs();
        let mut invocation = script.key(&sets.retry);
        invocation.key(&sets.schedule);
        if let Some((queue, dead)) = &sets.own {
            invocation.key(queue).key(dead);
        }
        let (total, most): (usize, usize) = invocation
            .arg(payload::timestamp_text(now))
            .arg(keys.prefix())
            .arg(BATCH)
            .arg(payload::timestamp_text(now))
            .invoke_async(conn)
            .await?;
        moved += total;
        if most < BATCH {
            break;
        }
    }
    Ok(moved)
}
