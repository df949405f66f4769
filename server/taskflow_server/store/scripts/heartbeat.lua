-- Write a worker's heartbeat. ARGV[3] worker id, ARGV[4] TTL seconds, ARGV[5] stale-after ms,
-- then field/value pairs. Also forgets workers not seen for 10x the stale limit.
local wid, ttl, stale = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local key = TAG .. ':worker:' .. wid
local args = {'HSET', key, 'last_seen', NOW_S}
for i = 6, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
redis.call('EXPIRE', key, ttl)
redis.call('ZADD', TAG .. ':workers', NOW_MS, wid)
redis.call('ZREMRANGEBYSCORE', TAG .. ':workers', '-inf', NOW_MS - stale * 10)
return NOW_MS
