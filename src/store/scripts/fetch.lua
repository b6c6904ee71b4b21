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
-- true when the fetch must end here (a suspect was met).
local function take(i, list)
  local want = max - taken
  if want <= 0 then return false end
  local jobs = redis.call('rpop', list, want)
  if not jobs then return false end
  local index, fields, stop = tostring((i - 2) / 2), {}, nil
  for j = 1, #jobs do
    local job = jobs[j]
    if string.find(job, '"recovery_count":', 1, true) then
      if taken == 0 then
        redis.call('hset', KEYS[i + 1], slot, job)
        out = { out[1], 's' .. index, job }
        stop = j + 1
      else
        stop = j
      end
      break
    end
    fields[#fields + 1] = slot
    fields[#fields + 1] = job
    out[#out + 1] = index
    out[#out + 1] = job
    slot = slot + 1
    taken = taken + 1
  end
  if #fields > 0 then hold(KEYS[i + 1], fields) end
  if stop then
    for k = #jobs, stop, -1 do redis.call('rpush', list, jobs[k]) end
    return true
  end
  return false
end
for i = 2, #KEYS, 2 do
  if max - taken <= 0 then break end
  local name = ARGV[3 + (i - 2) / 2]
  if not paused[name] then
    if prioritized[name] then
      local left = 0
      for p = 9, 1, -1 do
        local list = prefix .. 'prio:' .. p .. ':' .. name
        if take(i, list) then return out end
        left = left + redis.call('llen', list)
      end
      -- Every priority list is empty: the queue is plain again until the next one.
      if left == 0 then redis.call('srem', prefix .. 'prioritized', name) end
    end
    if take(i, KEYS[i]) then return out end
  end
end
return out
