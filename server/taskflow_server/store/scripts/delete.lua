-- Delete a task from every structure, whatever its state (an ACTIVE task's worker finds its lease
-- gone and drops the result), saved parts included, and the uploaded file when it was the last
-- task to refer to it. ARGV[3] id. Returns 1 deleted, 0 missing.
local id = ARGV[3]
local key = k_task(id)
local state, blob = unpack(redis.call('HMGET', key, 'state', 'blob'))
if not state then return 0 end
local s, sid = submitted(key)
unlink(id, key, s.lane)
local idem = s.idempotency_key or ''
if idem ~= '' and redis.call('GET', k_idem(idem)) == id then redis.call('DEL', k_idem(idem)) end
drop_submitted(sid)
redis.call('DEL', key, k_parts(id))
if blob then blob_release(blob) end
count(state, -1)
event('task_deleted', id, state, '')
return 1
