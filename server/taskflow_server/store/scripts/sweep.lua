-- Delete up to ARGV[4] finished (COMPLETED/CANCELLED) tasks that finished before ARGV[3] ms ago.
-- Their uploaded files go with the last task that refers to them, and up to ARGV[4] orphan
-- uploads (no task refers to them) whose retention is over are deleted too.
-- Returns the number of tasks deleted.
local cutoff = NOW_MS - tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local key = k_task(id)
  local state, blob = unpack(redis.call('HMGET', key, 'state', 'blob'))
  redis.call('ZREM', K_FINISHED, id)
  if state then
    local s, sid = submitted(key)
    local idem = s.idempotency_key or ''
    if idem ~= '' and redis.call('GET', k_idem(idem)) == id then redis.call('DEL', k_idem(idem)) end
    drop_submitted(sid)
    redis.call('DEL', key)
    if blob then blob_release(blob) end
    count(state, -1)
    event('task_expired', id, state, '')
  end
end
blob_purge(tonumber(ARGV[4]))
return #ids
