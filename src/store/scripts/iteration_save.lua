-- Saves cursor ARGV[1] in KEYS[1] (and the time ARGV[2] in the index KEYS[2] under jid
-- ARGV[3]); returns whether the job was cancelled meanwhile.
-- Used by extensions/iteration.rs.
redis.call('hset', KEYS[1], 'c', ARGV[1], 'at', ARGV[2])
redis.call('expire', KEYS[1], ARGV[4])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[3])
return redis.call('hget', KEYS[1], 'cancelled') or ''
