//! What follows a job that leaves for good, never to run again: it dies for its batch (so the
//! batch can complete and fire its death callback), its unique lock goes (so the same job
//! may be pushed again), and a tracked job's status records how it ended (and wakes whoever
//! waits for it). Written once, here, and called from every path that takes a job away
//! for good: the processor (a job dead or dropped after its last failure, or cancelled) and
//! the API's kill, delete, clear and cancel (the CLI's and the dashboard's buttons). A job
//! that finishes by running (done, discarded, expired) is counted by the server middleware
//! instead (batches and workflows), and its status by the processor.
//!
//! A job without `bid`, `unique_key`, `wf` or `track` costs four substring searches of its
//! payload.

use serde_json::Value;

use crate::job::status::{self, End};
use crate::store::keys::Keys;
use crate::store::scripts::{BATCH_DONE_TTL, BATCH_IDLE_TTL, BATCH_OUTCOME, UNLOCK_IF_HELD};

/// Adds to `pipe` the commands that follow job `payload` leaving for good at `now`, as `end`
/// says; nothing for a job that is in no batch, not unique and not tracked (or is not a
/// readable JSON object). Its
/// death is counted for its batch only where `batches` says batches are counted (not
/// with `--no-batches`, nor in the cluster layout); a lock taken `unique_until: expiry` is
/// left to its TTL, as promised. The commands are `EVAL`s, so they may go inside a
/// transaction; each ignores its reply.
pub(crate) fn farewell(
    pipe: &mut redis::Pipeline,
    keys: &Keys,
    payload: &[u8],
    now: f64,
    batches: bool,
    end: &End<'_>,
) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let (in_batch, unique) = (text.contains("\"bid\""), text.contains("\"unique_key\""));
    let in_workflow = text.contains("\"wf\"");
    if !in_batch && !unique && !in_workflow && !text.contains("\"track\"") {
        return;
    }
    let Ok(Value::Object(job)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let field = |name: &str| job.get(name).and_then(Value::as_str);
    let Some(jid) = field("jid") else {
        return;
    };
    if let Some(bid) = field("bid")
        && batches
    {
        count_death(pipe, keys, bid, jid, now);
    }
    if let Some(unique_key) = field("unique_key")
        && field("unique_until") != Some("expiry")
    {
        pipe.cmd("EVAL")
            .arg(UNLOCK_IF_HELD)
            .arg(1)
            .arg(crate::job::unique::lock_key(keys, unique_key))
            .arg(jid)
            .ignore();
    }
    if let Some(retention) = job.get(status::TRACK_FIELD).and_then(status::retention_of) {
        status::ended(pipe, keys, jid, end, now, retention);
    }
    if in_workflow
        && !keys.is_cluster()
        && let (Some(wid), Some(step)) = (
            field(crate::workflow::WORKFLOW_FIELD),
            field(crate::workflow::STEP_FIELD),
        )
    {
        // The step's death, as the workflow's policy says (stop, or skip its dependents).
        pipe.cmd("EVAL")
            .arg(crate::store::scripts::WORKFLOW_STEP)
            .arg(0)
            .arg(crate::workflow::step_end_args(
                keys,
                wid,
                step,
                "dead",
                &end_text(end),
                jid,
            ))
            .ignore();
    }
}

/// How a job that left ended, in words (a workflow step's error).
fn end_text(end: &End<'_>) -> String {
    match end {
        End::Dead { error } => (*error).to_string(),
        End::Discarded { reason } => format!("discarded: {reason}"),
        End::Cancelled => "cancelled".to_string(),
        End::Succeeded { .. } | End::Retrying { .. } => String::new(),
    }
}

/// Adds to `pipe` (a transaction writing a dead or dropped job) the step that counts job
/// `jid`'s death in batch `bid`, the batch's own counting script: `EVAL`, not `EVALSHA`, as a
/// transaction cannot load a missing script (deaths are rare; the text is a few KB).
fn count_death(pipe: &mut redis::Pipeline, keys: &Keys, bid: &str, jid: &str, now: f64) {
    pipe.cmd("EVAL")
        .arg(BATCH_OUTCOME)
        .arg(0)
        .arg(keys.prefix())
        .arg(bid)
        .arg(jid)
        .arg("death")
        .arg(now)
        .arg(BATCH_DONE_TTL.as_secs())
        .arg(BATCH_IDLE_TTL.as_secs())
        .ignore();
}

/// [`farewell`] for many payloads, in one pipeline.
pub(crate) fn farewells<'a>(
    keys: &Keys,
    payloads: impl IntoIterator<Item = &'a [u8]>,
    now: f64,
    batches: bool,
    end: &End<'_>,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for payload in payloads {
        farewell(&mut pipe, keys, payload, now, batches, end);
    }
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batch_and_unique_jobs_have_a_farewell() {
        let keys = Keys::new("ns");
        let commands = |payload: &str| {
            let mut pipe = redis::pipe();
            let end = End::Dead { error: "E: x" };
            farewell(&mut pipe, &keys, payload.as_bytes(), 1.0, true, &end);
            pipe.cmd_iter().count()
        };
        assert_eq!(commands(r#"{"class":"X","jid":"j","args":[]}"#), 0);
        assert_eq!(
            commands(r#"{"class":"X","jid":"j","args":[],"bid":"b"}"#),
            1
        );
        assert_eq!(
            commands(r#"{"class":"X","jid":"j","args":[],"bid":"b","unique_key":"k"}"#),
            2
        );
        // A lock kept until its TTL stays.
        assert_eq!(
            commands(
                r#"{"class":"X","jid":"j","args":[],"unique_key":"k","unique_until":"expiry"}"#
            ),
            0
        );
        // A tracked job's status records its end (HSET, EXPIRE, and for waiters RPUSH,
        // EXPIRE).
        assert_eq!(
            commands(r#"{"class":"X","jid":"j","args":[],"track":60}"#),
            4
        );
        // Only named in the arguments, or not JSON: nothing.
        assert_eq!(commands(r#"{"class":"X","jid":"j","args":["\"bid\""]}"#), 0);
        assert_eq!(commands(r#"not json "bid""#), 0);
    }
}
