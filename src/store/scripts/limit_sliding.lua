-- Sliding window: KEYS[1] a sorted set of grant times; ARGV size, interval ms, id.
-- Used by extensions/limits.rs.
local interval = tonumber(ARGV[2])
redis.call('zremrangebyscore', KEYS[1], '-inf', now - interval)
if redis.call('zcard', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('zadd', KEYS[1], now, ARGV[3])
  redis.call('pexpire', KEYS[1], interval)
  return 0
end
local oldest = redis.call('zrange', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + interval - now)
