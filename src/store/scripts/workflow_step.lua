-- A workflow step's end, exactly once: ARGV[1] the namespace prefix, ARGV[2] the workflow
-- id, ARGV[3] the step, ARGV[4] 'succeeded' or 'dead', ARGV[5] its result (JSON; for a
-- success), ARGV[6] now (epoch seconds).
-- A success records the result and starts each child whose every parent has succeeded (its
-- job pushed in the same step, so a step starts once and only here). A death stops the
-- workflow (policy 'stop': nothing new starts, the waiting steps are skipped) or skips only
-- what depends on it (policy 'continue'). The workflow ends when every step has ended.
-- Returns the number of steps started, or -1 if the step is not the workflow's, 0 if its
-- end was already counted (a step run twice changes nothing the second time).
-- Used by extensions/workflow.rs (success) and server/departure.rs (death).
local prefix, wid, step, outcome, result, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local base = prefix .. 'wf:' .. wid
local function k(suffix) return base .. ':' .. suffix end
local state = redis.call('hget', k('state'), step)
if not state then return -1 end
if state == 'succeeded' or state == 'dead' or state == 'skipped' then return 0 end
local running = redis.call('hget', base, 'state') == 'running'
local started = 0
local function start(child)
  local job = redis.call('hget', k('jobs'), child)
  local queue = redis.call('hget', k('queues'), child)
  redis.call('hset', k('state'), child, 'enqueued')
  redis.call('sadd', prefix .. 'queues', queue)
  redis.call('lpush', prefix .. 'queue:' .. queue, job .. ',"enqueued_at":' .. now .. '}')
  started = started + 1
end
local function children(of)
  local list = redis.call('hget', k('children'), of)
  if list then return cjson.decode(list) end
  return {}
end
local function skip(s)
  redis.call('hset', k('state'), s, 'skipped')
  redis.call('hincrby', base, 'skipped', 1)
end
if outcome == 'succeeded' then
  redis.call('hset', k('state'), step, 'succeeded')
  redis.call('hset', k('results'), step, result)
  keep(base, k('results'))
  redis.call('hincrby', base, 'done', 1)
  for _, child in ipairs(children(step)) do
    local left = redis.call('hincrby', k('pending'), child, -1)
    if left <= 0 and running and redis.call('hget', k('state'), child) == 'waiting' then
      start(child)
    end
  end
else
  redis.call('hset', k('state'), step, 'dead')
  redis.call('hincrby', base, 'dead', 1)
  if redis.call('hget', base, 'policy') == 'continue' then
    -- What depends on it, however far down, will not run.
    local stack = children(step)
    while #stack > 0 do
      local s = table.remove(stack)
      if redis.call('hget', k('state'), s) == 'waiting' then
        skip(s)
        for _, c in ipairs(children(s)) do table.insert(stack, c) end
      end
    end
  else
    if running then redis.call('hset', base, 'state', 'failed') end
    running = false
    local all = redis.call('hgetall', k('state'))
    for i = 1, #all, 2 do
      if all[i + 1] == 'waiting' then skip(all[i]) end
    end
  end
end
-- Ended when every step has.
local counts = redis.call('hmget', base, 'total', 'done', 'dead', 'skipped')
local total, ended = tonumber(counts[1]), tonumber(counts[2]) + tonumber(counts[3]) + tonumber(counts[4])
if ended >= total and not redis.call('hget', base, 'finished_at') then
  redis.call('hset', base, 'finished_at', now)
  -- A workflow stopped (failed) or cancelled keeps that state.
  if redis.call('hget', base, 'state') == 'running' then
    if tonumber(counts[3]) > 0 then
      redis.call('hset', base, 'state', 'failed')
    else
      redis.call('hset', base, 'state', 'succeeded')
    end
  end
end
return started
