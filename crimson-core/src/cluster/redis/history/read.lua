-- Crimson: reads part of a stream's history, with where the stream stands, at one instant.
--
-- KEYS[1] the stream's hash, KEYS[2] its history
-- ARGV[1] the first offset, ARGV[2] the last, ARGV[3] the most entries (0: none)
--
-- Returns { Redis's time in ms, epoch or nil, last offset or nil, entries }; entries as
-- XRANGE gives them: { id, { field, value, ... } }.
local hash, history = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = {}
if tonumber(ARGV[3]) > 0 then
  entries = redis.call('XRANGE', history, '0-' .. ARGV[1], '0-' .. ARGV[2], 'COUNT', ARGV[3])
end
return {
  now,
  redis.call('HGET', hash, 'e'),
  redis.call('HGET', hash, 'o'),
  entries,
}
