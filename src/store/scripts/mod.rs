//! Every Lua script Psychiq runs, each a `.lua` file beside this one whose header says
//! what it does and which KEYS and ARGV it takes. A script is one atomic step in Redis:
//! these are where a job's moves are all-or-nothing. Callers compile each once
//! (`redis::Script` keeps its SHA and sends the source again after a `SCRIPT FLUSH`).

/// `batch_outcome.lua`: Counts one outcome of job ARGV[3] in batch ARGV[2] (ARGV[1] the
/// namespace prefix): kind ARGV[4] is 'success', 'failure' or 'death'.
pub(crate) const BATCH_OUTCOME: &str = include_str!("batch_outcome.lua");
/// The TTL `batch_outcome.lua` gives a batch that succeeded (unless it has its own).
pub(crate) const BATCH_DONE_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// The TTL `batch_outcome.lua` gives an unfinished batch each time it is touched.
pub(crate) const BATCH_IDLE_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// `cancel_mark.lua`: Marks job ARGV[1] cancelled in the sorted set KEYS[1] at Redis's time,
/// forgetting marks older than ARGV[2] seconds.
#[cfg(feature = "api")]
pub(crate) const CANCEL_MARK: &str = include_str!("cancel_mark.lua");
/// `enqueue_due.lua`: KEYS: the sorted sets (retry, schedule), then in the cluster layout
/// the queue they feed and its dead set.
pub(crate) const ENQUEUE_DUE: &str = include_str!("enqueue_due.lua");
/// `fetch.lua`: Moves up to ARGV[1] jobs, queue by queue in the given order, from each
/// queue (KEYS[2i]) into its in-progress hash (KEYS[2i+1]) under the fields ARGV[2],
/// ARGV[2] + 1, …, in the order returned.
pub(crate) const FETCH: &str = concat!(include_str!("group_common.lua"), include_str!("fetch.lua"));
/// `group_release.lua`: A grouped job's run ended (ARGV: prefix, queue, group, jid), or its
/// lease is renewed (ARGV[5] `renew`).
#[cfg(feature = "server")]
pub(crate) const GROUP_RELEASE: &str = concat!(
    include_str!("group_common.lua"),
    include_str!("group_release.lua")
);
/// `group_admin.lua`: Pauses, resumes or sets the limit of a group (ARGV: prefix, queue,
/// group, verb, limit).
#[cfg(feature = "api")]
pub(crate) const GROUP_ADMIN: &str = concat!(
    include_str!("group_common.lua"),
    include_str!("group_admin.lua")
);
/// `spool_replay.lua`: Replays one buffered write once (ARGV: its marker key, the marker's
/// life, then each command as its length and its words); 0 when it had landed already.
pub(crate) const SPOOL_REPLAY: &str = include_str!("spool_replay.lua");
/// `iteration_save.lua`: Saves cursor ARGV[1] in KEYS[1] (and the time ARGV[2] in the index
/// KEYS[2] under jid ARGV[3]).
pub(crate) const ITERATION_SAVE: &str = include_str!("iteration_save.lua");
/// `kill.lua`: Removes ARGV[1] from KEYS[1] (a list when ARGV[4] is 'list') and, only if it
/// was there, adds ARGV[2] to the dead set KEYS[2] at ARGV[3], trimmed as Sidekiq trims it.
#[cfg(feature = "api")]
pub(crate) const KILL: &str = include_str!("kill.lua");
/// `limit_bucket.lua`: Token and leaky buckets, as GCRA: KEYS[1] the theoretical arrival
/// time (ms).
pub(crate) const LIMIT_BUCKET: &str = include_str!("limit_bucket.lua");
/// `limit_concurrent.lua`: Concurrent: KEYS[1] a sorted set of lease ids scored by expiry
/// (ms).
pub(crate) const LIMIT_CONCURRENT: &str = include_str!("limit_concurrent.lua");
/// `limit_renew.lua`: Renews lease ARGV[2] in KEYS[1] for ARGV[1] ms.
pub(crate) const LIMIT_RENEW: &str = include_str!("limit_renew.lua");
/// `limit_sliding.lua`: Sliding window: KEYS[1] a sorted set of grant times.
pub(crate) const LIMIT_SLIDING: &str = include_str!("limit_sliding.lua");
/// `limit_window.lua`: Fixed window: KEYS[1] a hash {w = window index, n = count}.
pub(crate) const LIMIT_WINDOW: &str = include_str!("limit_window.lua");
/// `move_to_queue.lua`: Removes ARGV[1] from the sorted set KEYS[1] and, only if it was
/// there, pushes ARGV[2] to the queue KEYS[2] (adding ARGV[3] to the queue set KEYS[3], if
/// given: in the cluster layout it is in another slot, and the queue is known already).
#[cfg(feature = "api")]
pub(crate) const MOVE_TO_QUEUE: &str = include_str!("move_to_queue.lua");
/// `periodic_claim.lua`: Claims a periodic entry's tick and pushes its job, unless the entry
/// is paused or the tick was taken already.
#[cfg(feature = "periodic")]
pub(crate) const PERIODIC_CLAIM: &str = include_str!("periodic_claim.lua");
/// `recover.lua`: Moves recovered jobs back, each only if it was still in the dead owner's
/// in-progress store, so two recoverers (say, after a lock expired half-way) never push one
/// job twice.
pub(crate) const RECOVER: &str = include_str!("recover.lua");
/// `recovery_unlock.lua`: Releases a lock only if it still holds our token.
pub(crate) const RECOVERY_UNLOCK: &str = include_str!("recovery_unlock.lua");
/// `requeue.lua`: Pushes jobs back where they are popped next.
pub(crate) const REQUEUE: &str = include_str!("requeue.lua");
/// `unique_push.lua`: Takes the lock KEYS[1] for jid ARGV[1] for ARGV[2] seconds and, only
/// then, writes the job ARGV[3]: to the queue KEYS[3] (naming ARGV[4] in the set KEYS[2])
/// or, with a score ARGV[5], to the schedule KEYS[3].
pub(crate) const UNIQUE_PUSH: &str = include_str!("unique_push.lua");
/// `debounce_push.lua`: Pushes a debounced job (KEYS: its debounce hash, the schedule;
/// ARGV: the job, its jid, its delay, its longest wait), replacing the key's waiting job;
/// returns the jid the job has.
pub(crate) const DEBOUNCE_PUSH: &str = include_str!("debounce_push.lua");
/// `unique_unlock.lua`: Deletes each lock KEYS[i] that still holds ARGV[i] (one taken again
/// by a later push after it expired is not this job's to let go).
pub(crate) const UNIQUE_UNLOCK: &str = include_str!("unique_unlock.lua");
/// `unlock_if_held.lua`: Deletes the lock KEYS[1] if it still names jid ARGV[1] (one taken
/// again by a later push is not this job's to let go).
pub(crate) const UNLOCK_IF_HELD: &str = include_str!("unlock_if_held.lua");
/// `workflow_step.lua`: A workflow step's end (ARGV: prefix, workflow id, step,
/// 'succeeded' or 'dead', result, now, jid), exactly once: records it and starts the
/// children whose parents have all succeeded, or stops, prunes or compensates on a death.
pub(crate) const WORKFLOW_STEP: &str = concat!(
    include_str!("workflow_common.lua"),
    include_str!("workflow_step.lua")
);
/// `workflow_add.lua`: Adds a step to a running workflow (ARGV: prefix, workflow id, step,
/// job without its final '}', queue, parents as a JSON array, now).
#[cfg(feature = "server")]
pub(crate) const WORKFLOW_ADD: &str = concat!(
    include_str!("workflow_common.lua"),
    include_str!("workflow_add.lua")
);
/// `workflow_cancel.lua`: Cancels a workflow (ARGV: prefix, workflow id, now): no step
/// starts another, its waiting steps are skipped; returns the jids of its enqueued steps.
#[cfg(feature = "api")]
pub(crate) const WORKFLOW_CANCEL: &str = concat!(
    include_str!("workflow_common.lua"),
    include_str!("workflow_cancel.lua")
);
/// `workflow_retry.lua`: Retries an ended workflow's dead and skipped steps (ARGV: prefix,
/// workflow id, now); returns the old jids of its dead job steps.
#[cfg(feature = "api")]
pub(crate) const WORKFLOW_RETRY: &str = concat!(
    include_str!("workflow_common.lua"),
    include_str!("workflow_retry.lua")
);
