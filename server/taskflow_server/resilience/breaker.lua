-- Circuit breaker for one upstream: every transition, atomically, on one hash (KEYS[1]).
-- The clock is Redis TIME (ms), so every worker sees the same timeouts. A change of state also
-- appends a breaker_state_changed entry to the event log (KEYS[2]), as task transitions do,
-- and counts it in the Prometheus metrics hash (KEYS[3], field 'breaker|<from>|<to>|<name>',
-- see store/scripts/_lib.lua and observability/metrics.py).
--
-- ARGV[1]  op: allow | release | success | failure | open | reset | hold | lift
-- ARGV[2]  consecutive failures that open the breaker
-- ARGV[3]  failure rate (0..1) over the window that opens it
-- ARGV[4]  window length (ms) for the failure rate
-- ARGV[5]  calls needed in the window before the rate is judged
-- ARGV[6]  first open timeout (ms); doubles on every re-open
-- ARGV[7]  longest open timeout (ms)
-- ARGV[8]  how long the half-open probe may run before another caller gets one (ms)
-- ARGV[9]  failure: error class      open, hold: reason      lift: reason ('' = any hold)
-- ARGV[10] failure: count | neutral      open, hold: time in ms (0 = until reset / lifted)
-- ARGV[11] the upstream's name (for the event)
-- ARGV[12] the event log's approximate length cap
--
-- Hash fields: state (closed|open|half_open), failures (consecutive), successes (consecutive),
-- opens (opens since the last close), opened_at, open_until (0 = held until reset), probe_until,
-- reason, hold (the hold's reason while the breaker is open for a hold, else ''),
-- last_error_class, last_error_at, updated_at, and the two-bucket sliding window
-- w_start, w_calls, w_fail, p_calls, p_fail.
--
-- A hold (credits, key_limit, budget, rate_limited) is an open breaker that did not open because
-- the upstream failed: 'hold' places it for ARGV[10] ms (0 = until lifted or reset); when it
-- runs out the breaker turns half-open and one probe task finds out whether the condition is
-- gone. 'lift' ends a hold early (the monitor saw room again, the budget was raised): the
-- breaker turns half-open at the next 'allow', so one probe still goes first.
--
-- Reply: {code, state}. allow: code -1 = closed (claim freely), 0 = claim nothing, 1 = this
-- caller holds THE half-open probe. Other ops: code 1 when the state changed, else 0.

local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local max_rate = tonumber(ARGV[3])
local window_ms = tonumber(ARGV[4])
local min_calls = tonumber(ARGV[5])
local open_ms = tonumber(ARGV[6])
local max_open_ms = tonumber(ARGV[7])
local probe_ms = tonumber(ARGV[8])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function num(field)
  return tonumber(redis.call('HGET', key, field) or '0') or 0
end

local state = redis.call('HGET', key, 'state') or 'closed'
local before = state
-- An open breaker whose time is up is half-open, whether or not a worker has asked 'allow' yet:
-- the limiter lets one call through then (the probe), and its outcome must count as the probe's.
if state == 'open' and (op == 'success' or op == 'failure') then
  local ends = tonumber(redis.call('HGET', key, 'open_until') or '0') or 0
  if ends > 0 and now >= ends then state = 'half_open' end
end

-- Every reply goes through here: a changed state is announced on the event log, under the
-- names the API uses (half-open with a hyphen).
local PUBLIC = {closed = 'closed', open = 'open', half_open = 'half-open'}
local reason_before = redis.call('HGET', key, 'reason') or ''
local function finish(code, new_state)
  local reason = redis.call('HGET', key, 'reason') or ''
  if new_state ~= before or (new_state == 'open' and reason ~= reason_before) then
    local hold = redis.call('HGET', key, 'hold') or ''
    local open_until = redis.call('HGET', key, 'open_until') or '0'
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[12], '*', 'type', 'breaker_state_changed',
      'state', PUBLIC[new_state], 'old', PUBLIC[before], 'breaker', ARGV[11], 'reason', reason,
      'hold', hold, 'open_until', open_until)
    if KEYS[3] then
      redis.call('HINCRBY', KEYS[3],
        'breaker|' .. PUBLIC[before] .. '|' .. PUBLIC[new_state] .. '|' .. ARGV[11], 1)
    end
  end
  return {code, new_state}
end

local function clear_window()
  redis.call('HSET', key, 'w_start', now, 'w_calls', 0, 'w_fail', 0, 'p_calls', 0, 'p_fail', 0)
end

-- Move the window forward and add one call; returns the weighted (calls, failures).
local function count_call(failed)
  local w_start = num('w_start')
  local w_calls, w_fail = num('w_calls'), num('w_fail')
  local p_calls, p_fail = num('p_calls'), num('p_fail')
  if w_start == 0 or now - w_start >= 2 * window_ms then
    p_calls, p_fail, w_calls, w_fail, w_start = 0, 0, 0, 0, now
  elseif now - w_start >= window_ms then
    p_calls, p_fail, w_calls, w_fail = w_calls, w_fail, 0, 0
    w_start = w_start + window_ms
  end
  w_calls = w_calls + 1
  if failed then w_fail = w_fail + 1 end
  redis.call('HSET', key, 'w_start', w_start, 'w_calls', w_calls, 'w_fail', w_fail,
    'p_calls', p_calls, 'p_fail', p_fail)
  local weight = 1 - (now - w_start) / window_ms
  if weight < 0 then weight = 0 end
  return p_calls * weight + w_calls, p_fail * weight + w_fail
