//! Orphan recovery: putting back the jobs of processes that died while running them.
//!
//! Every process lists its identity in the `inprogress` set. On each beat, a live process
//! looks at the others: one whose heartbeat hash has expired (60 s without a beat), or that
//! is provably gone (same hostname, pid no longer alive), is an orphan. Under a lock
//! (`SET recovering:IDENTITY NX EX 60`, so two processes never recover one store), its
//! in-progress jobs go back to the front of their queues, each moved in a transaction with
//! its removal. Each recovery is counted in the payload (`recovery_count`); a job recovered
//! for the third time has now taken three processes down with it and goes to the dead set
//! instead, so a poison job cannot take every server down in turn forever.

use std::sync::LazyLock;

use crate::store::connection::Connection;
use crate::store::scripts::RECOVER;
use crate::store::scripts::RECOVERY_UNLOCK;
use redis::{AsyncCommands, Script};
use serde_json::Value;

use crate::job::payload::{self, Rewrite};
use crate::server::retry;
use crate::store::keys::{Keys, glob_escape};

/// Recoveries after which a job is considered poison and goes to the dead set.
pub const MAX_RECOVERIES: u64 = 3;

/// Recovers the jobs of every dead process but `me`; returns how many jobs moved.
///
/// `machine` identifies this machine and pid namespace (see `heartbeat::machine_id`); a
/// process is provably gone only if it wrote the same one and its pid no longer exists.
/// A failure with one owner is logged and the others are still recovered; the error is
/// returned only when the list of owners itself cannot be read.
pub(crate) async fn recover_orphans(
    conn: &mut Connection,
    keys: &Keys,
    me: &str,
    machine: &str,
) -> redis::RedisResult<usize> {
    let owners: Vec<Vec<u8>> = conn.smembers(keys.inprogress_owners()).await?;
    let mut moved = 0;
    for owner in owners
        .iter()
        .filter(|owner| owner.as_slice() != me.as_bytes())
    {
        let Ok(owner) = std::str::from_utf8(owner) else {
            // No Psychiq process has such an identity: someone wrote it by hand.
            tracing::warn!(
                owner = %crate::job::text::escape(owner),
                "an in-progress owner whose identity is not UTF-8 is not a Psychiq process; left alone"
            );
            continue;
        };
        match recover_if_dead(conn, keys, me, machine, owner).await {
            Ok(count) => moved += count,
            Err(e) => tracing::warn!(
                owner,
                error = %e,
                "could not recover this process's jobs; the others go on, and it is tried again next beat"
            ),
        }
    }
    Ok(moved)
}

/// Recovers `owner`'s jobs if it is dead, under the recovery lock.
async fn recover_if_dead(
    conn: &mut Connection,
    keys: &Keys,
    me: &str,
    machine: &str,
    owner: &str,
) -> redis::RedisResult<usize> {
    {
        let (beating, their_machine): (bool, Option<Vec<u8>>) = redis::pipe()
            .exists(keys.key(owner))
            .hget(keys.key(owner), "machine")
            .query_async(conn)
            .await?;
        let gone = beating
            && !machine.is_empty()
            && their_machine.as_deref() == Some(machine.as_bytes())
            && pid_is_gone(owner);
        if beating && !gone {
            return Ok(0);
        }
        let lock = keys.key(&format!("recovering:{owner}"));
        let token = format!("{me}:{}", payload::new_jid());
        let acquired: Option<String> = redis::cmd("SET") // "OK", or nil when taken
            .arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async(conn)
            .await?;
        if acquired.is_none() {
            return Ok(0); // another process is on it
        }
        let result = recover_owner(conn, keys, owner, gone).await;
        static UNLOCK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECOVERY_UNLOCK));
        let _: redis::RedisResult<i64> = UNLOCK_SCRIPT
            .key(&lock)
            .arg(&token)
            .invoke_async(conn)
            .await;
        result
    }
}

