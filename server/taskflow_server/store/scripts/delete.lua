-- Delete a task from every structure, whatever its state (an ACTIVE task's worker finds its lease
-- gone and drops the result). ARGV[3] id. Returns 1 deleted, 0 missing.
local id = ARGV[3]
local key = k_task(id)
local f = redis.call('HMGET', key, 'state', 'idempotency_key')
if not f[1] then return 0 end
unlink(id, key)
redis.call('ZREM', K_TASKS, id)
if f[2] and redis.call('GET', k_idem(f[2])) == id then redis.call('DEL', k_idem(f[2])) end
redis.call('DEL', key, k_payload(id))
count(f[1], -1)
event('task_deleted', id, f[1], '')
return 1
