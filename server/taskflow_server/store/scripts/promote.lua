-- Move up to ARGV[3] due SCHEDULED tasks to their lane's retry queue. Returns the number moved.
local limit = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', NOW_MS, 'LIMIT', 0, limit)
local woken = {}
for _, id in ipairs(due) do
  redis.call('ZREM', K_SCHEDULED, id)
  local key = k_task(id)
  local f = redis.call('HMGET', key, 'state', 'lane')
  if f[1] == 'SCHEDULED' then
    redis.call('RPUSH', k_queue(f[2], 'retry'), id)
    transition(id, key, 'SCHEDULED', 'PENDING')
    woken[f[2]] = (woken[f[2]] or 0) + 1
  end
end
for lane, c in pairs(woken) do wake(lane, c) end
return #due
