-- Replays one buffered write (client/spool.rs) once: ARGV[1] is its marker key, ARGV[2]
-- the marker's life in seconds, then each command as its length and its words. If the
-- marker is already set the write landed before (replayed twice, or pushed twice by an
-- app that restarted) and nothing is written. Returns 1 when written, 0 when skipped.
if not redis.call('set', ARGV[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
