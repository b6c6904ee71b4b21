-- A grouped job's run ended (ARGV: prefix, queue, group, jid), or its lease is renewed
-- (ARGV[5] = 'renew'): its slot is given up and the group rejoins the round if it has
-- more, or its lease runs GROUP_LEASE seconds from now. Used by extensions/groups.rs.
local prefix, name, group, jid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local run = gkey(prefix, 'grprun', name, group)
if ARGV[5] == 'renew' then
  return redis.call('zadd', run, 'XX', group_now() + GROUP_LEASE, jid)
end
redis.call('zrem', run, jid)
group_wake(prefix, name, group)
return 1
