-- Cancel a task. ARGV[3] id. PENDING, SCHEDULED and DLQ tasks are CANCELLED at once; an ACTIVE
-- one gets a cancel request its worker honours at its next lease check. A CANCELLED task's
-- saved parts (checkpoint.lua) go with it.
-- Returns the state after the call, 'missing', or 'refused:<state>' for a finished task.
local id = ARGV[3]
local key = k_task(id)
local state = redis.call('HGET', key, 'state')
if not state then return 'missing' end
if state == 'ACTIVE' then
  redis.call('HSET', key, 'cancel_requested', '1', 'updated_at', NOW_S)
  event('task_cancel_requested', id, state, state)
  return 'ACTIVE'
end
if state == 'COMPLETED' or state == 'CANCELLED' then return 'refused:' .. state end
local s = submitted(key)
unlink(id, key, s.lane)
redis.call('ZADD', K_FINISHED, NOW_MS, id)
redis.call('DEL', k_parts(id))
transition(id, key, state, 'CANCELLED')
-- A waiting task cancelled: counted as finished, but no attempt ended (no duration).
metric('finished|cancelled|' .. (s.task_type or ''), 1)
return 'CANCELLED'
