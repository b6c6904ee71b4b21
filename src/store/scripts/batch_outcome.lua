-- Counts one outcome of job ARGV[3] in batch ARGV[2] (ARGV[1] the namespace prefix): kind
-- ARGV[4] is 'success', 'failure' or 'death'; ARGV[5] now (epoch seconds), ARGV[6] the TTL
-- of a batch that succeeded (unless it has its own), ARGV[7] that of an unfinished one. Fires each callback once (recorded by `HSETNX EVENT_at`, its
-- job pushed in the same step) and passes complete and success up to parent batches.
-- Used by extensions/batch/counter.rs (success, failure) and server/departure.rs (death).
local prefix, bid, jid, kind, now, done_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local function k(b, suffix) return prefix .. 'batch:' .. b .. suffix end
if redis.call('exists', k(bid, '')) == 0 then return 0 end
-- Touched: an unfinished batch lives on for ARGV[7] seconds (refreshed at half of it).
local idle = tonumber(ARGV[7])
if redis.call('hexists', k(bid, ''), 'success_at') == 0 and redis.call('ttl', k(bid, '')) < idle / 2 then
  for _, suffix in ipairs({'', ':unran', ':pending', ':failed', ':dead', ':kids_incomplete', ':kids_unsucceeded'}) do
    redis.call('expire', k(bid, suffix), idle)
  end
end
local function fire(b, event)
  if redis.call('hsetnx', k(b, ''), event .. '_at', now) == 0 then return end
  local cb = redis.call('hget', k(b, ''), 'cb_' .. event)
  if cb then
    local queue = redis.call('hget', k(b, ''), 'cbq_' .. event)
    redis.call('sadd', prefix .. 'queues', queue)
    redis.call('lpush', prefix .. 'queue:' .. queue, cb .. ',"enqueued_at":' .. now .. '}')
  end
end
if kind == 'success' then
  redis.call('srem', k(bid, ':unran'), jid)
  redis.call('srem', k(bid, ':pending'), jid)
  redis.call('srem', k(bid, ':failed'), jid)
  redis.call('srem', k(bid, ':dead'), jid)
elseif kind == 'failure' then
  redis.call('srem', k(bid, ':unran'), jid)
  if redis.call('sismember', k(bid, ':pending'), jid) == 1 then
    redis.call('sadd', k(bid, ':failed'), jid)
  end
elseif kind == 'death' then
  redis.call('srem', k(bid, ':unran'), jid)
  if redis.call('srem', k(bid, ':pending'), jid) == 1 then
    redis.call('sadd', k(bid, ':dead'), jid)
    fire(bid, 'death')
  end
end
local b = bid
while b do
  local parent = redis.call('hget', k(b, ''), 'parent')
  local changed = false
  if redis.call('hexists', k(b, ''), 'complete_at') == 0
    and redis.call('scard', k(b, ':unran')) == 0
    and redis.call('scard', k(b, ':kids_incomplete')) == 0 then
    fire(b, 'complete')
    changed = true
    if parent then redis.call('srem', k(parent, ':kids_incomplete'), b) end
  end
  if redis.call('hexists', k(b, ''), 'success_at') == 0
    and redis.call('scard', k(b, ':pending')) == 0
    and redis.call('scard', k(b, ':dead')) == 0
    and redis.call('scard', k(b, ':kids_unsucceeded')) == 0 then
    fire(b, 'success')
    changed = true
    if parent then redis.call('srem', k(parent, ':kids_unsucceeded'), b) end
    local ttl = tonumber(redis.call('hget', k(b, ''), 'ttl') or done_ttl)
    for _, suffix in ipairs({'', ':unran', ':pending', ':failed', ':dead', ':kids_incomplete', ':kids_unsucceeded'}) do
      redis.call('expire', k(b, suffix), ttl)
    end
  end
  if not changed or not parent then break end
  b = parent
end
return 1
