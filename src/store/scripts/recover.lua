-- Moves recovered jobs back, each only if it was still in the dead owner's in-progress
-- store, so two recoverers (say, after a lock expired half-way) never push one job twice.
-- The store is a hash of slot → payload, or a list of payloads (what an earlier Psychiq
-- wrote: still recovered, so a rolling upgrade loses nothing).
-- KEYS: store, queue, dead set, and (not in the cluster layout, where it is in another
-- slot and the queue is known already) the queues set. ARGV: queue name, now, dead cutoff,
-- then (slot or old payload, new payload, "queue" | "dead") triples.
-- Used by server/recovery.rs.
local store, queue, dead, queues = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local name, now, cutoff = ARGV[1], ARGV[2], ARGV[3]
local hash = redis.call('type', store).ok == 'hash'
local moved, died = 0, 0
for i = 4, #ARGV, 3 do
  local removed
  if hash then removed = redis.call('hdel', store, ARGV[i]) else removed = redis.call('lrem', store, 1, ARGV[i]) end
  if removed == 1 then
    if ARGV[i + 2] == 'dead' then
      redis.call('zadd', dead, now, ARGV[i + 1])
      died = died + 1
    else
      if queues then redis.call('sadd', queues, name) end
      redis.call('rpush', queue, ARGV[i + 1])
    end
    moved = moved + 1
  end
end
if died > 0 then
  redis.call('zremrangebyscore', dead, '-inf', '(' .. cutoff)
  redis.call('zremrangebyrank', dead, 0, -10000)
end
return moved
