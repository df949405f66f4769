-- Delete a task from every structure, whatever its state (an ACTIVE task's worker finds its lease
-- gone and drops the result), saved parts included. ARGV[3] id. Returns 1 deleted, 0 missing.
local id = ARGV[3]
local key = k_task(id)
local state = redis.call('HGET', key, 'state')
if not state then return 0 end
local s, sid = submitted(key)
unlink(id, key, s.lane)
local idem = s.idempotency_key or ''
if idem ~= '' and redis.call('GET', k_idem(idem)) == id then redis.call('DEL', k_idem(idem)) end
drop_submitted(sid)
redis.call('DEL', key, k_parts(id))
count(state, -1)
event('task_deleted', id, state, '')
return 1
