-- Read-only: tasks by id, with what was submitted joined in. ARGV[3] mode, then (for 'peek' a
-- comma-separated field list in ARGV[4], then) the ids. Per id, false when the task is unknown:
--   'record'   the hash and the submitted fields (not the payload) as field, value pairs, plus
--              created_at (from the submitted entry's id);
--   'peek'     the values of the listed fields, in that order (false where unset);
--   'payload'  the payload JSON.
local mode = ARGV[3]
local first, fields = 4, {}
if mode == 'peek' then
  for f in string.gmatch(ARGV[4], '[^,]+') do fields[#fields + 1] = f end
  first = 5
end
local in_entry = {}
for _, f in ipairs(SUBMITTED_FIELDS) do in_entry[f] = true end

local out = {}
for i = first, #ARGV do
  local key = k_task(ARGV[i])
  local row = false
  local s, sid = submitted(key)
  if sid then
    if mode == 'payload' then
      row = s.payload or '{}'
    elseif mode == 'peek' then
      row = {}
      local stored = redis.call('HMGET', key, unpack(fields))
      for j, f in ipairs(fields) do
        local v = stored[j]
        if in_entry[f] then v = s[f] elseif f == 'created_at' then v = sid_seconds(sid) end
        row[j] = v or false
      end
    else
      row = redis.call('HGETALL', key)
      for _, f in ipairs(SUBMITTED_FIELDS) do
        if f ~= 'id' and f ~= 'payload' and s[f] then
          row[#row + 1] = f
          row[#row + 1] = s[f]
        end
      end
      row[#row + 1] = 'created_at'
      row[#row + 1] = sid_seconds(sid) or '0'
    end
  end
  out[#out + 1] = row
end
return out
