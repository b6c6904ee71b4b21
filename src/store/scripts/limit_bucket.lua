-- Token and leaky buckets, as GCRA: KEYS[1] the theoretical arrival time (ms); ARGV the
-- emission interval (ms between grants at the steady rate) and the tolerance (ms of burst).
-- Used by extensions/limits.rs.
local step = tonumber(ARGV[1])
local tat = tonumber(redis.call('get', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tonumber(ARGV[2]) then return math.max(1, tat - tonumber(ARGV[2]) - now) end
redis.call('set', KEYS[1], tat + step, 'PX', math.ceil(tat + step - now) + 1000)
return 0
