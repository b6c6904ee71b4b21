-- Renews lease ARGV[2] in KEYS[1] for ARGV[1] ms; 0 if it had lapsed meanwhile.
-- Used by extensions/limits.rs.
local renewed = redis.call('zadd', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2])
if redis.call('pttl', KEYS[1]) < tonumber(ARGV[1]) then redis.call('pexpire', KEYS[1], ARGV[1]) end
return renewed
