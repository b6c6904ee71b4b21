-- The workflow library, prepended to each workflow script. Every workflow script's ARGV[1]
-- is the namespace prefix. A workflow WID is the hash `wf:WID` (name, state, policy,
-- counts, times; `parent_wf` and `parent_step` for a sub-workflow) and the hashes
-- `wf:WID:SUFFIX` keyed by step name: jobs (payload without its final '}'), queues, jids,
-- parents and children (JSON arrays), pending (parents not yet succeeded), state, results,
-- errors (a dead step's), started_at and ended_at (epoch seconds),
-- kinds ('compensation', 'workflow:SUBWID' for a step that is a sub-workflow, 'batch:BID'
-- for one that is a batch, whose jobs wait in `jobs` as a JSON array of [queue, job] until
-- it starts) and policies (a step's own on-failure policy).
-- Step states: waiting, enqueued (or running), succeeded, dead, skipped, and standby (a
-- compensation step no death has called for). Workflow states: held (a sub-workflow whose
-- step has not started), running, succeeded, failed, cancelled, skipped.
local PREFIX = ARGV[1]

local function wkey(wid, suffix)
  if suffix then return PREFIX .. 'wf:' .. wid .. ':' .. suffix end
  return PREFIX .. 'wf:' .. wid
end

-- A hash a script makes after the push lives as long as the workflow's own key.
local function keep(wid, suffix)
  local key = wkey(wid, suffix)
  if redis.call('ttl', key) == -1 then
    local ttl = redis.call('pttl', wkey(wid))
    if ttl > 0 then redis.call('pexpire', key, ttl) end
  end
end

local function step_state(wid, step) return redis.call('hget', wkey(wid, 'state'), step) end
local function set_state(wid, step, state) redis.call('hset', wkey(wid, 'state'), step, state) end

local function list_of(wid, suffix, step)
  local list = redis.call('hget', wkey(wid, suffix), step)
  if list then return cjson.decode(list) end
  return {}
end

-- The sub-workflow a step is, if it is one.
local function sub_of(wid, step)
  local kind = redis.call('hget', wkey(wid, 'kinds'), step)
  if kind and string.sub(kind, 1, 9) == 'workflow:' then return string.sub(kind, 10) end
  return nil
end

-- The batch a step is, if it is one.
local function batch_of(wid, step)
  local kind = redis.call('hget', wkey(wid, 'kinds'), step)
  if kind and string.sub(kind, 1, 6) == 'batch:' then return string.sub(kind, 7) end
  return nil
end

local function push_job(queue, job, now)
  redis.call('sadd', PREFIX .. 'queues', queue)
  redis.call('lpush', PREFIX .. 'queue:' .. queue, job .. ',"enqueued_at":' .. now .. '}')
end

-- Defined below; each may call the others.
local start_step, skip_step, settle, finish_step

-- Gives job step `step` a new jid (in its job and in `jids`); returns the old one. A
-- leftover run, death or cancel mark of the old jid then touches nothing.
local function renew_jid(wid, step, now)
  local old = redis.call('hget', wkey(wid, 'jids'), step)
  local new = string.sub(redis.sha1hex(wid .. step .. old .. now), 1, 24)
  local job = redis.call('hget', wkey(wid, 'jobs'), step)
  local from, to = string.find(job, '"jid":"' .. old .. '"', 1, true)
  if from then
    job = string.sub(job, 1, from - 1) .. '"jid":"' .. new .. '"' .. string.sub(job, to + 1)
  end
  redis.call('hset', wkey(wid, 'jobs'), step, job)
  redis.call('hset', wkey(wid, 'jids'), step, new)
  return old
end

local function is_ended(state) return state == 'succeeded' or state == 'dead' or state == 'skipped' end

-- Starts a step: pushes its job (with enqueued_at) or its batch's jobs, or starts its
-- sub-workflow's roots.
-- Starts every waiting step of workflow `wid` whose parents have all succeeded.
local function start_ready(wid, now)
  local all = redis.call('hgetall', wkey(wid, 'state'))
  for i = 1, #all, 2 do
    if all[i + 1] == 'waiting' and tonumber(redis.call('hget', wkey(wid, 'pending'), all[i])) <= 0 then
      start_step(wid, all[i], now)
    end
  end
end
start_step = function(wid, step, now)
  set_state(wid, step, 'enqueued')
  redis.call('hset', wkey(wid, 'started_at'), step, now)
  keep(wid, 'started_at')
  local sub = sub_of(wid, step)
  if sub then
    redis.call('hset', wkey(sub), 'state', 'running')
    start_ready(sub, now)
    return
  end
  local job = redis.call('hget', wkey(wid, 'jobs'), step)
  if batch_of(wid, step) then
    for _, held in ipairs(cjson.decode(job)) do push_job(held[1], held[2], now) end
    return
  end
  push_job(redis.call('hget', wkey(wid, 'queues'), step), job, now)
end

-- A step that will not run; a sub-workflow step takes its whole sub-workflow with it.
local function abandon(wid, now)
  local all = redis.call('hgetall', wkey(wid, 'state'))
  for i = 1, #all, 2 do
    if all[i + 1] == 'waiting' or all[i + 1] == 'standby' then skip_step(wid, all[i], now) end
  end
  redis.call('hset', wkey(wid), 'state', 'skipped')
  redis.call('hsetnx', wkey(wid), 'finished_at', now)
end
skip_step = function(wid, step, now)
  local state = step_state(wid, step)
  if not state or is_ended(state) then return end
  if state == 'standby' then redis.call('hincrby', wkey(wid), 'standby', -1) end
  set_state(wid, step, 'skipped')
  redis.call('hincrby', wkey(wid), 'skipped', 1)
  local sub = sub_of(wid, step)
  if sub then abandon(sub, now) end
end

-- The results of a workflow's last steps (those no step runs after), as one JSON object:
-- what a sub-workflow passes on as its step's result.
local function leaf_results(wid)
  local parts = {}
  local states = redis.call('hgetall', wkey(wid, 'state'))
  for i = 1, #states, 2 do
    local name = states[i]
    if states[i + 1] == 'succeeded' and not redis.call('hget', wkey(wid, 'children'), name) then
      local result = redis.call('hget', wkey(wid, 'results'), name) or 'null'
      table.insert(parts, cjson.encode(name) .. ':' .. result)
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Ends the workflow when every step has (compensation steps still on standby are skipped
-- then); a sub-workflow's end is its step's end in the workflow above.
settle = function(wid, now)
  local base = wkey(wid)
  local c = redis.call('hmget', base, 'total', 'done', 'dead', 'skipped', 'standby', 'finished_at')
  local ended = tonumber(c[2]) + tonumber(c[3]) + tonumber(c[4])
  if c[6] or ended + (tonumber(c[5]) or 0) < tonumber(c[1]) then return end
  local all = redis.call('hgetall', wkey(wid, 'state'))
  for i = 1, #all, 2 do
    if all[i + 1] == 'standby' then skip_step(wid, all[i], now) end
  end
  redis.call('hset', base, 'finished_at', now)
  local state = redis.call('hget', base, 'state')
  if state == 'running' then
    if tonumber(c[3]) > 0 then state = 'failed' else state = 'succeeded' end
    redis.call('hset', base, 'state', state)
  end
  local parent = redis.call('hget', base, 'parent_wf')
  if parent then
    local step = redis.call('hget', base, 'parent_step')
    if state == 'succeeded' then
      finish_step(parent, step, 'succeeded', leaf_results(wid), now)
    else
      finish_step(parent, step, 'dead', 'sub-workflow ' .. wid .. ' ' .. state, now)
    end
  end
end

-- A step's end, exactly once: a success records its result (a death, its error, if
-- `result` gives one) and starts each child whose
-- every parent has now succeeded; a death does what the step's (or else the workflow's)
-- policy says: 'stop' (nothing new starts, waiting steps are skipped), 'continue' (only what
-- depends on it is skipped) or 'compensate:STEP' (stop, and start compensation step STEP).
-- Returns the number of steps started, 0 if the end was already counted, -1 if there is
-- no such step.
finish_step = function(wid, step, outcome, result, now)
  local base = wkey(wid)
  local state = step_state(wid, step)
  if not state then return -1 end
  if is_ended(state) or state == 'waiting' or state == 'standby' then return 0 end
  local running = redis.call('hget', base, 'state') == 'running'
  local started = 0
  redis.call('hset', wkey(wid, 'ended_at'), step, now)
  keep(wid, 'ended_at')
  if outcome == 'succeeded' then
    set_state(wid, step, 'succeeded')
    redis.call('hset', wkey(wid, 'results'), step, result)
    keep(wid, 'results')
    redis.call('hincrby', base, 'done', 1)
    for _, child in ipairs(list_of(wid, 'children', step)) do
      local left = redis.call('hincrby', wkey(wid, 'pending'), child, -1)
      if left <= 0 and running and step_state(wid, child) == 'waiting' then
        start_step(wid, child, now)
        started = started + 1
      end
    end
  else
    set_state(wid, step, 'dead')
    redis.call('hincrby', base, 'dead', 1)
    if result ~= '' then
      redis.call('hset', wkey(wid, 'errors'), step, result)
      keep(wid, 'errors')
    end
    redis.call('hsetnx', base, 'failed_step', step)
    local policy = redis.call('hget', wkey(wid, 'policies'), step) or redis.call('hget', base, 'policy')
    if policy == 'continue' then
      -- What depends on it, however far down, will not run.
      local stack = list_of(wid, 'children', step)
      while #stack > 0 do
        local s = table.remove(stack)
        if step_state(wid, s) == 'waiting' then
          skip_step(wid, s, now)
          for _, c in ipairs(list_of(wid, 'children', s)) do table.insert(stack, c) end
        end
      end
    else
      if running then redis.call('hset', base, 'state', 'failed') end
      local all = redis.call('hgetall', wkey(wid, 'state'))
      for i = 1, #all, 2 do
        if all[i + 1] == 'waiting' then skip_step(wid, all[i], now) end
      end
      local compensation = string.match(policy or '', '^compensate:(.*)$')
      if compensation and step_state(wid, compensation) == 'standby' then
        redis.call('hincrby', base, 'standby', -1)
        start_step(wid, compensation, now)
        started = started + 1
      end
    end
  end
  settle(wid, now)
  return started
end
