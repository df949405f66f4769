-- Requeue up to ARGV[3] tasks whose lease expired (their worker died or stalled). A task that
-- lost ARGV[4] leases is poison: it goes to the DLQ instead.
-- Returns {requeued, dead_lettered}.
local limit, max_lost = tonumber(ARGV[3]), tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', NOW_MS, 'LIMIT', 0, limit)
local requeued, dead = 0, 0
local woken = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', K_ACTIVE, id)
  local key = k_task(id)
  local f = redis.call('HMGET', key, 'state', 'worker_id', 'retry_count', 'task_type',
                       'started_at')
  if f[1] == 'ACTIVE' then
    local lost = redis.call('HINCRBY', key, 'lost_leases', 1)
    redis.call('HDEL', key, 'lease', 'cancel_requested')
    local msg = 'lease expired (worker ' .. tostring(f[2]) .. ' stopped or stalled)'
    if lost >= max_lost then
      msg = 'poison task: lost its lease ' .. lost .. ' times'
      append_json(key, 'error_history', cjson.encode({
        timestamp = NOW_MS / 1000, error = msg, error_type = 'poison',
        retry_count = tonumber(f[3] or '0'), state_transition = 'ACTIVE -> DLQ'}))
      redis.call('HSET', key, 'last_error', msg, 'error_type', 'poison', 'dlq_at', NOW_S)
      redis.call('ZADD', K_DLQ, NOW_MS, id)
      transition(id, key, 'ACTIVE', 'DLQ', {'error_type', 'poison'})
      attempt_ended(f[4], 'dlq', f[5])
      metric('dead_letters|poison', 1)
      dead = dead + 1
    else
      local s = submitted(key)
      local lane = s.lane
      redis.call('LPUSH', k_queue(lane, s.priority), id)
      redis.call('HSET', key, 'last_error', msg, 'error_type', 'lease_expired')
      transition(id, key, 'ACTIVE', 'PENDING', {'reason', 'lease_expired'})
      attempt_ended(f[4] or s.task_type, 'lost', f[5])
      woken[lane] = (woken[lane] or 0) + 1
      requeued = requeued + 1
    end
  end
end
for lane, c in pairs(woken) do wake(lane, c) end
return {requeued, dead}
