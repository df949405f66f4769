-- Store an uploaded file under its sha256, within the total-bytes quota. ARGV[3] sha256,
-- ARGV[4] the bytes, ARGV[5] the retention (s) of a blob no task refers to, ARGV[6] the quota
-- (total bytes of every blob). Orphans whose retention is over are deleted first.
-- Returns {outcome, total bytes after}: outcome 'stored' (new), 'exists' (already stored; an
-- orphan's retention restarts) or 'quota' (not stored: it would take the total over ARGV[6]).
local sha, data = ARGV[3], ARGV[4]
local ttl, quota = tonumber(ARGV[5]), tonumber(ARGV[6])
blob_purge(100)
local key = k_blob(sha)
if blob_size(sha) then
  if not redis.call('HGET', K_BLOB_REFS, sha) then
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', K_BLOB_ORPHANS, NOW_MS + ttl * 1000, sha)
  end
  return {'exists', tonumber(redis.call('GET', K_BLOB_BYTES) or '0')}
end
local total = tonumber(redis.call('GET', K_BLOB_BYTES) or '0')
if total + #data > quota then return {'quota', total} end
redis.call('SET', key, data, 'EX', ttl)
redis.call('HSET', K_BLOB_SIZES, sha, #data)
redis.call('ZADD', K_BLOB_ORPHANS, NOW_MS + ttl * 1000, sha)
return {'stored', redis.call('INCRBY', K_BLOB_BYTES, #data)}
