-- Deletes each lock KEYS[i] that still holds ARGV[i] (one taken again by a later push
-- after it expired is not this job's to let go); returns how many went.
-- Used by extensions/unique.rs.
local gone = 0
for i = 1, #KEYS do
  if redis.call('get', KEYS[i]) == ARGV[i] then gone = gone + redis.call('del', KEYS[i]) end
end
return gone
