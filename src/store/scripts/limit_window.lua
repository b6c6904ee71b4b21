-- Fixed window: KEYS[1] a hash {w = window index, n = count}; ARGV size, interval ms.
-- Used by extensions/limits.rs.
local interval = tonumber(ARGV[2])
local index = math.floor(now / interval)
local n = 0
if tonumber(redis.call('hget', KEYS[1], 'w') or -1) == index then
  n = tonumber(redis.call('hget', KEYS[1], 'n') or 0)
end
if n < tonumber(ARGV[1]) then
  redis.call('hset', KEYS[1], 'w', index, 'n', n + 1)
  redis.call('pexpire', KEYS[1], interval * 2)
  return 0
end
-- Over: the k-th job turned away in this window comes back in the window after the
-- next k / size, so a burst spreads over the windows it needs instead of all coming back
-- at the next one (and snoozing again, most of it, every window).
local over = 1
if tonumber(redis.call('hget', KEYS[1], 'ow') or -1) == index then
  over = tonumber(redis.call('hincrby', KEYS[1], 'o', 1))
else
  redis.call('hset', KEYS[1], 'ow', index, 'o', 1)
end
redis.call('pexpire', KEYS[1], interval * 2)
return (index + 1) * interval - now + math.floor((over - 1) / tonumber(ARGV[1])) * interval
