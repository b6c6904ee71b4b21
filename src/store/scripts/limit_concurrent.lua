-- Concurrent: KEYS[1] a sorted set of lease ids scored by expiry (ms); ARGV size, lease
-- ms, id. Returns 0 when granted, else a wait hint in ms. The key's TTL is only ever
-- raised, so holders with different leases never see it lapse under a longer one.
-- Used by extensions/limits.rs.
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  if redis.call('pttl', KEYS[1]) < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[1], ARGV[2]) end
  return 0
end
return 50
