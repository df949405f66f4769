-- Delete up to ARGV[4] finished (COMPLETED/CANCELLED) tasks that finished before ARGV[3] ms ago.
-- Returns the number deleted.
local cutoff = NOW_MS - tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local key = k_task(id)
  local state = redis.call('HGET', key, 'state')
  redis.call('ZREM', K_FINISHED, id)
  if state then
    local s, sid = submitted(key)
    local idem = s.idempotency_key or ''
    if idem ~= '' and redis.call('GET', k_idem(idem)) == id then redis.call('DEL', k_idem(idem)) end
    drop_submitted(sid)
    redis.call('DEL', key)
    count(state, -1)
    event('task_expired', id, state, '')
  end
end
return #ids
