-- Extend the leases of a worker's running tasks. ARGV[3] lease ms, then pairs id, token.
-- Returns per pair: 0 extended, 1 lost (another owner or gone), 2 extended but cancel requested.
local lease_ms = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', k_task(id), 'state', 'lease', 'cancel_requested')
  if f[1] ~= 'ACTIVE' or f[2] ~= token then
    out[#out + 1] = 1
  else
    redis.call('ZADD', K_ACTIVE, 'XX', NOW_MS + lease_ms, id)
    if f[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 0 end
  end
end
return out
