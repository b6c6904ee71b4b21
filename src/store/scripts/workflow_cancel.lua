-- Cancels workflow ARGV[2] (ARGV[1] the namespace prefix) at ARGV[3] (now): its state
-- becomes 'cancelled' (so no step that ends starts another), its waiting steps are skipped,
-- and it ends if nothing is left running. Returns the jids of its enqueued (or running)
-- steps, for the caller to cancel; -1 if there is no such workflow, -2 if it is over.
-- Running it again on a cancelled workflow skips nothing twice.
local prefix, wid, now = ARGV[1], ARGV[2], ARGV[3]
local base = prefix .. 'wf:' .. wid
local function k(suffix) return base .. ':' .. suffix end
local state = redis.call('hget', base, 'state')
if not state then return -1 end
if state ~= 'running' and state ~= 'cancelled' then return -2 end
redis.call('hset', base, 'state', 'cancelled')
local enqueued = {}
local all = redis.call('hgetall', k('state'))
for i = 1, #all, 2 do
  if all[i + 1] == 'waiting' then
    redis.call('hset', k('state'), all[i], 'skipped')
    redis.call('hincrby', base, 'skipped', 1)
  elseif all[i + 1] == 'enqueued' then
    table.insert(enqueued, redis.call('hget', k('jids'), all[i]))
  end
end
local counts = redis.call('hmget', base, 'total', 'done', 'dead', 'skipped')
if tonumber(counts[2]) + tonumber(counts[3]) + tonumber(counts[4]) >= tonumber(counts[1]) then
  redis.call('hsetnx', base, 'finished_at', now)
end
return enqueued
