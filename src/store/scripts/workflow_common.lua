-- Shared by the workflow scripts (prepended to each): a hash a script makes after the push
-- lives as long as the workflow's own key `base`.
local function keep(base, key)
  if redis.call('ttl', key) == -1 then
    local ttl = redis.call('pttl', base)
    if ttl > 0 then redis.call('pexpire', key, ttl) end
  end
end
