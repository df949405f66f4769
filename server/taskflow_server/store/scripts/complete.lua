-- Complete N tasks. ARGV[3] = N, then per task: id, lease token, result (JSON text).
-- A task whose lease is not this token (reaped, deleted, cancelled) is left alone. A completed
-- task's saved parts (checkpoint.lua) are no longer needed: they go.
-- Returns per task: 1 completed, 0 stale.
local n = tonumber(ARGV[3])
local out = {}
for i = 0, n - 1 do
  local id, token, result = ARGV[4 + i * 3], ARGV[5 + i * 3], ARGV[6 + i * 3]
  local key = k_task(id)
  local f = redis.call('HMGET', key, 'state', 'lease', 'task_type', 'started_at')
  if f[1] == 'ACTIVE' and f[2] == token then
    attempt_ended(f[3], 'completed', f[4])
    redis.call('HSET', key, 'result', result, 'completed_at', NOW_S, 'progress', '1')
    redis.call('HDEL', key, 'lease', 'cancel_requested')
    redis.call('ZREM', K_ACTIVE, id)
    redis.call('ZADD', K_FINISHED, NOW_MS, id)
    redis.call('DEL', k_parts(id))
    transition(id, key, 'ACTIVE', 'COMPLETED')
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
