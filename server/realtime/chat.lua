-- Accept one danmaku atomically: ban/mute check, token bucket, append to the bounded history
-- stream, count it, and publish it to every node (publish order = id order).
-- KEYS: 1 stream, 2 counters, 3 bucket, 4 muted, 5 banned, 6 per-second count, 7 epoch, 8 trimmed
-- ARGV: 1 uid, 2 name, 3 role, 4 text, 5 maxlen, 6 rate/s, 7 burst, 8 exempt (0/1), 9 channel, 10 new epoch
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('SISMEMBER', KEYS[5], ARGV[1]) == 1 then
  return {'banned', '0'}
end
local until_ms = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
if until_ms > now then
  return {'muted', tostring(until_ms)}
end
if ARGV[8] == '0' then
  local rate = tonumber(ARGV[6])
  local burst = tonumber(ARGV[7])
  local b = redis.call('HMGET', KEYS[3], 'tokens', 'ts')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < 1 then
    return {'rate_limited', tostring(math.ceil((1 - tokens) * 1000 / rate))}
  end
  redis.call('HSET', KEYS[3], 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[3], math.ceil(burst * 1000 / rate) + 1000)
end
redis.call('SETNX', KEYS[7], ARGV[10])
-- Remember the newest entry the MAXLEN trim below removes: recovery is lossless for any client
-- that saw it (moderators' XDEL removes entries too, but those are retracted, not lost).
local maxlen = tonumber(ARGV[5])
local len = redis.call('XLEN', KEYS[1])
if len >= maxlen then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - maxlen + 1)
  redis.call('SET', KEYS[8], gone[#gone][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], '*',
  'uid', ARGV[1], 'name', ARGV[2], 'role', ARGV[3], 'text', ARGV[4], 'ts', tostring(now))
redis.call('HINCRBY', KEYS[2], 'chat_messages', 1)
redis.call('INCR', KEYS[6])
redis.call('EXPIRE', KEYS[6], 120)
local droppable = 0
if ARGV[3] == 'viewer' then droppable = 1 end
local event = {type = 'chat', id = id, uid = ARGV[1], name = ARGV[2], role = ARGV[3], text = ARGV[4], ts = now}
broker_publish(ARGV[9], event, droppable)
return {'ok', id, tostring(now)}