/// `owner`'s in-progress stores (hashes, or an earlier Psychiq's lists), as (key, queue
/// name). Keys are bytes: a store whose queue name is not UTF-8 is found and recovered too.
///
/// In Sidekiq's layout they are found with SCAN (1,000 keys a step); in the cluster
/// layout, where a SCAN sees one node, by looking for the owner's store of each known queue.
pub(crate) async fn owner_stores(
    conn: &mut Connection,
    keys: &Keys,
    owner: &str,
) -> redis::RedisResult<Vec<(Vec<u8>, Vec<u8>)>> {
    if keys.is_cluster() {
        let queues: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys.queues())
            .query_async(conn)
            .await?;
        let mut pipe = redis::pipe();
        for queue in &queues {
            pipe.exists(keys.inprogress(owner, queue));
        }
        let found: Vec<bool> = if queues.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(conn).await?
        };
        return Ok(queues
            .into_iter()
            .zip(found)
            .filter(|(_, found)| *found)
            .map(|(queue, _)| {
                (
                    keys.inprogress(owner, &queue).into_bytes(),
                    queue.into_bytes(),
                )
            })
            .collect());
    }
    let prefix = keys.inprogress(owner, "");
    let stores = scan(conn, &prefix).await?;
    Ok(stores
        .into_iter()
        .filter_map(|store| {
            let queue = store.get(prefix.len()..)?.to_vec();
            Some((store, queue))
        })
        .collect())
}

/// The keys that start with `prefix`, found with SCAN (1,000 keys a step).
async fn scan(conn: &mut Connection, prefix: &str) -> redis::RedisResult<Vec<Vec<u8>>> {
    let pattern = format!("{}*", glob_escape(prefix));
    let mut stores = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await?;
        stores.extend(keys);
        if next == 0 {
            return Ok(stores);
        }
        cursor = next;
    }
}

async fn recover_owner(
    conn: &mut Connection,
    keys: &Keys,
    owner: &str,
    gone: bool,
) -> redis::RedisResult<usize> {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECOVER));
    let mut moved = 0;
    for (store, name) in owner_stores(conn, keys, owner).await? {
        let queue_key = keys.raw_queue(&name);
        let queue = crate::job::text::escape(&name);
        let queue = queue.as_ref();
        let jobs = held_jobs(conn, &store).await?;
        if jobs.is_empty() {
            continue;
        }
        let now = crate::clock::now_secs();
        // Poison jobs of batches die for their batch too (after the move; counting is
        // idempotent, so a repeat after a crash changes nothing).
        let mut farewells = redis::pipe();
        // Tracked jobs' status says "enqueued" before they are (a server may start them at
        // once, and its "running" must come after).
        let mut waiting = redis::pipe();
        let mut invocation = SCRIPT.prepare_invoke();
        invocation
            .key(&store)
            .key(&queue_key)
            .key(keys.dead_of(&String::from_utf8_lossy(&name)));
        if !keys.is_cluster() {
            invocation.key(keys.queues());
        }
        invocation
            .arg(&name)
            .arg(payload::timestamp_text(now))
            .arg(payload::timestamp_text(now - retry::DEAD_TIMEOUT_SECS));
        for (handle, raw) in &jobs {
            match bump(raw, now) {
                Bumped::Requeue(job, jid) => {
                    tracing::warn!(jid, queue, owner, "recovered a job from a dead process");
                    if let Some(retention) = std::str::from_utf8(&job)
                        .ok()
                        .and_then(crate::job::status::retention_in)
                    {
                        crate::job::status::waiting(&mut waiting, keys, &jid, None, retention);
                    }
                    invocation.arg(handle).arg(job).arg("queue");
                }
                Bumped::Poison(job, jid) => {
                    tracing::error!(
                        jid,
                        queue,
                        owner,
                        "job recovered {MAX_RECOVERIES} times from crashed processes: moved to the dead set"
                    );
                    // Dead for good: the same farewell as any death (the cluster layout
                    // counts no batches).
                    crate::server::departure::farewell(
                        &mut farewells,
                        keys,
                        &job,
                        now,
                        !keys.is_cluster(),
                        &crate::job::status::End::Dead {
                            error: "Psychiq::Poison: recovered too often from crashed processes",
                        },
                    );
                    invocation.arg(handle).arg(job).arg("dead");
                }
            }
        }
        if waiting.cmd_iter().next().is_some() {
            waiting.query_async::<()>(conn).await?;
        }
        let count: usize = invocation.invoke_async(conn).await?;
        moved += count;
        if farewells.cmd_iter().next().is_some() {
            farewells.query_async::<()>(conn).await?;
        }
    }
    if gone {
        // Its heartbeat may still be there for up to a minute; it is not running.
        let id = keys.key(owner);
        let () = redis::pipe()
            .srem(keys.key("processes"), owner)
            .ignore()
            .del(&[id.clone(), format!("{id}:work"), format!("{id}:workers")][..])
            .ignore()
            .query_async(conn)
            .await?;
    }
    // Only if nothing is left: a store that appeared meanwhile keeps its owner listed.
    if owner_stores(conn, keys, owner).await?.is_empty() {
        let _: () = conn.srem(keys.inprogress_owners(), owner).await?;
    }
    Ok(moved)
}

