-- OpenRouter monitor: note the service state now and credit the time spent in the previous one.
-- The clock is Redis TIME.
--
-- KEYS[1] state hash {status, since_ms}
-- KEYS[2] today's metrics hash (field state_<status> = seconds, a float)
-- ARGV[1] the status now (active, rate_limited, ...)
-- ARGV[2] the metrics hash's time to live (seconds)
--
-- Reply: the previous status ('' when none).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local previous = redis.call('HGET', KEYS[1], 'status') or ''
local since = tonumber(redis.call('HGET', KEYS[1], 'since_ms') or '0') or 0
if previous ~= '' and since > 0 and now > since then
  redis.call('HINCRBYFLOAT', KEYS[2], 'state_' .. previous, tostring((now - since) / 1000))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'since_ms', now)
return previous
