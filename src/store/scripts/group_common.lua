-- Groups (prepended to fetch.lua and group_release.lua): jobs of a queue that carry a group
-- key (`psychiq_group`, a tenant or a customer) wait in their group's list and run at most
-- the group's limit at once across the fleet (1 unless `psychiq_group_limit` or the API
-- set another: in order, a sequence), groups taken in turn so none waits behind another's
-- backlog. Keys, for queue Q and group G (Sidekiq's layout only):
--   grp:Q:G       the group's jobs (LPUSH in, RPOP out)
--   grpready:Q    groups with jobs and a free slot, scored by their turn (ZADD NX)
--   grpturn:Q     the turn counter
--   grprun:Q:G    the group's running jobs by jid, scored by when their lease ends
--   grplimit:Q    each group's limit (1 when unset)
--   grprate:Q     each rate-limited group's rate, 'COUNT/SECONDS' (none when unset)
--   grpstarts:Q:G a rate-limited group's starts in its window, scored by when
--   grppaused:Q   paused groups
--   grpknown:Q    every group seen, scored by its last job's arrival (for listing)
--   grpwaiting:Q  how many jobs wait in the queue's groups (a server that sees some polls
--                 briefly instead of blocking on the queue's list)
--   grpfull:Q     groups with jobs but no room, scored by when their first lease ends or
--                 their rate lets one more start: a fetch looks at those due, so a slot
--                 whose job never gave it up (a skip before the middleware, a lost
--                 process) comes back when its lease ends
--   grouped       the queues that have groups
local GROUP_LEASE = 90
local group_clock = nil
local function group_now()
  if not group_clock then
    local t = redis.call('time')
    group_clock = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return group_clock
end
local function gkey(prefix, kind, name, group)
  if group then return prefix .. kind .. ':' .. name .. ':' .. group end
  return prefix .. kind .. ':' .. name
end
-- Whether group G of queue Q may start another job now (expired leases and starts that
-- left the rate's window dropped first); if not, when to look again: its first lease's
-- end, or when its oldest start leaves the window.
local function group_room(prefix, name, group)
  local now = group_now()
  local run = gkey(prefix, 'grprun', name, group)
  redis.call('zremrangebyscore', run, '-inf', now)
  local limit = tonumber(redis.call('hget', gkey(prefix, 'grplimit', name), group) or '1')
  if redis.call('zcard', run) >= limit then
    local first = redis.call('zrange', run, 0, 0, 'WITHSCORES')
    return false, tonumber(first[2])
  end
  local rate = redis.call('hget', gkey(prefix, 'grprate', name), group)
  if rate then
    local count, period = string.match(rate, '^(%d+)/([%d%.]+)$')
    count, period = tonumber(count), tonumber(period)
    if count and period and count >= 1 and period > 0 then
      local starts = gkey(prefix, 'grpstarts', name, group)
      redis.call('zremrangebyscore', starts, '-inf', now - period)
      if redis.call('zcard', starts) >= count then
        local first = redis.call('zrange', starts, 0, 0, 'WITHSCORES')
        return false, tonumber(first[2]) + period
      end
    end
  end
  return true
end
-- A job of group G starts now: it holds a slot (its lease) and, if the group has a rate,
-- counts in the window (the starts' key lives as long as the window).
local function group_start(prefix, name, group, jid)
  local now = group_now()
  redis.call('zadd', gkey(prefix, 'grprun', name, group), now + GROUP_LEASE, jid)
  local rate = redis.call('hget', gkey(prefix, 'grprate', name), group)
  if rate then
    local period = tonumber(string.match(rate, '/([%d%.]+)$'))
    if period and period > 0 then
      local starts = gkey(prefix, 'grpstarts', name, group)
      redis.call('zadd', starts, now, string.format('%.6f', now) .. ':' .. jid)
      redis.call('pexpire', starts, math.ceil(period * 1000) + 1000)
    end
  end
end
-- Puts the group in the round (at its back) if it has jobs, is not paused and has room;
-- with jobs but no room, notes when to look again.
local function group_wake(prefix, name, group)
  if redis.call('llen', gkey(prefix, 'grp', name, group)) == 0
    or redis.call('sismember', gkey(prefix, 'grppaused', name), group) == 1 then
    return
  end
  local free, again = group_room(prefix, name, group)
  if free then
    local turn = redis.call('incr', gkey(prefix, 'grpturn', name))
    redis.call('zadd', gkey(prefix, 'grpready', name), 'NX', turn, group)
  elseif again then
    redis.call('zadd', gkey(prefix, 'grpfull', name), again, group)
  end
end
-- Looks again at the groups whose first lease has ended (at most 100 a call).
local function group_sweep(prefix, name)
  local full = gkey(prefix, 'grpfull', name)
  for _, group in ipairs(redis.call('zrangebyscore', full, '-inf', group_now(), 'LIMIT', 0, 100)) do
    redis.call('zrem', full, group)
    group_wake(prefix, name, group)
  end
end
-- Moves a grouped job from its queue's list to the back of its group's. A job coming back
-- (recovered from a dead process, pushed back at a stop: it still holds its slot, or it
-- carries `recovery_count`) gives its slot up and goes to the front, so a sequence keeps
-- its order. Returns false for a job with no group.
local function group_route(prefix, name, job)
  local ok, decoded = pcall(cjson.decode, job)
  if not ok or type(decoded) ~= 'table' then return false end
  local group = decoded['psychiq_group']
  if type(group) ~= 'string' or group == '' then return false end
  local limit = decoded['psychiq_group_limit']
  if type(limit) == 'number' and limit >= 1 then
    -- The first job that names one sets it; `psychiq groups limit` changes it after.
    redis.call('hsetnx', gkey(prefix, 'grplimit', name), group, math.floor(limit))
  end
  local rate = decoded['psychiq_group_rate']
  if type(rate) == 'table' and type(rate[1]) == 'number' and type(rate[2]) == 'number'
    and rate[1] >= 1 and rate[2] > 0 then
    -- Likewise: the first job's rate stands until `psychiq groups rate` changes it.
    redis.call('hsetnx', gkey(prefix, 'grprate', name), group,
      string.format('%d/%.6f', math.floor(rate[1]), rate[2]))
  end
  local returning = decoded['recovery_count'] ~= nil
  if type(decoded['jid']) == 'string'
    and redis.call('zrem', gkey(prefix, 'grprun', name, group), decoded['jid']) == 1 then
    returning = true
  end
  if returning then
    redis.call('rpush', gkey(prefix, 'grp', name, group), job)
  else
    redis.call('lpush', gkey(prefix, 'grp', name, group), job)
  end
  redis.call('incr', gkey(prefix, 'grpwaiting', name))
  redis.call('zadd', gkey(prefix, 'grpknown', name), group_now(), group)
  group_wake(prefix, name, group)
  return true
end
