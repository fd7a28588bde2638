-- Crimson: where a stream with history stands, made if it has no epoch yet.
--
-- KEYS[1] the stream's hash, KEYS[2] its history
-- ARGV[1] a fresh epoch, used if the stream has none; ARGV[2] the hash's time to live, ms
-- (0: none)
--
-- Returns { epoch, last offset }.
local hash, history = KEYS[1], KEYS[2]
if redis.call('HSETNX', hash, 'e', ARGV[1]) == 1 then
  redis.call('DEL', history)
  redis.call('HSET', hash, 'o', 0)
end
redis.call('HSETNX', hash, 'o', 0)
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', hash, ARGV[2])
end
-- Cut short if not Crimson's, so that what is read back stays bounded.
local e, o = redis.call('HGET', hash, 'e'), redis.call('HGET', hash, 'o')
if #e > 64 then e = '-' end
if #o > 64 then o = '-' end
return { e, o }
