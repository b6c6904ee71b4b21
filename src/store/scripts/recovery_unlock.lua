-- Releases a lock only if it still holds our token.
-- Used by server/recovery.rs.
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
