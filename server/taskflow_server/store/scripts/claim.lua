-- Claim up to N pending tasks for one worker, with a lease.
-- ARGV[3] worker id, ARGV[4] lease token, ARGV[5] lease ms, ARGV[6] N,
-- ARGV[7] retry_every (every k-th claim prefers the retry queue; 0 = retries last),
-- ARGV[8] number of lanes, then per lane: name, limit (-1 = no limit).
-- Returns per task: id, task_type, retry_count, lost_leases, payload, trace (the submit's
-- traceparent, '' = none).
local worker, token = ARGV[3], ARGV[4]
local lease_ms, n, retry_every = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local lanes, limits = {}, {}
for i = 0, tonumber(ARGV[8]) - 1 do
  lanes[#lanes + 1] = ARGV[9 + i * 2]
  limits[ARGV[9 + i * 2]] = tonumber(ARGV[10 + i * 2])
end
local empty = {}
local function pop(lane, prio)
  local q = k_queue(lane, prio)
  if empty[q] or limits[lane] == 0 then return nil end
  local id = redis.call('LPOP', q)
  if not id then empty[q] = true return nil end
  return id, lane
end
local function pop_primary()
  for _, p in ipairs(PRIORITIES) do
    for _, lane in ipairs(lanes) do
      local id, l = pop(lane, p)
      if id then return id, l end
    end
  end
  return nil
end
local function pop_retry()
  for _, lane in ipairs(lanes) do
    local id, l = pop(lane, 'retry')
    if id then return id, l end
  end
  return nil
end
local out = {}
local claimed = 0
local seq = tonumber(redis.call('HGET', K_STATS, 'claims') or '0')
while claimed < n do
  seq = seq + 1
  local id, lane
  if retry_every > 0 and seq % retry_every == 0 then
    id, lane = pop_retry()
    if not id then id, lane = pop_primary() end
  else
    id, lane = pop_primary()
    if not id then id, lane = pop_retry() end
  end
  if not id then break end
  local key = k_task(id)
  local f = redis.call('HMGET', key, 'state', 'retry_count', 'lost_leases', 'updated_at', 'trace')
  if f[1] == 'PENDING' then
    local s, sid = submitted(key)
    local ttype = s.task_type or ''
    -- The type is kept in the hash too while the task runs: the scripts that end the attempt
    -- label their metrics with it without reading the submitted entry (and its payload).
    redis.call('HSET', key, 'worker_id', worker, 'lease', token, 'started_at', NOW_S,
               'task_type', ttype)
    redis.call('ZADD', K_ACTIVE, NOW_MS + lease_ms, id)
    -- Queue wait: since the task last became PENDING (updated_at: a promoted retry, a requeue),
    -- else since it was submitted (a new task's hash has no updated_at).
    local since_s = tonumber(f[4] or '')
    if not since_s then
      local ms = tonumber(string.match(sid or '', '^%d+'))
      if ms then since_s = ms / 1000 end
    end
    if since_s then claimed_after(ttype, since_s) end
    transition(id, key, 'PENDING', 'ACTIVE', {'worker_id', worker})
    if limits[lane] > 0 then limits[lane] = limits[lane] - 1 end
    out[#out + 1] = id
    out[#out + 1] = ttype
    out[#out + 1] = f[2] or '0'
    out[#out + 1] = f[3] or '0'
    out[#out + 1] = s.payload or '{}'
    out[#out + 1] = f[5] or ''
    claimed = claimed + 1
  end
end
if claimed > 0 then redis.call('HSET', K_STATS, 'claims', seq) end
return out
