-- Cancels workflow ARGV[2] (ARGV[1] the namespace prefix) at ARGV[3] (now): a running one
-- becomes 'cancelled' (so no step that ends starts another; a failed one that has not
-- ended stays 'failed'), its waiting and standby steps are skipped, its running
-- sub-workflows are cancelled the same way, and it ends if nothing is left running.
-- Returns the jids of its enqueued (or running) steps, sub-workflows' and batch steps'
-- unfinished jobs included, for the caller to cancel; -1 if there is no such workflow, -2
-- if it is over. Running it again on a cancelled workflow skips nothing twice.
local wid, now = ARGV[2], ARGV[3]
local function cancellable(w)
  local head = redis.call('hmget', wkey(w), 'state', 'finished_at')
  return not head[2] and (head[1] == 'running' or head[1] == 'cancelled' or head[1] == 'failed')
end
if not redis.call('hget', wkey(wid), 'state') then return -1 end
if not cancellable(wid) then return -2 end
local enqueued = {}
local cancel
cancel = function(w)
  if not cancellable(w) then return end
  if redis.call('hget', wkey(w), 'state') == 'running' then
    redis.call('hset', wkey(w), 'state', 'cancelled')
  end
  local all = redis.call('hgetall', wkey(w, 'state'))
  for i = 1, #all, 2 do
    local step = all[i]
    -- Read again: cancelling a sub-workflow may have ended steps of this one since.
    local s = step_state(w, step)
    if s == 'waiting' or s == 'standby' then
      skip_step(w, step, now)
    elseif s == 'enqueued' then
      local sub, bid = sub_of(w, step), batch_of(w, step)
      if sub then
        cancel(sub)
      elseif bid then
        -- Its jobs not yet succeeded; the batch's death then ends the step.
        for _, jid in ipairs(redis.call('smembers', PREFIX .. 'batch:' .. bid .. ':pending')) do
          table.insert(enqueued, jid)
        end
      else
        table.insert(enqueued, redis.call('hget', wkey(w, 'jids'), step))
      end
    end
  end
  settle(w, now)
end
cancel(wid)
return enqueued
