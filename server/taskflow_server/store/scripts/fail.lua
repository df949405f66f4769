-- An attempt ended without a result. ARGV[3] id, ARGV[4] lease token, ARGV[5] mode:
--   'retry'   schedule a retry after ARGV[8] ms if retries are left, else dead-letter;
--   'dlq'     dead-letter now (permanent error);
--   'requeue' hand the task back to the front of its queue without using a retry
--             (graceful stop, or an upstream outage the breaker has taken over);
--   'cancel'  a cancel request was honoured: CANCELLED (its saved parts are dropped).
-- Every other mode keeps the task's saved parts (checkpoint.lua) for the next attempt.
-- ARGV[6] error type, ARGV[7] message, ARGV[8] delay ms.
-- Returns the new state, or 'stale:<state>' when the lease is not ours.
local id, token, mode = ARGV[3], ARGV[4], ARGV[5]
local etype, msg, delay = ARGV[6], ARGV[7], tonumber(ARGV[8])
local key = k_task(id)
local f = redis.call('HMGET', key, 'state', 'lease', 'retry_count', 'task_type', 'started_at')
if f[1] ~= 'ACTIVE' or f[2] ~= token then return 'stale:' .. tostring(f[1]) end
local s = submitted(key)
local ttype, started = f[4] or s.task_type, f[5]
local eclass = etype
if eclass == '' then eclass = 'unexpected' end
local lane, prio = s.lane, s.priority
local retries, max_retries = tonumber(f[3] or '0'), tonumber(s.max_retries or '0')
redis.call('ZREM', K_ACTIVE, id)
redis.call('HDEL', key, 'lease', 'cancel_requested')
if mode == 'requeue' then
  redis.call('LPUSH', k_queue(lane, prio), id)
  if etype ~= '' then redis.call('HSET', key, 'last_error', msg, 'error_type', etype) end
  transition(id, key, 'ACTIVE', 'PENDING', {'reason', msg})
  attempt_ended(ttype, 'requeued', started)
  wake(lane, 1)
  return 'PENDING'
end
if mode == 'cancel' then
  redis.call('ZADD', K_FINISHED, NOW_MS, id)
  redis.call('DEL', k_parts(id))
  transition(id, key, 'ACTIVE', 'CANCELLED')
  attempt_ended(ttype, 'cancelled', started)
  return 'CANCELLED'
end
local new
if mode == 'retry' and retries < max_retries then new = 'SCHEDULED' else new = 'DLQ' end
append_json(key, 'error_history', cjson.encode({
  timestamp = NOW_MS / 1000, error = msg, error_type = etype, retry_count = retries,
  state_transition = 'ACTIVE -> ' .. new}))
redis.call('HSET', key, 'last_error', msg, 'error_type', etype)
history(key, 'FAILED')
if new == 'SCHEDULED' then
  local due = NOW_MS + math.max(0, delay)
  redis.call('HSET', key, 'retry_count', retries + 1, 'scheduled_at', NOW_S,
             'retry_after', string.format('%.3f', due / 1000))
  redis.call('ZADD', K_SCHEDULED, due, id)
  attempt_ended(ttype, 'failed', started)
  metric('retries|' .. eclass, 1)
else
  redis.call('HSET', key, 'dlq_at', NOW_S)
  redis.call('ZADD', K_DLQ, NOW_MS, id)
  attempt_ended(ttype, 'dlq', started)
  metric('dead_letters|' .. eclass, 1)
end
transition(id, key, 'ACTIVE', new, {'error_type', etype})
return new
