-- Read-only: walk task ids in creation order (the submitted stream), for listings and scans.
-- ARGV[3] from, ARGV[4] to (stream ids or '-'/'+'; a '(' prefix excludes that id),
-- ARGV[5] 'desc' (newest first) or 'asc', ARGV[6] how many ids to skip first, ARGV[7] how many to
-- return, ARGV[8] the most entries this call may read (keeps one call short; the caller loops).
-- Returns {next, skipped, ids...}: 'next' is where to continue ('' when the range is done), to be
-- passed back with a '(' prefix as 'to' (desc) or 'from' (asc).
local lo, hi, desc = ARGV[3], ARGV[4], ARGV[5] == 'desc'
local skip, take, budget = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ids, skipped, last, done = {}, 0, '', false
local function full() return skipped >= skip and #ids >= take end
while budget > 0 and not done and not full() do
  local n = math.min(budget, 256)
  local batch
  if desc then
    batch = redis.call('XREVRANGE', K_SUBMITTED, hi, lo, 'COUNT', n)
  else
    batch = redis.call('XRANGE', K_SUBMITTED, lo, hi, 'COUNT', n)
  end
  for _, entry in ipairs(batch) do
    last = entry[1]
    budget = budget - 1
    if skipped < skip then
      skipped = skipped + 1
    else
      local f = entry[2]
      for j = 1, #f, 2 do
        if f[j] == 'id' then ids[#ids + 1] = f[j + 1] break end
      end
    end
    if full() then break end
  end
  -- The range is done when a short batch was read to its end.
  done = #batch < n and (#batch == 0 or last == batch[#batch][1])
  if desc then hi = '(' .. last else lo = '(' .. last end
end
local out = {done and '' or last, skipped}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
