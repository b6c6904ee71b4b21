-- Pauses, resumes or sets the limit of group ARGV[3] of queue ARGV[2] (ARGV[1] the prefix):
-- ARGV[4] is 'pause', 'resume', 'limit' (ARGV[5] the limit) or 'rate' (ARGV[5] 'COUNT/SECONDS',
-- or 'none'). A resumed group, or one given more room, rejoins the round at once. Used
-- by api/groups.rs.
local prefix, name, group, verb = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if verb == 'pause' then
  return redis.call('sadd', gkey(prefix, 'grppaused', name), group)
elseif verb == 'resume' then
  local changed = redis.call('srem', gkey(prefix, 'grppaused', name), group)
  group_wake(prefix, name, group)
  return changed
elseif verb == 'rate' then
  -- 'none' stays as a mark, so later pushes that name a rate do not set one again.
  redis.call('hset', gkey(prefix, 'grprate', name), group, ARGV[5])
  group_wake(prefix, name, group)
  return 1
else
  redis.call('hset', gkey(prefix, 'grplimit', name), group, tonumber(ARGV[5]))
  group_wake(prefix, name, group)
  return 1
end
