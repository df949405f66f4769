-- Repair: for the given ids, put a task that sits in no structure back where its state says.
-- With leases this finds nothing on a healthy system. ARGV[3..] ids. Returns the ids repaired.
local fixed = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = k_task(id)
  local s = redis.call('HGET', key, 'state')
  if s == 'PENDING' then
    local lane = submitted(key).lane
    local found = false
    for _, p in ipairs({'high', 'default', 'low', 'retry'}) do
      if redis.call('LPOS', k_queue(lane, p), id) then found = true break end
    end
    if not found then
      redis.call('RPUSH', k_queue(lane, 'retry'), id)
      wake(lane, 1)
      fixed[#fixed + 1] = id
    end
  elseif s == 'ACTIVE' and not redis.call('ZSCORE', K_ACTIVE, id) then
    redis.call('ZADD', K_ACTIVE, NOW_MS, id)
    fixed[#fixed + 1] = id
  elseif s == 'SCHEDULED' and not redis.call('ZSCORE', K_SCHEDULED, id) then
    redis.call('ZADD', K_SCHEDULED, NOW_MS, id)
    fixed[#fixed + 1] = id
  elseif s == 'DLQ' and not redis.call('ZSCORE', K_DLQ, id) then
    redis.call('ZADD', K_DLQ, NOW_MS, id)
    fixed[#fixed + 1] = id
  end
end
return fixed
