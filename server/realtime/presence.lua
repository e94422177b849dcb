-- One node reports its viewer count for a show; returns the show's total over live nodes and the peak.
-- KEYS: 1 presence hash (node → "count:seen_ms"), 2 peak, 3 this node's users hash
-- ARGV: 1 node id, 2 local count, 3 stale after ms, 4 users hash ttl ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. now)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[3])
end
local all = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #all, 2 do
  local c, seen = string.match(all[i + 1], '^(%d+):(%d+)$')
  if c and now - tonumber(seen) <= tonumber(ARGV[3]) then
    total = total + tonumber(c)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
if total > peak then
  peak = total
  redis.call('SET', KEYS[2], tostring(peak))
end
return {total, peak}
