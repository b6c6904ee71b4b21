-- Retries workflow ARGV[2] (ARGV[1] the namespace prefix) at ARGV[3] (now), once it has
-- ended: its dead and skipped steps (in its sub-workflows too) wait again, each job step
-- with a new jid (so a leftover run or cancel of the old one changes nothing), compensation
-- steps go back on standby, and the steps whose parents have all succeeded start. A batch
-- step that died goes on running: its batch's dead jobs are for the caller to retry, and
-- the batch's success then ends it. Returns two lists: the old jids of the dead job steps
-- (for the caller to take out of the dead set) and the dead batch jobs; -1 if
-- there is no such workflow, -2 if it succeeded (or nothing died or was skipped), -3 if it
-- has not ended, -4 if it is a sub-workflow (retry the workflow it is a step of).
local wid, now = ARGV[2], ARGV[3]
local base = wkey(wid)
local head = redis.call('hmget', base, 'state', 'finished_at', 'parent_wf', 'dead', 'skipped')
if not head[1] then return -1 end
if head[3] then return -4 end
if not head[2] then return -3 end
if head[1] == 'succeeded' or tonumber(head[4]) + tonumber(head[5]) == 0 then return -2 end
local old_jids, batch_jids = {}, {}
local reset
reset = function(w)
  local b = wkey(w)
  local all = redis.call('hgetall', wkey(w, 'state'))
  for i = 1, #all, 2 do
    local step, s = all[i], all[i + 1]
    local kind = redis.call('hget', wkey(w, 'kinds'), step)
    if s == 'dead' or s == 'skipped' or (kind == 'compensation' and s ~= 'standby') then
      -- A fresh run's times and error.
      for _, suffix in ipairs({'errors', 'started_at', 'ended_at'}) do
        redis.call('hdel', wkey(w, suffix), step)
      end
    end
    if kind == 'compensation' then
      if s ~= 'standby' then
        if s == 'succeeded' then redis.call('hincrby', b, 'done', -1) end
        if s == 'dead' then redis.call('hincrby', b, 'dead', -1) end
        if s == 'skipped' then redis.call('hincrby', b, 'skipped', -1) end
        redis.call('hdel', wkey(w, 'results'), step)
        set_state(w, step, 'standby')
        redis.call('hincrby', b, 'standby', 1)
      end
    elseif s == 'dead' and batch_of(w, step) then
      redis.call('hincrby', b, 'dead', -1)
      set_state(w, step, 'enqueued')
      redis.call('hset', wkey(w, 'started_at'), step, now)
      for _, jid in ipairs(redis.call('smembers', PREFIX .. 'batch:' .. batch_of(w, step) .. ':dead')) do
        table.insert(batch_jids, jid)
      end
    elseif s == 'dead' or s == 'skipped' then
      redis.call('hincrby', b, s, -1)
      local sub = sub_of(w, step)
      if batch_of(w, step) then
        -- Skipped unstarted: its held jobs go when it starts.
      elseif sub then
        reset(sub)
        redis.call('hset', wkey(sub), 'state', 'held')
      else
        local old = redis.call('hget', wkey(w, 'jids'), step)
        local new = string.sub(redis.sha1hex(w .. step .. old .. now), 1, 24)
        local job = redis.call('hget', wkey(w, 'jobs'), step)
        local from, to = string.find(job, '"jid":"' .. old .. '"', 1, true)
        if from then
          job = string.sub(job, 1, from - 1) .. '"jid":"' .. new .. '"' .. string.sub(job, to + 1)
        end
        redis.call('hset', wkey(w, 'jobs'), step, job)
        redis.call('hset', wkey(w, 'jids'), step, new)
        if s == 'dead' then table.insert(old_jids, old) end
      end
      local pending = 0
      for _, p in ipairs(list_of(w, 'parents', step)) do
        if step_state(w, p) ~= 'succeeded' then pending = pending + 1 end
      end
      redis.call('hset', wkey(w, 'pending'), step, pending)
      set_state(w, step, 'waiting')
    end
  end
  redis.call('hdel', b, 'finished_at', 'failed_step')
end
reset(wid)
redis.call('hset', base, 'state', 'running')
start_ready(wid, now)
return {old_jids, batch_jids}
