-- Shared helpers, prepended to every transition script by store/queue.py.
-- Every script is called with KEYS[1] = the counts hash (it routes the call to the slot of the
-- hash tag on Redis Cluster) and ARGV[1] = the tag "{prefix}", ARGV[2] = the event log cap.
-- Script-specific arguments start at ARGV[3].

local unpack = unpack or table.unpack
local TAG = ARGV[1]
local EVENTS_MAXLEN = tonumber(ARGV[2])
local K_COUNTS = KEYS[1]
local K_SCHEDULED = TAG .. ':scheduled'
local K_ACTIVE = TAG .. ':active'
local K_DLQ = TAG .. ':dlq'
local K_FINISHED = TAG .. ':finished'
local K_SUBMITTED = TAG .. ':submitted'
local K_STATS = TAG .. ':stats'
local K_EVENTS = TAG .. ':events'
local PRIORITIES = {'high', 'default', 'low'}
local WAKE_CAP = 64

local function k_task(id) return TAG .. ':task:' .. id end
local function k_queue(lane, prio) return TAG .. ':q:' .. lane .. ':' .. prio end
local function k_wake(lane) return TAG .. ':wake:' .. lane end
local function k_idem(key) return TAG .. ':idem:' .. key end
-- The parts a task already paid for (checkpoint.lua); kept across retries, dropped at its end.
local function k_parts(id) return TAG .. ':parts:' .. id end

-- Redis server time in milliseconds (one clock for every worker and API process).
local T = redis.call('TIME')
local NOW_MS = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local NOW_S = string.format('%.3f', NOW_MS / 1000)

