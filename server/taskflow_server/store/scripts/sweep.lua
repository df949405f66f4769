-- Delete up to ARGV[4] finished (COMPLETED/CANCELLED) tasks that finished before ARGV[3] ms ago.
-- Returns the number deleted.
local cutoff = NOW_MS - tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local key = k_task(id)
  local f = redis.call('HMGET', key, 'state', 'idempotency_key')
  redis.call('ZREM', K_FINISHED, id)
  redis.call('ZREM', K_TASKS, id)
  if f[1] then
    if f[2] and redis.call('GET', k_idem(f[2])) == id then redis.call('DEL', k_idem(f[2])) end
    redis.call('DEL', key, k_payload(id))
    count(f[1], -1)
    event('task_expired', id, f[1], '')
  end
end
return #ids
