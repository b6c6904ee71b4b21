-- Deletes the lock KEYS[1] if it still names jid ARGV[1] (one taken again by a later push
-- is not this job's to let go).
-- Used by server/departure.rs.
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0
