-- Pauses, resumes or sets the limit of group ARGV[3] of queue ARGV[2] (ARGV[1] the prefix):
-- ARGV[4] is 'pause', 'resume' or 'limit' (with ARGV[5] the limit). A resumed group, or one
-- given more room, rejoins the round at once. Used by api/groups.rs.
local prefix, name, group, verb = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if verb == 'pause' then
  return redis.call('sadd', gkey(prefix, 'grppaused', name), group)
elseif verb == 'resume' then
  local changed = redis.call('srem', gkey(prefix, 'grppaused', name), group)
  group_wake(prefix, name, group)
  return changed
else
  redis.call('hset', gkey(prefix, 'grplimit', name), group, tonumber(ARGV[5]))
  group_wake(prefix, name, group)
  return 1
end
