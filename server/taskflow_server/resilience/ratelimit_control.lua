-- Shared rate limiter: the changes that are not an acquire, each atomic, clock from Redis TIME.
--
-- KEYS[1] in-flight zset   KEYS[2] cool-down string   KEYS[3] in-flight cap string
-- ARGV[1] op:
--   cooldown  ARGV[2] = ms: every worker waits that long (an existing longer cool-down stays).
--             Reply: the cool-down remaining (ms).
--   cap       ARGV[2] = ms, ARGV[3] = max in flight: lower the in-flight limit to half of what
--             is in flight now (at least 1) for ms. Reply: the new cap.
--   extend    ARGV[2] = ms, ARGV[3] = lease id: push a live lease's expiry to now + ms.
--             Reply: 1 when the lease still existed, else 0.
--   clear     end the cool-down now (an operator reset). Reply: 1 when one was running.

local inflight, cooldown, cap_key = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]
local ms = tonumber(ARGV[2])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if op == 'cooldown' then
  local until_ms = now + ms
  local current = tonumber(redis.call('GET', cooldown) or '0') or 0
  if current >= until_ms then
    return current - now
  end
  redis.call('SET', cooldown, until_ms, 'PX', ms)
  return ms
end

if op == 'cap' then
  local max_in_flight = tonumber(ARGV[3])
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  local current = tonumber(redis.call('GET', cap_key) or '0') or 0
  if current <= 0 or current > max_in_flight then current = max_in_flight end
  local in_flight = redis.call('ZCARD', inflight)
  local cap = math.floor(in_flight / 2)
  if cap > current then cap = current end
  if cap < 1 then cap = 1 end
  redis.call('SET', cap_key, cap, 'PX', ms)
  return cap
end

if op == 'clear' then
  return redis.call('DEL', cooldown)
end

if op == 'extend' then
  return redis.call('ZADD', inflight, 'XX', 'CH', now + ms, ARGV[3])
end

return redis.error_reply('unknown rate limiter op ' .. tostring(op))
