-- Moves up to ARGV[1] jobs, queue by queue in the given order, from each queue (KEYS[2i])
-- into its in-progress hash (KEYS[2i+1]) under the fields ARGV[2], ARGV[2] + 1, …, in the
-- order returned; returns {paused, index, job, index, job, ...}. Per queue that is one
-- `RPOP key count` and one `HSET` for the whole batch, so Redis works per batch, not per job.
--
-- Paused queues (names in the set KEYS[1], Sidekiq Pro's `paused`; queue names in ARGV[3..])
-- are skipped, in the same atomic step that takes, so a pause holds from the next fetch on
-- for every process; `paused` lists their indexes, comma-separated, for the waiting that
-- follows an empty fetch. With no queue paused that costs one `SCARD` a fetch.
--
-- A job that was recovered from a dead process (it carries `recovery_count`) is a suspect:
-- it is only ever fetched alone (index prefixed with `s`), so if it takes this process down
-- too, no innocent job shares its fate and its recovery count. The jobs popped after it go
-- back to the tail of their queue, in their order.
--
-- A call sent twice (a Redis Cluster client resends a request whose reply a failover lost,
-- and the first one may have run) must not take a second batch into the same slots, which
-- would overwrite the first and lose it: slots are never reused by a process, so a hash
-- that already holds the first slot means this call ran, and it answers with what it took.
-- A job with a priority (1 to 9; Psychiq's `Job::priority`) waits in `prio:P:QUEUE`, taken
-- before the queue's own list, higher first; everything else (Ruby's pushes too) is
-- priority 0 in the queue's list, as Sidekiq has it.
-- Used by server/fetch.rs.
local max, slot = tonumber(ARGV[1]), tonumber(ARGV[2])
for k = 3, #KEYS, 2 do
  if redis.call('hexists', KEYS[k], slot) == 1 then
    local held = {}
    for h = 3, #KEYS, 2 do
      held[h] = {}
      for from = slot, slot + max - 1, 1000 do
        local fields = {}
        for s = from, math.min(from + 999, slot + max - 1) do fields[#fields + 1] = s end
        for _, job in ipairs(redis.call('hmget', KEYS[h], unpack(fields))) do
          held[h][#held[h] + 1] = job
        end
      end
    end
    local out = { '' }
    for j = 1, max do
      local found = false
      for h = 3, #KEYS, 2 do
        if held[h][j] then
          out[#out + 1] = tostring((h - 3) / 2)
          out[#out + 1] = held[h][j]
          found = true
          break
        end
      end
      if not found then break end
    end
    return out
  end
end
local taken = 0
local nqueues = (#KEYS - 1) / 2
-- Priority lists (`prio:P:QUEUE`, P from 9 down to 1) are looked at first for the queues
-- in the `prioritized` set. ARGV[3 + nqueues] is the key prefix ('' for bare keys), given
-- in Sidekiq's layout only: the cluster layout has no priorities (its keys would be in
-- other slots). With no queue prioritized that costs one `SCARD` a fetch.
local prefix = ARGV[3 + nqueues]
local prioritized = {}
if prefix and redis.call('scard', prefix .. 'prioritized') > 0 then
  for _, name in ipairs(redis.call('smembers', prefix .. 'prioritized')) do prioritized[name] = true end
end
-- Queues with groups (see group_common.lua): their grouped jobs are routed from the
-- queue's list to their groups' as they reach its tail, and groups with room are taken in
-- turn, one job each per pass, before anything else of the queue.
local grouped = {}
if prefix and redis.call('scard', prefix .. 'grouped') > 0 then
  for _, name in ipairs(redis.call('smembers', prefix .. 'grouped')) do grouped[name] = true end
end
local paused, skipped = {}, {}
if redis.call('scard', KEYS[1]) > 0 then
  for _, name in ipairs(redis.call('smembers', KEYS[1])) do paused[name] = true end
  for q = 0, nqueues - 1 do
    if paused[ARGV[3 + q]] then skipped[#skipped + 1] = tostring(q) end
  end
end
local out = { table.concat(skipped, ',') }
local function hold(hash, fields)
  for i = 1, #fields, 1000 do
    redis.call('hset', hash, unpack(fields, i, math.min(i + 999, #fields)))
  end
end
-- Takes up to what is still wanted from `list` into queue i's in-progress hash; returns
-- true when the fetch must end here (a suspect was met). A grouped job met on a grouped
-- queue goes to its group instead.
local function take(i, list, name)
  local want = max - taken
  if want <= 0 then return false end
  local jobs = redis.call('rpop', list, want)
  if not jobs then return false end
  local index, fields, stop = tostring((i - 2) / 2), {}, nil
  for j = 1, #jobs do
    local job = jobs[j]
    if grouped[name] and string.find(job, '"psychiq_group"', 1, true) and group_route(prefix, name, job) then
      -- Routed: it runs in its group's turn.
    elseif string.find(job, '"recovery_count":', 1, true) then
      if taken == 0 then
        redis.call('hset', KEYS[i + 1], slot, job)
        out = { out[1], 's' .. index, job }
        stop = j + 1
      else
        stop = j
      end
      break
    else
      fields[#fields + 1] = slot
      fields[#fields + 1] = job
      out[#out + 1] = index
      out[#out + 1] = job
      slot = slot + 1
      taken = taken + 1
    end
  end
  if #fields > 0 then hold(KEYS[i + 1], fields) end
  if stop then
    for k = #jobs, stop, -1 do redis.call('rpush', list, jobs[k]) end
    return true
  end
  return false
end
-- Takes from queue i's groups with room, in turn, one job each per pass, at most `most`;
-- returns true when the fetch must end here (a suspect: taken alone, or left at the front
-- of its group for the next fetch).
local function take_grouped(i, name, most)
  local ready = gkey(prefix, 'grpready', name)
  local index = tostring((i - 2) / 2)
  local limit = taken + most
  while max - taken > 0 and taken < limit do
    local popped = redis.call('zpopmin', ready)
    if #popped == 0 then return end
    local group = popped[1]
    if redis.call('sismember', gkey(prefix, 'grppaused', name), group) == 0
      and group_room(prefix, name, group) then
      local list = gkey(prefix, 'grp', name, group)
      local job = redis.call('rpop', list)
      if job then
        local suspect = string.find(job, '"recovery_count":', 1, true)
        if suspect and taken > 0 then
          -- A suspect runs alone: back to the front of its group, for the next fetch.
          redis.call('rpush', list, job)
          group_wake(prefix, name, group)
          return true
        end
        redis.call('decr', gkey(prefix, 'grpwaiting', name))
        local ok, decoded = pcall(cjson.decode, job)
        local jid = job
        if ok and type(decoded) == 'table' and type(decoded['jid']) == 'string' then jid = decoded['jid'] end
        group_start(prefix, name, group, jid)
        redis.call('hset', KEYS[i + 1], slot, job)
        if suspect then
          out = { out[1], 's' .. index, job }
          taken = taken + 1
          slot = slot + 1
          group_wake(prefix, name, group)
          return true
        end
        out[#out + 1] = index
        out[#out + 1] = job
        slot = slot + 1
        taken = taken + 1
        group_wake(prefix, name, group)
      end
    else
      -- No room after all (its limit lowered, its rate spent): noted for when it has.
      group_wake(prefix, name, group)
    end
  end
end
for i = 2, #KEYS, 2 do
  if max - taken <= 0 then break end
  local name = ARGV[3 + (i - 2) / 2]
  if not paused[name] and grouped[name] then
    -- Route what waits at the tail of the queue's list, up to 500 jobs a fetch.
    for _ = 1, 500 do
      local tail = redis.call('lindex', KEYS[i], -1)
      if not tail or not string.find(tail, '"psychiq_group"', 1, true) then break end
      redis.call('rpop', KEYS[i])
      if not group_route(prefix, name, tail) then
        redis.call('rpush', KEYS[i], tail)
        break
      end
    end
    group_sweep(prefix, name)
    -- The queue's own lists get a share of every fetch: a busy group never starves a job
    -- without one (or with a priority), nor the routing of the jobs behind it.
    local most = max - taken
    if redis.call('llen', KEYS[i]) > 0 or prioritized[name] then most = math.max(1, math.floor(most / 2)) end
    if take_grouped(i, name, most) then return out end
  end
  if not paused[name] then
    if prioritized[name] then
      local left = 0
      for p = 9, 1, -1 do
        local list = prefix .. 'prio:' .. p .. ':' .. name
        if take(i, list, name) then return out end
        left = left + redis.call('llen', list)
      end
      -- Every priority list is empty: the queue is plain again until the next one.
      if left == 0 then redis.call('srem', prefix .. 'prioritized', name) end
    end
    if take(i, KEYS[i], name) then return out end
  end
end
-- Jobs still waiting in groups (for a slot, or for their turn): '|g' tells the server to
-- look again soon rather than block on the queue's list, which no release pushes to.
for q = 0, nqueues - 1 do
  local name = ARGV[3 + q]
  if grouped[name] and not paused[name]
    and tonumber(redis.call('get', gkey(prefix, 'grpwaiting', name)) or '0') > 0 then
    out[1] = out[1] .. '|g'
    break
  end
end
return out
