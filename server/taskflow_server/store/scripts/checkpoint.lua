-- Keep one finished part of a running task (work already paid for), so a retry redoes only
-- what is missing. ARGV[3] id, ARGV[4] lease token, ARGV[5] part name, ARGV[6] value (JSON),
-- ARGV[7] expiry of the parts hash in seconds (the result retention).
-- Returns 1, or 0 when the lease is not ours (nothing is written).
local id, token = ARGV[3], ARGV[4]
local f = redis.call('HMGET', k_task(id), 'state', 'lease')
if f[1] ~= 'ACTIVE' or f[2] ~= token then return 0 end
local key = k_parts(id)
redis.call('HSET', key, ARGV[5], ARGV[6])
redis.call('EXPIRE', key, tonumber(ARGV[7]))
return 1
