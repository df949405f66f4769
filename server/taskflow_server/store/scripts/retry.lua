-- Manual retry of a dead-lettered (or FAILED) task. ARGV[3] id, ARGV[4] '1' to reset the count.
-- Returns 'PENDING', 'missing' or 'refused:<state>'.
local id, reset = ARGV[3], ARGV[4]
local key = k_task(id)
local f = redis.call('HMGET', key, 'state', 'lane')
if not f[1] then return 'missing' end
if f[1] ~= 'DLQ' and f[1] ~= 'FAILED' then return 'refused:' .. f[1] end
unlink(id, key)
if reset == '1' then redis.call('HSET', key, 'retry_count', 0) end
redis.call('HSET', key, 'lost_leases', 0)
redis.call('HDEL', key, 'dlq_at', 'completed_at', 'result')
redis.call('RPUSH', k_queue(f[2], 'retry'), id)
transition(id, key, f[1], 'PENDING', {'reason', 'manual_retry'})
wake(f[2], 1)
return 'PENDING'