end

local function open_now(reason)
  local opens = num('opens') + 1
  local exponent = opens - 1
  if exponent > 30 then exponent = 30 end
  local duration = open_ms * (2 ^ exponent)
  if duration > max_open_ms then duration = max_open_ms end
  redis.call('HSET', key, 'state', 'open', 'opens', opens, 'opened_at', now,
    'open_until', math.floor(now + duration), 'probe_until', 0, 'successes', 0,
    'reason', reason, 'hold', '', 'updated_at', now)
  return 'open'
end

local function close_now()
  redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'opens', 0, 'open_until', 0,
    'probe_until', 0, 'reason', '', 'hold', '', 'updated_at', now)
  clear_window()
  return 'closed'
end

if op == 'allow' then
  if state == 'closed' then
    return finish(-1, state)
  end
  if state == 'open' then
    local open_until = num('open_until')
    if open_until == 0 or now < open_until then
      return finish(0, state)
    end
    state = 'half_open'
    redis.call('HSET', key, 'state', state, 'updated_at', now)
  end
  -- half_open: one probe at a time; a probe whose holder vanished expires after probe_ms.
  if now < num('probe_until') then
    return finish(0, state)
  end
  redis.call('HSET', key, 'probe_until', now + probe_ms)
  return finish(1, state)
end

if op == 'release' then
  if state == 'half_open' then
    redis.call('HSET', key, 'probe_until', 0)
    return finish(1, state)
  end
  return finish(0, state)
end

if op == 'success' then
  if state == 'half_open' then
    close_now()
    redis.call('HSET', key, 'successes', 1)
    return finish(1, 'closed')
  end
  if state == 'closed' then
    count_call(false)
    redis.call('HINCRBY', key, 'successes', 1)
    redis.call('HSET', key, 'failures', 0, 'updated_at', now)
  end
  return finish(0, state)
end

if op == 'failure' then
  local error_class, mode = ARGV[9], ARGV[10]
  redis.call('HSET', key, 'last_error_class', error_class, 'last_error_at', now)
  if mode == 'neutral' then
    -- The upstream answered (e.g. 400, 429): it is up. A probe that gets such an answer closes.
    if state == 'half_open' then
      close_now()
      return finish(1, 'closed')
    end
    return finish(0, state)
  end
  if state == 'half_open' then
    return finish(1, open_now('probe_failed'))
  end
  if state == 'open' then
    return finish(0, state)
  end
  local calls, fails = count_call(true)
  local failures = num('failures') + 1
  redis.call('HSET', key, 'failures', failures, 'successes', 0, 'updated_at', now)
  if failures >= threshold then
    return finish(1, open_now('consecutive_failures'))
  end
  if calls >= min_calls and fails / calls >= max_rate then
    return finish(1, open_now('failure_rate'))
  end
  return finish(0, state)
end

if op == 'open' then
  local reason, hold_ms = ARGV[9], tonumber(ARGV[10])
  local open_until = 0
  if hold_ms > 0 then open_until = now + hold_ms end
  redis.call('HSET', key, 'state', 'open', 'opened_at', now, 'open_until', open_until,
    'probe_until', 0, 'successes', 0, 'reason', reason, 'hold', '', 'updated_at', now)
  return finish(1, 'open')
end

if op == 'hold' then
  local reason, hold_ms = ARGV[9], tonumber(ARGV[10])
  local until_ms = 0
  if hold_ms > 0 then until_ms = now + hold_ms end
  if state == 'open' and (redis.call('HGET', key, 'hold') or '') == reason then
    -- The same hold again (another worker met it too): keep the later end.
    local current = num('open_until')
    if current ~= 0 and (until_ms == 0 or until_ms > current) then
      redis.call('HSET', key, 'open_until', until_ms, 'updated_at', now)
    end
    return finish(0, state)
  end
  redis.call('HSET', key, 'state', 'open', 'hold', reason, 'reason', reason, 'opened_at', now,
    'open_until', until_ms, 'probe_until', 0, 'successes', 0, 'updated_at', now)
  return finish(1, 'open')
end

if op == 'lift' then
  local hold = redis.call('HGET', key, 'hold') or ''
  if state ~= 'open' or hold == '' or (ARGV[9] ~= '' and ARGV[9] ~= hold) then
    return finish(0, state)
  end
  redis.call('HSET', key, 'open_until', now, 'updated_at', now)
  return finish(1, state)
end

if op == 'reset' then
  close_now()
  redis.call('HSET', key, 'successes', 0)
  return finish(1, 'closed')
end

return redis.error_reply('unknown breaker op ' .. tostring(op))
