-- Pushes a debounced job: KEYS[1] its debounce hash (jid, payload, first_at), KEYS[2] the
-- schedule; ARGV[1] the job (scheduled: no enqueued_at), ARGV[2] its jid, ARGV[3] its delay
-- and ARGV[4] its longest wait (0: none), in seconds. On Redis's clock: if the key's job is
-- still scheduled, it is replaced by this one (its arguments), keeping its jid, and is due
-- `delay` from now, but never later than `max_wait` after the first push it stands for;
-- otherwise this one is scheduled `delay` from now as the key's new job. Atomic, so
-- concurrent pushes make one job. Returns the jid the job has.
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local delay, max_wait = tonumber(ARGV[3]), tonumber(ARGV[4])
local payload, jid, first = ARGV[1], ARGV[2], now
local held = redis.call('hmget', KEYS[1], 'jid', 'payload', 'first_at')
if held[2] and redis.call('zscore', KEYS[2], held[2]) then
  redis.call('zrem', KEYS[2], held[2])
  first = tonumber(held[3])
  local from, to = string.find(payload, '"jid":"' .. jid .. '"', 1, true)
  if from then
    payload = string.sub(payload, 1, from - 1) .. '"jid":"' .. held[1] .. '"' .. string.sub(payload, to + 1)
  end
  jid = held[1]
end
local due = now + delay
if max_wait > 0 and first + max_wait < due then due = first + max_wait end
redis.call('zadd', KEYS[2], string.format('%.6f', due), payload)
redis.call('hset', KEYS[1], 'jid', jid, 'payload', payload, 'first_at', string.format('%.6f', first))
-- Kept a week past the due time: a poller down for hours must not let a push start a
-- second job while the first still waits.
redis.call('expire', KEYS[1], math.ceil(due - now) + 7 * 86400)
return jid