/// A dead owner's jobs in one in-progress store, as (what removes it, payload): the slot
/// and payload of a hash, oldest last so it is pushed last and runs first; or each payload
/// twice for a list (an earlier Psychiq's), in list order.
async fn held_jobs(
    conn: &mut Connection,
    store: &[u8],
) -> redis::RedisResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let kind: String = redis::cmd("TYPE").arg(store).query_async(conn).await?;
    if kind == "list" {
        let jobs: Vec<Vec<u8>> = conn.lrange(store, 0, -1).await?;
        return Ok(jobs.into_iter().map(|raw| (raw.clone(), raw)).collect());
    }
    let mut jobs: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(store).await?;
    let slot = |field: &[u8]| {
        std::str::from_utf8(field)
            .ok()
            .and_then(|f| f.parse::<u64>().ok())
    };
    jobs.sort_unstable_by_key(|(field, _)| std::cmp::Reverse(slot(field)));
    Ok(jobs)
}

enum Bumped {
    Requeue(Vec<u8>, String),
    Poison(Vec<u8>, String),
}

/// Counts one more recovery in the payload; poison after [`MAX_RECOVERIES`].
fn bump(raw: &[u8], now: f64) -> Bumped {
    let Some(mut job) = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| Rewrite::parse(text).ok())
    else {
        // Unreadable (not JSON, or not UTF-8): put it back as it is; a server moves it to
        // the dead set with the reason.
        return Bumped::Requeue(raw.to_vec(), "?".to_string());
    };
    let jid = job
        .get("jid")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let count = job
        .get("recovery_count")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        + 1;
    job.insert("recovery_count".into(), Value::from(count));
    if count < MAX_RECOVERIES {
        return Bumped::Requeue(job.to_json().into_bytes(), jid);
    }
    job.insert("error_class".into(), Value::from("Psychiq::ProcessCrashed"));
    job.insert(
        "error_message".into(),
        Value::from(format!(
            "recovered {count} times from crashed processes: every process that ran it died, so it was moved to the dead set to keep it from taking more servers down"
        )),
    );
    if !job.contains_key("failed_at") {
        job.insert("failed_at".into(), payload::timestamp_value(now));
    } else {
        job.insert("retried_at".into(), payload::timestamp_value(now));
    }
    job.entry("retry_count").or_insert(Value::from(0));
    Bumped::Poison(job.to_json().into_bytes(), jid)
}

/// Whether the pid in `identity` (`host:pid:nonce`) no longer exists here (Linux only; the
/// caller has checked that it ran on this machine, in this pid namespace).
fn pid_is_gone(identity: &str) -> bool {
    let mut parts = identity.rsplitn(3, ':');
    let (_nonce, Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    cfg!(target_os = "linux")
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_third_recovery_is_poison() {
        let raw = r#"{"class":"X","args":[],"jid":"j","tags":["t"]}"#;
        let Bumped::Requeue(once, _) = bump(raw.as_bytes(), 1.0) else {
            panic!()
        };
        let Bumped::Requeue(twice, _) = bump(&once, 1.0) else {
            panic!()
        };
        let Bumped::Poison(dead, jid) = bump(&twice, 1.0) else {
            panic!()
        };
        let dead: crate::job::payload::JobMap = serde_json::from_slice(&dead).unwrap();
        assert_eq!(jid, "j");
        assert_eq!(dead["recovery_count"], 3);
        assert_eq!(dead["tags"], serde_json::json!(["t"]));
        assert!(
            dead["error_message"]
                .as_str()
                .unwrap()
                .contains("recovered 3 times from crashed processes")
        );
    }

    #[test]
    fn only_dead_pids_are_gone() {
        assert!(!pid_is_gone(&format!("host:{}:abc", std::process::id())));
        assert_eq!(
            pid_is_gone("host:4000000000:abc"),
            cfg!(target_os = "linux")
        );
        assert!(!pid_is_gone("no-pid"));
        assert_eq!(glob_escape("a*b[c]"), r"a\*b\[c\]");
    }
}
