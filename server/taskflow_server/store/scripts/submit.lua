-- Submit N tasks atomically. ARGV[3] = idempotency TTL (s), ARGV[4] = N, then per task 10 values:
-- id, task_type, lane, priority, max_retries, payload, idempotency_key ('' = none), metadata ('' = none),
-- blob (the sha256 of the uploaded file the payload names, '' = none; the task holds a reference),
-- trace (the W3C traceparent of the submitting request, '' = none; kept as the hash's 'trace').
-- Returns per task: id, state, created (1 new, 0 an earlier task with the same idempotency key).
local idem_ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local out = {}
local woken = {}
for i = 0, n - 1 do
  local b = 5 + i * 10
  local id, ttype, lane, prio = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local max_retries, payload, idem, meta = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  local blob, trace = ARGV[b + 8], ARGV[b + 9]
  local existing = false
  if idem ~= '' then
    local first = redis.call('GET', k_idem(idem))
    if first and redis.call('EXISTS', k_task(first)) == 1 then
      out[#out + 1] = first
      out[#out + 1] = redis.call('HGET', k_task(first), 'state')
      out[#out + 1] = 0
      existing = true
    end
  end
  if not existing then
    local key = k_task(id)
    -- The fields in SUBMITTED_FIELDS order (see _lib.lua): what was submitted never changes.
    local sid = redis.call('XADD', K_SUBMITTED, '*', 'id', id, 'task_type', ttype, 'lane', lane,
                           'priority', prio, 'max_retries', max_retries, 'idempotency_key', idem,
                           'metadata', meta, 'payload', payload)
    redis.call('HSET', key, 'state', 'PENDING', 'sid', sid)
    if blob ~= '' and blob_hold(blob) then redis.call('HSET', key, 'blob', blob) end
    if trace ~= '' then redis.call('HSET', key, 'trace', trace) end
    if idem ~= '' then redis.call('SET', k_idem(idem), id, 'EX', idem_ttl) end
    redis.call('RPUSH', k_queue(lane, prio), id)
    count('PENDING', 1)
    event('task_created', id, '', 'PENDING', {'task_type', ttype})
    woken[lane] = (woken[lane] or 0) + 1
    out[#out + 1] = id
    out[#out + 1] = 'PENDING'
    out[#out + 1] = 1
  end
end
for lane, c in pairs(woken) do wake(lane, c) end
return out
