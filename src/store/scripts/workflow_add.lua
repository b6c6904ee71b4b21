-- Adds step ARGV[3] to running workflow ARGV[2] (ARGV[1] the namespace prefix) while it
-- runs: its job ARGV[4] (the payload without its final '}'), its queue ARGV[5], its parents
-- ARGV[6] (a JSON array of step names, each already in the workflow), now ARGV[7]. It
-- starts at once if every parent has succeeded, is skipped if one will never succeed, and
-- otherwise waits. Adding a step that exists changes nothing (a step that adds steps may
-- run twice). Returns 1 if added, 0 if it existed, -1 for a parent that is not a step,
-- -2 if the workflow is over.
local wid, step, job, queue, parents, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local base = wkey(wid)
if step_state(wid, step) then return 0 end
if redis.call('exists', base) == 0 or redis.call('hget', base, 'finished_at') then return -2 end
local list = cjson.decode(parents)
local pending, doomed = 0, false
for _, p in ipairs(list) do
  local s = step_state(wid, p)
  if not s or s == 'standby' then return -1 end
  if s == 'dead' or s == 'skipped' then doomed = true end
  if s ~= 'succeeded' then pending = pending + 1 end
end
for _, p in ipairs(list) do
  local kids = list_of(wid, 'children', p)
  table.insert(kids, step)
  redis.call('hset', wkey(wid, 'children'), p, cjson.encode(kids))
end
redis.call('hset', wkey(wid, 'jobs'), step, job)
redis.call('hset', wkey(wid, 'queues'), step, queue)
redis.call('hset', wkey(wid, 'parents'), step, parents)
redis.call('hset', wkey(wid, 'jids'), step, cjson.decode(job .. '}')['jid'])
redis.call('hset', wkey(wid, 'pending'), step, pending)
redis.call('hincrby', base, 'total', 1)
for _, suffix in ipairs({'children', 'jobs', 'queues', 'parents', 'jids', 'pending', 'state'}) do
  keep(wid, suffix)
end
if doomed or redis.call('hget', base, 'state') ~= 'running' then
  set_state(wid, step, 'skipped')
  redis.call('hincrby', base, 'skipped', 1)
else
  set_state(wid, step, 'waiting')
  if pending == 0 then start_step(wid, step, now) end
end
return 1
