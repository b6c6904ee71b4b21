//! The poller: moves due jobs from the `retry` and `schedule` sets to their queues.
//!
//! One Lua script takes up to 100 due jobs from a set, stamps `enqueued_at`, and pushes
//! each to its queue, all atomically, so any number of servers can poll the same sets and
//! no job is enqueued twice or lost between the pop and the push. A member that is not
//! JSON is moved to the dead set with an error instead of being dropped.
//!
//! Servers poll every `poll_interval` (1 s by default) with jitter, so a due job starts
//! within about a second (Sidekiq's default is 2.5–7.5 s).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use crate::connection::Outage;
use crate::keys::Keys;
use crate::payload;

/// Jobs moved per script call; the poller calls again while a call moves this many.
const BATCH: usize = 100;

const ENQUEUE_DUE: &str = r#"
-- KEYS[1]: the sorted set; ARGV: now (score), key prefix, batch size, enqueued_at text
local set, now, prefix, batch, stamp = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local jobs = redis.call('zrangebyscore', set, '-inf', now, 'LIMIT', 0, batch)
for _, job in ipairs(jobs) do
  redis.call('zrem', set, job)
  local ok, decoded = pcall(cjson.decode, job)
  if ok and type(decoded) == 'table' and type(decoded['class']) == 'string' then
    local queue = decoded['queue']
    if type(queue) ~= 'string' or queue == '' then queue = 'default' end
    local stamped = job
    if decoded['enqueued_at'] == nil then
      local brace = string.find(job, '}%s*$')
      if brace then
        stamped = string.sub(job, 1, brace - 1) .. ',"enqueued_at":' .. stamp .. string.sub(job, brace)
      end
    else
      local replaced, count = string.gsub(job, '"enqueued_at":%-?[%d%.eE%+%-]+', '"enqueued_at":' .. stamp)
      if count == 1 then stamped = replaced end
    end
    redis.call('sadd', prefix .. 'queues', queue)
    redis.call('lpush', prefix .. 'queue:' .. queue, stamped)
  elseif ok and type(decoded) == 'table' then
    -- JSON without a class: let a server report it (it goes to the dead set with a reason)
    redis.call('lpush', prefix .. 'queue:default', job)
  else
    local reason = 'a member of ' .. set .. ' is not JSON; the original is the only argument'
    local dead = '{"retry":false,"queue":"default","class":"Psychiq::InvalidPayload","args":'
      .. cjson.encode({ job }) .. ',"jid":"000000000000000000000000","error_message":'
      .. cjson.encode(reason) .. ',"error_class":"Psychiq::InvalidPayload","failed_at":'
      .. now .. ',"retry_count":0}'
    redis.call('zadd', prefix .. 'dead', now, dead)
  end
end
return #jobs
"#;

/// Moves every due job of the `retry` and `schedule` sets to its queue; returns how many.
///
/// Safe to call from many processes at once: each job is moved exactly once.
pub async fn enqueue_due(conn: &mut ConnectionManager, keys: &Keys) -> redis::RedisResult<usize> {
    static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_DUE));
    let script = &*SCRIPT;
    let mut moved = 0;
    for set in [keys.retry(), keys.schedule()] {
        loop {
            let now = payload::now_secs();
            let count: usize = script
                .key(&set)
                .arg(payload::timestamp_text(now))
                .arg(keys.prefix())
                .arg(BATCH)
                .arg(payload::timestamp_text(now))
                .invoke_async(conn)
                .await?;
            moved += count;
            if count < BATCH {
                break;
            }
        }
    }
    Ok(moved)
}

/// Polls until `stop` turns true.
pub(crate) async fn run(
    mut conn: ConnectionManager,
    keys: Keys,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut outage = Outage::new("scheduler");
    while !*stop.borrow() {
        match enqueue_due(&mut conn, &keys).await {
            Ok(moved) => {
                outage.ok();
                if moved > 0 {
                    tracing::debug!(moved, "scheduler: enqueued due jobs");
                }
            }
            Err(e) => outage.failed(&e),
        }
        // Uniform in [0.5, 1.0) × interval, so servers started together spread out.
        let pause = interval.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}
