-- Removes ARGV[1] from the sorted set KEYS[1] and, only if it was there, pushes ARGV[2] to
-- the queue KEYS[2] (adding ARGV[3] to the queue set KEYS[3], if given: in the cluster
-- layout it is in another slot, and the queue is known already).
-- Used by api/sets.rs.
if redis.call('zrem', KEYS[1], ARGV[1]) == 0 then return 0 end
if KEYS[3] then redis.call('sadd', KEYS[3], ARGV[3]) end
redis.call('lpush', KEYS[2], ARGV[2])
return 1
