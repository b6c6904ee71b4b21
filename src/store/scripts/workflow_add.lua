-- Adds step ARGV[3] to running workflow ARGV[2] (ARGV[1] the namespace prefix) while it
-- runs: its job ARGV[4] (the payload without its final '}'), its queue ARGV[5], its parents
-- ARGV[6] (a JSON array of step names, each already in the workflow), now ARGV[7]. It
-- starts at once if every parent has succeeded, is skipped if one will never succeed, and
-- otherwise waits. Adding a step that exists changes nothing (a step that adds steps may
-- run twice). Returns 1 if added, 0 if it existed, -1 for a parent that is not a step,
-- -2 if the workflow is over.
local prefix, wid, step, job, queue, parents, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local base = prefix .. 'wf:' .. wid
local function k(suffix) return base .. ':' .. suffix end
if redis.call('hexists', k('state'), step) == 1 then return 0 end
if redis.call('hget', base, 'finished_at') then return -2 end
if redis.call('exists', base) == 0 then return -2 end
local list = cjson.decode(parents)
local pending, doomed = 0, false
for _, p in ipairs(list) do
  local s = redis.call('hget', k('state'), p)
  if not s then return -1 end
  if s == 'dead' or s == 'skipped' then doomed = true end
  if s ~= 'succeeded' then pending = pending + 1 end
end
for _, p in ipairs(list) do
  local kids = redis.call('hget', k('children'), p)
  kids = kids and cjson.decode(kids) or {}
  table.insert(kids, step)
  redis.call('hset', k('children'), p, cjson.encode(kids))
end
redis.call('hset', k('jobs'), step, job)
redis.call('hset', k('queues'), step, queue)
redis.call('hset', k('parents'), step, parents)
redis.call('hset', k('jids'), step, cjson.decode(job .. '}')['jid'])
redis.call('hset', k('pending'), step, pending)
redis.call('hincrby', base, 'total', 1)
for _, suffix in ipairs({'children', 'jobs', 'queues', 'parents', 'jids', 'pending', 'state'}) do
  keep(base, k(suffix))
end
if doomed or redis.call('hget', base, 'state') ~= 'running' then
  redis.call('hset', k('state'), step, 'skipped')
  redis.call('hincrby', base, 'skipped', 1)
elseif pending == 0 then
  redis.call('hset', k('state'), step, 'enqueued')
  redis.call('sadd', prefix .. 'queues', queue)
  redis.call('lpush', prefix .. 'queue:' .. queue, job .. ',"enqueued_at":' .. now .. '}')
else
  redis.call('hset', k('state'), step, 'waiting')
end
return 1
