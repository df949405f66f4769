-- Record progress of a running task. ARGV[3] id, ARGV[4] token, ARGV[5] fraction, ARGV[6] message.
-- Returns 1, or 0 when the lease is not ours.
local id, token = ARGV[3], ARGV[4]
local key = k_task(id)
local f = redis.call('HMGET', key, 'state', 'lease')
if f[1] ~= 'ACTIVE' or f[2] ~= token then return 0 end
redis.call('HSET', key, 'progress', ARGV[5], 'progress_message', ARGV[6], 'updated_at', NOW_S)
event('task_progress', id, 'ACTIVE', 'ACTIVE', {'progress', ARGV[5], 'message', ARGV[6]})
return 1
