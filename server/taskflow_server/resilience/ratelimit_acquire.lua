-- Shared rate limiter: take one in-flight slot and one token, atomically, or say how long to wait.
-- The clock is Redis TIME (ms); the reply holds integers only, waits in milliseconds.
--
-- KEYS[1] bucket hash   {tokens, ts, taken}          (expires when idle; a missing bucket is full)
-- KEYS[2] in-flight zset  lease id -> lease expiry (ms); expired leases are dropped here
-- KEYS[3] cool-down string  epoch ms until which nobody may call the upstream
-- KEYS[4] in-flight cap string  a temporary lower in-flight limit (expires by itself)
-- KEYS[5] config hash   {capacity, interval_ms}: a rate applied at run time
-- KEYS[6] the upstream's circuit breaker hash (owned by breaker.lua; read here, never written):
--         while it is open (an outage or a hold) nothing is granted and no token is taken;
--         while it is half-open (or open past its end) one request at a time goes, the probe
--
-- ARGV[1] capacity (tokens; 0 = use KEYS[5], and no rate limit when that is empty too)
-- ARGV[2] refill interval (ms): capacity tokens come back per interval
-- ARGV[3] max in flight
-- ARGV[4] lease id
-- ARGV[5] lease length (ms), counted from the moment the caller may send
-- ARGV[6] reserve horizon (ms): a token due within this time is reserved now, the caller sleeps
--
-- Reply {granted, wait_ms, reason, in_flight}:
--   {1, w, 'ok', n}         slot and token taken; send after w ms (w = 0: now)
--   {0, w, 'paused:H', n}   the breaker is open (H: the hold's reason, '' for an outage); w ms
--                           until it may turn half-open (0: until lifted or reset)
--   {0, w, 'cooldown', n}   a 429 cool-down is running; ask again after w ms
--   {0, 0, 'slot', n}       every in-flight slot is taken; ask again when one frees
--   {0, w, 'token', n}      no token within the horizon; ask again after w ms

local bucket, inflight, cooldown, cap_key, config = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local breaker = KEYS[6]
local capacity = tonumber(ARGV[1])
local interval_ms = tonumber(ARGV[2])
local max_in_flight = tonumber(ARGV[3])
local lease_id = ARGV[4]
local lease_ms = tonumber(ARGV[5])
local reserve_ms = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
local in_flight = redis.call('ZCARD', inflight)

local b = redis.call('HMGET', breaker, 'state', 'open_until', 'hold')
local b_until = tonumber(b[2] or '0') or 0
if b[1] == 'open' and (b_until == 0 or now < b_until) then
  local left = 0
  if b_until > 0 then left = b_until - now end
  return {0, left, 'paused:' .. (b[3] or ''), in_flight}
end
if b[1] == 'half_open' or b[1] == 'open' then
  -- The probe: one request decides for everyone whether the upstream is back.
  max_in_flight = 1
end

local until_ms = tonumber(redis.call('GET', cooldown) or '0') or 0
if until_ms > now then
  return {0, until_ms - now, 'cooldown', in_flight}
end

local cap = tonumber(redis.call('GET', cap_key) or '0') or 0
if cap > 0 and cap < max_in_flight then max_in_flight = cap end
if in_flight >= max_in_flight then
  return {0, 0, 'slot', in_flight}
end

if capacity <= 0 then
  capacity = tonumber(redis.call('HGET', config, 'capacity') or '0') or 0
  interval_ms = tonumber(redis.call('HGET', config, 'interval_ms') or '0') or 0
end

local wait = 0
if capacity > 0 and interval_ms > 0 then
  local tokens = tonumber(redis.call('HGET', bucket, 'tokens') or '')
  local ts = tonumber(redis.call('HGET', bucket, 'ts') or '')
  if tokens == nil or ts == nil then
    tokens, ts = capacity, now
  end
  if now > ts then
    tokens = tokens + (now - ts) * capacity / interval_ms
    if tokens > capacity then tokens = capacity end
  end
  if tokens < 1 then
    wait = math.ceil((1 - tokens) * interval_ms / capacity)
    if wait > reserve_ms then
      redis.call('HSET', bucket, 'tokens', tostring(tokens), 'ts', now)
      redis.call('PEXPIRE', bucket, interval_ms * 2 + 60000)
      return {0, wait - reserve_ms, 'token', in_flight}
    end
  end
  redis.call('HSET', bucket, 'tokens', tostring(tokens - 1), 'ts', now)
  redis.call('HINCRBY', bucket, 'taken', 1)
  redis.call('PEXPIRE', bucket, interval_ms * 2 + 60000)
end

redis.call('ZADD', inflight, now + wait + lease_ms, lease_id)
return {1, wait, 'ok', in_flight + 1}
