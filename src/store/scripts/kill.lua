-- Removes ARGV[1] from KEYS[1] (a list when ARGV[4] is 'list') and, only if it was there,
-- adds ARGV[2] to the dead set KEYS[2] at ARGV[3], trimmed as Sidekiq trims it.
-- Used by api/sets.rs.
local removed
if ARGV[4] == 'list' then removed = redis.call('lrem', KEYS[1], 1, ARGV[1])
else removed = redis.call('zrem', KEYS[1], ARGV[1]) end
if removed == 0 then return 0 end
redis.call('zadd', KEYS[2], ARGV[3], ARGV[2])
redis.call('zremrangebyscore', KEYS[2], '-inf', '(' .. ARGV[5])
redis.call('zremrangebyrank', KEYS[2], 0, -tonumber(ARGV[6]))
return 1
