//! Orphan recovery: putting back the jobs of processes that died while running them.
//!
//! Every process lists its identity in the `inprogress` set. On each beat, a live process
//! looks at the others: one whose heartbeat hash has expired (60 s without a beat), or that
//! is provably gone (same hostname, pid no longer alive), is an orphan. Under a lock
//! (`SET recovering:IDENTITY NX EX 60`, so two processes never recover one list), its
//! in-progress jobs go back to the front of their queues, each moved in a transaction with
//! its removal. Each recovery is counted in the payload (`recovery_count`); a job recovered
//! for the third time has now taken three processes down with it and goes to the dead set
//! instead, so a poison job cannot take every server down in turn forever.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde_json::Value;

use crate::keys::Keys;
use crate::payload::{self, JobMap};
use crate::retry;

/// Recoveries after which a job is considered poison and goes to the dead set.
pub const MAX_RECOVERIES: u64 = 3;

/// Recovers the jobs of every dead process but `me`; returns how many jobs moved.
pub(crate) async fn recover_orphans(
    conn: &mut ConnectionManager,
    keys: &Keys,
    me: &str,
) -> redis::RedisResult<usize> {
    let owners: Vec<String> = conn.smembers(keys.inprogress_owners()).await?;
    let mut moved = 0;
    for owner in owners.iter().filter(|owner| *owner != me) {
        let beating: bool = conn.exists(keys.key(owner)).await?;
        let gone = provably_gone(owner);
        if beating && !gone {
            continue;
        }
        let lock = keys.key(&format!("recovering:{owner}"));
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&lock)
            .arg(me)
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async(conn)
            .await?;
        if acquired.is_none() {
            continue; // another process is on it
        }
        let result = recover_owner(conn, keys, owner, gone).await;
        let _: redis::RedisResult<()> = conn.del(&lock).await;
        moved += result?;
    }
    Ok(moved)
}

async fn recover_owner(
    conn: &mut ConnectionManager,
    keys: &Keys,
    owner: &str,
    gone: bool,
) -> redis::RedisResult<usize> {
    let prefix = keys.inprogress(owner, "");
    let lists: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = conn
            .scan_match(format!("{}*", glob_escape(&prefix)))
            .await?;
        let mut lists = Vec::new();
        while let Some(key) = iter.next_item().await {
            lists.push(key?);
        }
        lists
    };
    let mut moved = 0;
    for list in &lists {
        let queue = &list[prefix.len()..];
        let jobs: Vec<String> = conn.lrange(list, 0, -1).await?;
        if jobs.is_empty() {
            continue;
        }
        let now = payload::now_secs();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for raw in &jobs {
            pipe.lrem(list, 1, raw).ignore();
            match bump(raw, now) {
                Bumped::Requeue(job, jid) => {
                    tracing::warn!(jid, queue, owner, "recovered a job from a dead process");
                    pipe.sadd(keys.queues(), queue).ignore();
                    pipe.rpush(keys.queue(queue), job).ignore();
                }
                Bumped::Poison(job, jid) => {
                    tracing::error!(
                        jid,
                        queue,
                        owner,
                        "job recovered {MAX_RECOVERIES} times from crashed processes: moved to the dead set"
                    );
                    retry::add_to_dead(&mut pipe, keys, &job, now);
                }
            }
        }
        let () = pipe.query_async(conn).await?;
        moved += jobs.len();
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
    let _: () = conn.srem(keys.inprogress_owners(), owner).await?;
    Ok(moved)
}

enum Bumped {
    Requeue(String, String),
    Poison(String, String),
}

/// Counts one more recovery in the payload; poison after [`MAX_RECOVERIES`].
fn bump(raw: &str, now: f64) -> Bumped {
    let Ok(mut job) = serde_json::from_str::<JobMap>(raw) else {
        // Unreadable: put it back as it is; a server will move it to the dead set with a reason.
        return Bumped::Requeue(raw.to_string(), "?".to_string());
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
        return Bumped::Requeue(
            serde_json::to_string(&job).expect("a JSON map serialises"),
            jid,
        );
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
    Bumped::Poison(
        serde_json::to_string(&job).expect("a JSON map serialises"),
        jid,
    )
}

/// Whether `identity` (`host:pid:nonce`) is a process on this host that no longer exists.
fn provably_gone(identity: &str) -> bool {
    let mut parts = identity.rsplitn(3, ':');
    let (_nonce, Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == crate::heartbeat::hostname()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn glob_escape(text: &str) -> String {
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
    fn the_third_recovery_is_poison() {
        let raw = r#"{"class":"X","args":[],"jid":"j","tags":["t"]}"#;
        let Bumped::Requeue(once, _) = bump(raw, 1.0) else {
            panic!()
        };
        let Bumped::Requeue(twice, _) = bump(&once, 1.0) else {
            panic!()
        };
        let Bumped::Poison(dead, jid) = bump(&twice, 1.0) else {
            panic!()
        };
        let dead: JobMap = serde_json::from_str(&dead).unwrap();
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
    fn only_dead_local_pids_are_provably_gone() {
        let host = crate::heartbeat::hostname();
        assert!(!provably_gone(&format!(
            "{host}:{}:abc",
            std::process::id()
        )));
        assert!(provably_gone(&format!("{host}:4000000000:abc")));
        assert!(!provably_gone("other-host:4000000000:abc"));
        assert_eq!(glob_escape("a*b[c]"), "a\\*b\\[c\\]");
    }
}
