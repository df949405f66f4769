-- Manual retry of a dead-lettered, FAILED or CANCELLED task. ARGV[3] id, ARGV[4] '1' to reset the
-- count. A CANCELLED task also sits in the finished set (its retention clock): unlink drops it.
-- Returns 'PENDING', 'missing' or 'refused:<state>'.
local id, reset = ARGV[3], ARGV[4]
local key = k_task(id)
local state = redis.call('HGET', key, 'state')
if not state then return 'missing' end
if state ~= 'DLQ' and state ~= 'FAILED' and state ~= 'CANCELLED' then
  return 'refused:' .. state
end
local lane = submitted(key).lane
unlink(id, key, lane)
if reset == '1' then redis.call('HSET', key, 'retry_count', 0) end
redis.call('HSET', key, 'lost_leases', 0)
redis.call('HDEL', key, 'dlq_at', 'completed_at', 'result', 'cancel_requested')
redis.call('RPUSH', k_queue(lane, 'retry'), id)
transition(id, key, state, 'PENDING', {'reason', 'manual_retry'})
wake(lane, 1)
return 'PENDING'
