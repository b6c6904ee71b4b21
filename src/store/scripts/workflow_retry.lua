-- Retries workflow ARGV[2] (ARGV[1] the namespace prefix) at ARGV[3] (now), once it has
-- ended, and keeps it ARGV[4] more seconds: its dead and skipped steps (in its
-- sub-workflows too) wait again, each job step under a new jid (a leftover run or cancel
-- mark of the old one then changes nothing), compensation steps go back on standby under
-- new jids, a dead batch step runs again with its dead jobs pushed again under new jids,
-- and the steps whose parents have all succeeded start. Returns the old jids of the dead
-- jobs (for the caller to take out of the dead set); -1 if there is no such workflow, -2
-- if no step of it died or was skipped (compensation steps aside), -3 if it has not
-- ended, -4 if it is a sub-workflow (retry the workflow it is a step of).
local wid, now, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4])
local base = wkey(wid)
local head = redis.call('hmget', base, 'state', 'finished_at', 'parent_wf')
if not head[1] then return -1 end
if head[3] then return -4 end
if not head[2] then return -3 end
local any = false
local states = redis.call('hgetall', wkey(wid, 'state'))
for i = 1, #states, 2 do
  local s = states[i + 1]
  if (s == 'dead' or s == 'skipped') and redis.call('hget', wkey(wid, 'kinds'), states[i]) ~= 'compensation' then
    any = true
  end
end
if not any then return -2 end

local old_jids = {}
local HASHES = {'', 'jobs', 'queues', 'jids', 'parents', 'pending', 'children', 'state', 'results',
  'kinds', 'policies', 'errors', 'started_at', 'ended_at'}

-- Pushes a dead batch step's dead jobs again, each under a new jid counted as pending in
-- its batch, whose death may fire again.
local function rerun_batch(w, step, bid)
  local bkey = PREFIX .. 'batch:' .. bid
  local held = cjson.decode(redis.call('hget', wkey(w, 'jobs'), step))
  for n, pair in ipairs(held) do
    local old = cjson.decode(pair[2] .. '}')['jid']
    if redis.call('srem', bkey .. ':dead', old) == 1 then
      local new = string.sub(redis.sha1hex(bid .. old .. now), 1, 24)
      local from, to = string.find(pair[2], '"jid":"' .. old .. '"', 1, true)
      pair[2] = string.sub(pair[2], 1, from - 1) .. '"jid":"' .. new .. '"' .. string.sub(pair[2], to + 1)
      held[n] = pair
      redis.call('sadd', bkey .. ':pending', new)
      redis.call('sadd', bkey .. ':unran', new)
      push_job(pair[1], pair[2], now)
      table.insert(old_jids, old)
    end
  end
  redis.call('hset', wkey(w, 'jobs'), step, cjson.encode(held))
  -- Its death may fire again (its complete callback, once, has fired or will).
  redis.call('hdel', bkey, 'death_at')
end

local reset
reset = function(w)
  local b = wkey(w)
  local all = redis.call('hgetall', wkey(w, 'state'))
  for i = 1, #all, 2 do
    local step, s = all[i], all[i + 1]
    local kind = redis.call('hget', wkey(w, 'kinds'), step)
    local again = s == 'dead' or s == 'skipped' or (kind == 'compensation' and s ~= 'standby')
    if again then
      -- A fresh run's times and error.
      for _, suffix in ipairs({'errors', 'started_at', 'ended_at', 'results'}) do
        redis.call('hdel', wkey(w, suffix), step)
      end
      if s == 'succeeded' then redis.call('hincrby', b, 'done', -1) end
      if s == 'dead' or s == 'skipped' then redis.call('hincrby', b, s, -1) end
    end
    if not again then
      -- Succeeded, or on standby: kept as it is.
    elseif kind == 'compensation' then
      if s == 'dead' then table.insert(old_jids, renew_jid(w, step, now)) else renew_jid(w, step, now) end
      set_state(w, step, 'standby')
      redis.call('hincrby', b, 'standby', 1)
    elseif s == 'dead' and batch_of(w, step) then
      -- Started once: its batch runs on with its dead jobs pushed again.
      set_state(w, step, 'enqueued')
      redis.call('hset', wkey(w, 'started_at'), step, now)
      keep(w, 'started_at')
      rerun_batch(w, step, batch_of(w, step))
    else
      local sub = sub_of(w, step)
      if sub then
        reset(sub)
        redis.call('hset', wkey(sub), 'state', 'held')
      elseif not batch_of(w, step) then
        local old = renew_jid(w, step, now)
        if s == 'dead' then table.insert(old_jids, old) end
      end
      -- (A batch step skipped unstarted still holds its jobs, pushed when it starts.)
      local pending = 0
      for _, p in ipairs(list_of(w, 'parents', step)) do
        if step_state(w, p) ~= 'succeeded' then pending = pending + 1 end
      end
      redis.call('hset', wkey(w, 'pending'), step, pending)
      set_state(w, step, 'waiting')
    end
  end
  redis.call('hdel', b, 'finished_at', 'failed_step')
  for _, suffix in ipairs(HASHES) do
    if suffix == '' then redis.call('expire', b, ttl) else redis.call('expire', wkey(w, suffix), ttl) end
  end
end
reset(wid)
redis.call('hset', base, 'state', 'running')
start_ready(wid, now)
settle(wid, now)
return old_jids
