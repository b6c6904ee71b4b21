-- Marks job ARGV[1] cancelled: adds it to the sorted set KEYS[1] scored by Redis's clock
-- (every server reads the set to stop the jobs it runs), and forgets marks older than
-- ARGV[2] seconds. Returns the score as a string.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return tostring(now)