-- Uploaded files (blobs), reference-counted by the tasks whose payload names them (the task
-- hash's 'blob' field). A blob no task refers to is an orphan: it expires 'blob_ttl_seconds'
-- after its upload (key TTL, and K_BLOB_ORPHANS for the accounting); a referenced blob has no
-- expiry and is deleted with the last task that refers to it. K_BLOB_SIZES and K_BLOB_BYTES
-- hold what the quota counts.
local K_BLOB_SIZES = TAG .. ':blob_sizes'
local K_BLOB_BYTES = TAG .. ':blob_bytes'
local K_BLOB_REFS = TAG .. ':blob_refs'
local K_BLOB_ORPHANS = TAG .. ':blob_orphans'
local function k_blob(sha) return TAG .. ':blob:' .. sha end

-- Drop a blob and its accounting (it may already be gone, e.g. expired).
local function blob_forget(sha)
  local size = redis.call('HGET', K_BLOB_SIZES, sha)
  redis.call('DEL', k_blob(sha))
  redis.call('HDEL', K_BLOB_REFS, sha)
  redis.call('ZREM', K_BLOB_ORPHANS, sha)
  if size then
    redis.call('HDEL', K_BLOB_SIZES, sha)
    redis.call('DECRBY', K_BLOB_BYTES, size)
  end
end

-- The size of a stored blob, accounting for it if it predates the accounting; nil (and stale
-- accounting dropped) when the blob is not stored.
local function blob_size(sha)
  if redis.call('EXISTS', k_blob(sha)) == 0 then
    if redis.call('HEXISTS', K_BLOB_SIZES, sha) == 1 then blob_forget(sha) end
    return nil
  end
  local size = redis.call('HGET', K_BLOB_SIZES, sha)
  if size then return tonumber(size) end
  local n = redis.call('STRLEN', k_blob(sha))
  redis.call('HSET', K_BLOB_SIZES, sha, n)
  redis.call('INCRBY', K_BLOB_BYTES, n)
  return n
end

-- A new task refers to the blob: count it, and keep the blob while referenced. Returns true
-- when the blob is stored (else the task's worker will report it missing).
local function blob_hold(sha)
  if not blob_size(sha) then return false end
  redis.call('HINCRBY', K_BLOB_REFS, sha, 1)
  redis.call('ZREM', K_BLOB_ORPHANS, sha)
  redis.call('PERSIST', k_blob(sha))
  return true
end

-- A task that referred to the blob is gone: delete the blob with its last task.
local function blob_release(sha)
  if not sha or sha == '' then return end
  if redis.call('HINCRBY', K_BLOB_REFS, sha, -1) <= 0 then blob_forget(sha) end
end

-- Delete up to 'limit' orphan blobs whose time is up; returns how many.
local function blob_purge(limit)
  local shas = redis.call('ZRANGEBYSCORE', K_BLOB_ORPHANS, '-inf', NOW_MS, 'LIMIT', 0, limit)
  for _, sha in ipairs(shas) do blob_forget(sha) end
  return #shas
end

-- State counter changes are summed in a table and written once by flush_counts(), which every
-- script calls last: a batch of 100 transitions costs one HINCRBY per state, not 200.
local COUNT_DELTAS = {}
local function count(state, delta)
  COUNT_DELTAS[state] = (COUNT_DELTAS[state] or 0) + delta
end

-- Prometheus counters and histograms (observability/metrics.py renders them), one hash of
-- running totals beside the state they count. A field is '<metric>|<label values>', the free-text
-- label (task type) last; a histogram field is '<metric>|<bucket>|<labels>' with <bucket> the
-- 0-based index of the first bound >= the value (#BUCKETS = +Inf), or 's' for the sum of the
-- observations. Buckets are not cumulative here and there is no count field: the scrape sums
-- them. Like the state counters, changes are gathered in tables (keyed by label, so no field
-- name is built per task) and written by flush_counts(): a batch costs one HINCRBY per distinct
-- field, not one per task.
local K_METRICS = TAG .. ':metrics'
-- Upper bounds (seconds) of the task duration and queue wait buckets; the same list is
-- observability/metrics.py's TASK_BUCKETS (a unit test compares them).
local BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
                 1800, 3600}
local NOW_SEC = NOW_MS / 1000
local METRIC_INCR = {}   -- field -> delta (rare events: retries, dead letters, cancellations)
local ENDED = {}         -- outcome -> task type -> {n = attempts, s = seconds, [bucket] = count}
local WAITED = {}        -- task type -> {s = seconds, [bucket] = count}
local function metric(field, delta)
  METRIC_INCR[field] = (METRIC_INCR[field] or 0) + delta
end
local function observe(rec, seconds)
  if seconds < 0 then seconds = 0 end
  local i = 0
  while i < #BUCKETS and seconds > BUCKETS[i + 1] do i = i + 1 end
  rec[i] = (rec[i] or 0) + 1
  rec.s = rec.s + seconds
end
-- An attempt ended (ACTIVE -> 'outcome'): count it and observe its duration since 'started'
-- (the task hash's started_at, '%.3f' epoch seconds; false when unset).
local function attempt_ended(ttype, outcome, started)
  ttype = ttype or ''
  local by = ENDED[outcome]
  if not by then by = {}; ENDED[outcome] = by end
  local rec = by[ttype]
  if not rec then rec = {n = 0, s = 0}; by[ttype] = rec end
  rec.n = rec.n + 1
  local t = tonumber(started or '')
  if t then observe(rec, NOW_SEC - t) end
end
-- A task was claimed after waiting since 'since_s' (epoch seconds, a number).
local function claimed_after(ttype, since_s)
  local rec = WAITED[ttype]
  if not rec then rec = {s = 0}; WAITED[ttype] = rec end
  observe(rec, NOW_SEC - since_s)
end
local function flush_histogram(name, rec, labels)
  for i = 0, #BUCKETS do
    if rec[i] then redis.call('HINCRBY', K_METRICS, name .. '|' .. i .. labels, rec[i]) end
  end
  if rec.s > 0 then
    redis.call('HINCRBYFLOAT', K_METRICS, name .. '|s' .. labels, string.format('%.6f', rec.s))
  end
end
local function flush_metrics()
  for field, delta in pairs(METRIC_INCR) do redis.call('HINCRBY', K_METRICS, field, delta) end
  for outcome, by in pairs(ENDED) do
    for ttype, rec in pairs(by) do
      local labels = '|' .. outcome .. '|' .. ttype
      redis.call('HINCRBY', K_METRICS, 'finished' .. labels, rec.n)
      flush_histogram('duration', rec, labels)
    end
  end
  for ttype, rec in pairs(WAITED) do flush_histogram('wait', rec, '|' .. ttype) end
  METRIC_INCR, ENDED, WAITED = {}, {}, {}
end

local function flush_counts()
  for state, delta in pairs(COUNT_DELTAS) do
    if delta ~= 0 then redis.call('HINCRBY', K_COUNTS, state, delta) end
  end
  COUNT_DELTAS = {}
  flush_metrics()
end

-- One event log entry. Its time is the stream id's millisecond part (Redis time), so it is not
-- stored again; 'old' is left out when there is none.
local function event(etype, id, old, new, extra)
  local args = {'XADD', K_EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*',
                'type', etype, 'task_id', id, 'state', new or ''}
  if old and old ~= '' then args[#args + 1] = 'old'; args[#args + 1] = old end
  if extra then
    for i = 1, #extra do args[#args + 1] = extra[i] end
  end
  redis.call(unpack(args))
end

-- Append one JSON object (already encoded) to a JSON list stored in a hash field, without
-- decoding the list (cjson would turn an empty array into an object).
local function append_json(key, field, entry)
  local raw = redis.call('HGET', key, field)
  if (not raw) or raw == '' or raw == '[]' then
    redis.call('HSET', key, field, '[' .. entry .. ']')
  else
    redis.call('HSET', key, field, string.sub(raw, 1, -2) .. ',' .. entry .. ']')
  end
end

-- What was submitted (type, lane, priority, max_retries, idempotency key, metadata, payload)
-- never changes, so it is not in the task hash: it is one entry of the 'submitted' stream, whose
-- id (the hash's 'sid' field) is the creation time. Stream entries with the same fields share
-- their field names and pack several to an allocation, so a queued task costs far less than a
-- hash plus a payload string plus a creation-time index (benchmarks/RESULTS.md, memory).
-- Every entry carries every field ('' when unset), which is what lets Redis share the names.
local SUBMITTED_FIELDS = {'id', 'task_type', 'lane', 'priority', 'max_retries',
                          'idempotency_key', 'metadata', 'payload'}

-- The submitted entry of the task whose hash is 'key', as a table, and its id (nil when the
-- task is unknown). Lane and priority always have a value, so callers need no defaults.
local function submitted(key)
  local sid = redis.call('HGET', key, 'sid')
  local out = {}
  local entry = sid and redis.call('XRANGE', K_SUBMITTED, sid, sid)[1]
  if entry then
    local f = entry[2]
    for i = 1, #f, 2 do out[f[i]] = f[i + 1] end
  end
  out.lane = out.lane or 'local'
  out.priority = out.priority or 'default'
  return out, sid
end

-- The creation time (epoch seconds, 3 decimals) held in a stream id 'ms-seq'.
local function sid_seconds(sid)
  local ms = tonumber(string.match(sid or '', '^(%d+)-'))
  if not ms then return nil end
  return string.format('%.3f', ms / 1000)
end

-- Forget a task's submitted entry (delete, retention sweep); 'sid' as submitted() returned it.
local function drop_submitted(sid)
  if sid then redis.call('XDEL', K_SUBMITTED, sid) end
end

-- A new task's history (PENDING at its creation) is implied, not stored: the first later
-- transition writes it out together with its own entry. That keeps a queued task's hash small.
local HISTORY_TS = string.format('%.3f', NOW_MS / 1000)
local function history(key, state)
  local entry = '{"state":"' .. state .. '","ts":' .. HISTORY_TS .. '}'
  local f = redis.call('HMGET', key, 'state_history', 'sid')
  if not f[1] then
    local created = sid_seconds(f[2]) or HISTORY_TS
    redis.call('HSET', key, 'state_history',
               '[{"state":"PENDING","ts":' .. created .. '},' .. entry .. ']')
  elseif f[1] == '' or f[1] == '[]' then
    redis.call('HSET', key, 'state_history', '[' .. entry .. ']')
  else
    redis.call('HSET', key, 'state_history', string.sub(f[1], 1, -2) .. ',' .. entry .. ']')
  end
end

-- Move a task hash to a new state: counters, updated_at, history, event. The caller has already
-- checked the old state and moved the id between structures.
local function transition(id, key, old, new, extra)
  redis.call('HSET', key, 'state', new, 'updated_at', NOW_S)
  count(old, -1)
  count(new, 1)
  history(key, new)
  event('task_state_changed', id, old, new, extra)
end

local function wake(lane, n)
  local k = k_wake(lane)
  local pushes = math.min(n, WAKE_CAP)
  for _ = 1, pushes do redis.call('LPUSH', k, '1') end
  redis.call('LTRIM', k, 0, WAKE_CAP - 1)
end

-- Remove an id from whichever waiting structure holds it (queues, scheduled, dlq, active).
local function unlink(id, key, lane)
  for _, p in ipairs(PRIORITIES) do redis.call('LREM', k_queue(lane, p), 0, id) end
  redis.call('LREM', k_queue(lane, 'retry'), 0, id)
  redis.call('ZREM', K_SCHEDULED, id)
  redis.call('ZREM', K_DLQ, id)
  redis.call('ZREM', K_ACTIVE, id)
  redis.call('ZREM', K_FINISHED, id)
end

