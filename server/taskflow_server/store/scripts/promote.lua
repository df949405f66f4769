-- Move up to ARGV[3] due SCHEDULED tasks to their lane's retry queue. Returns the number moved.
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', NOW_MS, 'LIMIT', 0, limit)
local woken = {}
for _, id in ipairs(due) do
  redis.call('ZREM', K_SCHEDULED, id)
  local key = k_task(id)
  if redis.call('HGET', key, 'state') == 'SCHEDULED' then
    local lane = submitted(key).lane
    redis.call('RPUSH', k_queue(lane, 'retry'), id)
    transition(id, key, 'SCHEDULED', 'PENDING')
    woken[lane] = (woken[lane] or 0) + 1
  end
end
for lane, c in pairs(woken) do wake(lane, c) end
return #due
