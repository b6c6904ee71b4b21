-- Used by server/scheduler.rs.
-- KEYS: the sorted sets (retry, schedule), then in the cluster layout the queue they feed
-- and its dead set; ARGV: now (score), key prefix, batch size per set, enqueued_at text.
-- Returns {jobs moved, the most moved from one set}.
local now, prefix, batch, stamp = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
-- Sidekiq's layout: to the queue each job names. Cluster: to the sets' own queue (a job is
-- only ever put in the sets of the queue it will run in), in the same slot.
local own_queue, own_dead = KEYS[3], KEYS[4]
local function push(queue, job, priority)
  if own_queue then
    redis.call('lpush', own_queue, job)
  elseif priority then
    -- A job with a priority goes back to its priority list (see fetch.lua).
    redis.call('sadd', prefix .. 'queues', queue)
    redis.call('lpush', prefix .. 'prio:' .. priority .. ':' .. queue, job)
    redis.call('sadd', prefix .. 'prioritized', queue)
  else
    redis.call('sadd', prefix .. 'queues', queue)
    redis.call('lpush', prefix .. 'queue:' .. queue, job)
  end
end
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function digit(shift)
      local d = math.floor(n / shift) % 64
      return string.sub(alphabet, d + 1, d + 1)
    end
    out[#out + 1] = digit(262144) .. digit(4096) .. (b and digit(64) or '=') .. (c and digit(1) or '=')
  end
  return table.concat(out)
end
local most, total = 0, 0
for s = 1, 2 do
local set = KEYS[s]
local jobs = redis.call('zrangebyscore', set, '-inf', now, 'LIMIT', 0, batch)
if #jobs > most then most = #jobs end
total = total + #jobs
for _, job in ipairs(jobs) do
  redis.call('zrem', set, job)
  local ok, decoded = pcall(cjson.decode, job)
  if ok and type(decoded) == 'table' and type(decoded['class']) == 'string' then
    local queue = decoded['queue']
    if type(queue) ~= 'string' or queue == '' then queue = 'default' end
    local stamped = job
    local stamp_type = type(decoded['enqueued_at'])
    if stamp_type == 'nil' then
      local brace = string.find(job, '}%s*$')
      if brace then
        stamped = string.sub(job, 1, brace - 1) .. ',"enqueued_at":' .. stamp .. string.sub(job, brace)
      end
    elseif stamp_type == 'number' then
      -- Only a numeric top-level value is replaced, and only when it is the one numeric
      -- occurrence: one inside args must never be edited instead.
      local replaced, count = string.gsub(job, '"enqueued_at"%s*:%s*%-?[%d%.eE%+%-]+', '"enqueued_at":' .. stamp)
      if count == 1 then stamped = replaced end
    end
    local priority = decoded['psychiq_priority']
    if type(priority) == 'number' and priority >= 1 then
      priority = math.min(9, math.floor(priority))
    else
      priority = nil
    end
    push(queue, stamped, priority)
  elseif ok and type(decoded) == 'table' then
    -- JSON without a class: let a server report it (it goes to the dead set with a reason)
    push('default', job)
  else
    -- Bytes above 0x7F are shown as \xHH (they may not be UTF-8, which JSON needs) and the
    -- exact bytes kept in raw_base64, as the server wraps a bad payload.
    local shown = string.gsub(job, '[\128-\255]', function(c) return string.format('\\x%02x', string.byte(c)) end)
    local exact = ''
    if shown ~= job then exact = ',"raw_base64":"' .. base64(job) .. '"' end
    local reason = 'a member of ' .. set .. ' is not JSON; the original is the only argument'
    local dead = '{"retry":false,"queue":"default","class":"Psychiq::InvalidPayload","args":'
      .. cjson.encode({ shown }) .. exact .. ',"jid":"000000000000000000000000","error_message":'
      .. cjson.encode(reason) .. ',"error_class":"Psychiq::InvalidPayload","failed_at":'
      .. now .. ',"retry_count":0}'
    redis.call('zadd', own_dead or (prefix .. 'dead'), now, dead)
  end
end
end
return { total, most }
