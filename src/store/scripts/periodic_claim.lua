-- Claims tick ARGV[2] of entry ARGV[1] and pushes its job ARGV[3] to queue KEYS[3] (name
-- ARGV[4], added to the queue set KEYS[4]), unless the entry is paused (KEYS[2]; the tick
-- is then noted in KEYS[5]) or a tick at or after it was taken already (KEYS[1]).
-- ARGV[5] = '1': a catch-up at start, only if some tick was taken before (not on a first
-- start) and the tick was not skipped while paused. Returns 1 when pushed, 0 when
-- taken, -1 when paused, -2 when not yet due by Redis's clock (a server whose clock runs
-- fast would otherwise claim it early and silence the entry until then).
-- Used by extensions/periodic.rs.
local t = redis.call('time')
if tonumber(ARGV[2]) > tonumber(t[1]) + tonumber(t[2]) / 1000000 + 0.5 then return -2 end
if redis.call('sismember', KEYS[2], ARGV[1]) == 1 then
  redis.call('hset', KEYS[5], ARGV[1], ARGV[2])
  return -1
end
local last = redis.call('hget', KEYS[1], ARGV[1])
if ARGV[5] == '1' then
  if not last then return 0 end
  local skipped = redis.call('hget', KEYS[5], ARGV[1])
  if skipped and tonumber(skipped) >= tonumber(ARGV[2]) then return 0 end
end
if last and tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('sadd', KEYS[4], ARGV[4])
redis.call('lpush', KEYS[3], ARGV[3])
return 1
