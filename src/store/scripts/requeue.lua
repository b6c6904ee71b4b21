-- Pushes jobs back where they are popped next; with reliable fetch only those still in
-- their in-progress hash (one that finished meanwhile is not run again).
-- ARGV: (in-progress hash or "", its field, queue key, payload) quadruples.
-- Used by server/manager.rs.
local moved = 0
for i = 1, #ARGV, 4 do
  if ARGV[i] == '' or redis.call('hdel', ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('rpush', ARGV[i + 2], ARGV[i + 3])
    moved = moved + 1
  end
end
return moved
