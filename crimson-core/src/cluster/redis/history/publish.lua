-- Crimson: publishes one publication of a stream with history, in one atomic step.
--
-- KEYS[1] the stream's hash (e: epoch, o: last offset), KEYS[2] its history (a Redis Stream)
-- ARGV[1] a fresh epoch, used if the stream has none (new, or Redis lost it)
-- ARGV[2] how many publications the history keeps (0: none)
-- ARGV[3] the history's time to live, ms (0: none)
-- ARGV[4] the hash's time to live, ms (0: none)
-- ARGV[5] the stream's channel, ARGV[6] the cluster message, ARGV[7] PUBLISH or SPUBLISH
--
-- Returns { epoch, offset, subscribers reached }. The message is published behind its
-- position: 'h' EPOCH ' ' OFFSET '\n' MESSAGE.
local hash, history = KEYS[1], KEYS[2]
if redis.call('HSETNX', hash, 'e', ARGV[1]) == 1 then
  -- A new epoch: whatever history is there is not its own.
  redis.call('DEL', history)
  redis.call('HSET', hash, 'o', 0)
end
local epoch = redis.call('HGET', hash, 'e')
if #epoch > 32 or not string.match(epoch, '^%w+$') then
  return redis.error_reply("the epoch of " .. hash .. " is not Crimson's")
end
local offset = redis.call('HINCRBY', hash, 'o', 1)
local id = '0-' .. string.format('%d', offset)
local size = tonumber(ARGV[2])
if size > 0 then
  local t = redis.call('TIME')
  local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  local added = redis.pcall('XADD', history, 'MAXLEN', size, id, 'm', ARGV[6], 't', ms)
  if type(added) == 'table' and added.err then
    -- Not this epoch's history (its ids are ahead, or it is not a stream): start it again.
    redis.call('DEL', history)
    redis.call('XADD', history, 'MAXLEN', size, id, 'm', ARGV[6], 't', ms)
  end
  if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', history, ARGV[3])
  end
else
  redis.call('DEL', history)
end
if tonumber(ARGV[4]) > 0 then
  redis.call('PEXPIRE', hash, ARGV[4])
end
local message = 'h' .. epoch .. ' ' .. string.format('%d', offset) .. '\n' .. ARGV[6]
local reached = redis.call(ARGV[7], ARGV[5], message)
return { epoch, offset, reached }
