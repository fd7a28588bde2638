-- Crimson: reads part of a stream's history, with where the stream stands, at one instant.
--
-- KEYS[1] the stream's hash, KEYS[2] its history
-- ARGV[1] the first offset, ARGV[2] the last, ARGV[3] the most entries (0: none)
-- ARGV[4] the most bytes of one entry's message: a larger one (not Crimson's) is left out
--
-- Returns { Redis's time in ms, epoch or nil, last offset or nil, entries }; entries as
-- { id, { 'm', message, 't', ms } }, without 'm' when it was too large. Values that are
-- not Crimson's are cut short, so that what is read back stays bounded.
local hash, history = KEYS[1], KEYS[2]
local function short(value)
  if value and #value > 64 then
    return '-'
  end
  return value
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = {}
if tonumber(ARGV[3]) > 0 then
  local max = tonumber(ARGV[4])
  local found = redis.call('XRANGE', history, '0-' .. ARGV[1], '0-' .. ARGV[2], 'COUNT', ARGV[3])
  for _, entry in ipairs(found) do
    local kept = {}
    local fields = entry[2]
    for i = 1, #fields - 1, 2 do
      local name, value = fields[i], fields[i + 1]
      if name == 'm' and #value <= max then
        kept[#kept + 1] = 'm'
        kept[#kept + 1] = value
      elseif name == 't' then
        kept[#kept + 1] = 't'
        kept[#kept + 1] = short(value)
      end
    end
    entries[#entries + 1] = { short(entry[1]), kept }
  end
end
return {
  now,
  short(redis.call('HGET', hash, 'e')),
  short(redis.call('HGET', hash, 'o')),
  entries,
}
