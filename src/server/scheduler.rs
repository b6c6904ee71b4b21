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
//! ([`crate::server::plugins::poller`]).

use std::sync::LazyLock;

use crate::store::connection::Connection;
use redis::Script;

use crate::job::payload;
use crate::store::keys::Keys;

/// Jobs moved per script call; the poller calls again while a call moves this many.
const BATCH: usize = 100;

const ENQUEUE_DUE: &str = r#"
-- KEYS: the sorted sets (retry, schedule), then in the cluster layout the queue they feed
-- and its dead set; ARGV: now (score), key prefix, batch size per set, enqueued_at text.
-- Returns {jobs moved, the most moved from one set}.
local now, prefix, batch, stamp = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
-- Sidekiq's layout: to the queue each job names. Cluster: to the sets' own queue (a job is
-- only ever put in the sets of the queue it will run in), in the same slot.
local own_queue, own_dead = KEYS[3], KEYS[4]
local function push(queue, job)
  if own_queue then
    redis.call('lpush', own_queue, job)
  else
    redis.call('sadd', prefix .. 'queues', queue)
    redis.call('lpush', prefix .. 'queue:' .. queue, job)
  end
end
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function digit(shift)
      local d = math.floor(n / shift) % 64
      return string.sub(alphabet, d + 1, d + 1)
    end
    out[#out + 1] = digit(262144) .. digit(4096) .. (b and digit(64) or '=') .. (c and digit(1) or '=')
  end
  return table.concat(out)
end
local most, total = 0, 0
for s = 1, 2 do
local set = KEYS[s]
local jobs = redis.call('zrangebyscore', set, '-inf', now, 'LIMIT', 0, batch)
if #jobs > most then most = #jobs end
total = total + #jobs
for _, job in ipairs(jobs) do
  redis.call('zrem', set, job)
  local ok, decoded = pcall(cjson.decode, job)
  if ok and type(decoded) == 'table' and type(decoded['class']) == 'string' then
    local queue = decoded['queue']
    if type(queue) ~= 'string' or queue == '' then queue = 'default' end
    local stamped = job
    local stamp_type = type(decoded['enqueued_at'])
    if stamp_type == 'nil' then
      local brace = string.find(job, '}%s*$')
      if brace then
        stamped = string.sub(job, 1, brace - 1) .. ',"enqueued_at":' .. stamp .. string.sub(job, brace)
      end
    elseif stamp_type == 'number' then
      -- Only a numeric top-level value is replaced, and only when it is the one numeric
      -- occurrence: one inside args must never be edited instead.
      local replaced, count = string.gsub(job, '"enqueued_at"%s*:%s*%-?[%d%.eE%+%-]+', '"enqueued_at":' .. stamp)
      if count == 1 then stamped = replaced end
    end
    push(queue, stamped)
  elseif ok and type(decoded) == 'table' then
    -- JSON without a class: let a server report it (it goes to the dead set with a reason)
    push('default', job)
  else
    -- Bytes above 0x7F are shown as \xHH (they may not be UTF-8, which JSON needs) and the
    -- exact bytes kept in raw_base64, as the server wraps a bad payload.
    local shown = string.gsub(job, '[\128-\255]', function(c) return string.format('\\x%02x', string.byte(c)) end)
    local exact = ''
    if shown ~= job then exact = ',"raw_base64":"' .. base64(job) .. '"' end
    local reason = 'a member of ' .. set .. ' is not JSON; the original is the only argument'
    local dead = '{"retry":false,"queue":"default","class":"Psychiq::InvalidPayload","args":'
      .. cjson.encode({ shown }) .. exact .. ',"jid":"000000000000000000000000","error_message":'
      .. cjson.encode(reason) .. ',"error_class":"Psychiq::InvalidPayload","failed_at":'
      .. now .. ',"retry_count":0}'
    redis.call('zadd', own_dead or (prefix .. 'dead'), now, dead)
  end
end
end
return { total, most }
"#;

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
