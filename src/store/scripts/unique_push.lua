-- Takes the lock KEYS[1] for jid ARGV[1] for ARGV[2] seconds and, only then, writes the
-- job ARGV[3]: to the queue KEYS[3] (naming ARGV[4] in the set KEYS[2]) or, with a score
-- ARGV[5], to the schedule KEYS[3]. Returns the jid that holds the lock: ARGV[1] if this
-- push wrote its job, else the pending job's.
-- Used by job/unique.rs.
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return redis.call('get', KEYS[1]) or ''
end
if ARGV[5] == '' then
  redis.call('sadd', KEYS[2], ARGV[4])
  redis.call('lpush', KEYS[3], ARGV[3])
else
  redis.call('zadd', KEYS[3], ARGV[5], ARGV[3])
end
return ARGV[1]
