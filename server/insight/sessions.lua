-- A viewer's WebSocket joins or leaves; sessions merge reconnects of the same user.
-- KEYS: 1 sessions hash (user -> "conns:start_ms:left_ms:dwell_ms"), 2 dwell histogram hash,
--       3 viewers-of-the-show HyperLogLog, 4 viewers-present-this-minute HyperLogLog,
--       5 set of the minutes that have a present HyperLogLog (for the report's timeline)
-- ARGV: 1 "join" | "leave", 2 user id, 3 now ms, 4 reconnect grace ms, 5 ttl s,
--       6 this minute, 7.. bucket upper edges in ms (ascending; the last bucket is open)
-- The histogram holds finished sessions: one field per bucket ("b1".."bN"), plus count, sum_ms
-- and bounce. A viewer back within the grace has the finished session taken out again, so a
-- reconnect never counts as two sessions.
local user, now, grace, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local edges = {}
for i = 7, #ARGV do edges[#edges + 1] = tonumber(ARGV[i]) end
local function bucket(ms)
  for i = 1, #edges do
    if ms < edges[i] then return 'b' .. i end
  end
  return 'b' .. (#edges + 1)
end
local function account(ms, sign)
  redis.call('HINCRBY', KEYS[2], bucket(ms), sign)
  redis.call('HINCRBY', KEYS[2], 'count', sign)
  redis.call('HINCRBY', KEYS[2], 'sum_ms', sign * ms)
  if ms < edges[1] then redis.call('HINCRBY', KEYS[2], 'bounce', sign) end
end
local conns, start, left, dwell = 0, now, -1, -1
local raw = redis.call('HGET', KEYS[1], user)
if raw then
  local a, b, c, d = string.match(raw, '^(%d+):(%d+):(-?%d+):(-?%d+)$')
  conns, start, left, dwell = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
end
if ARGV[1] == 'join' then
  if conns > 0 then
    conns = conns + 1
  elseif raw and dwell >= 0 and now - left <= grace then
    account(dwell, -1)  -- back in time: the same session goes on
    conns, dwell = 1, -1
  else
    conns, start, left, dwell = 1, now, -1, -1
  end
  redis.call('PFADD', KEYS[3], user)
  redis.call('PFADD', KEYS[4], user)
  redis.call('EXPIRE', KEYS[4], ttl)
  redis.call('SADD', KEYS[5], ARGV[6])
  redis.call('EXPIRE', KEYS[5], ttl)
else
  if conns == 0 then return 0 end
  conns = conns - 1
  if conns == 0 then
    left = now
    dwell = math.max(now - start, 0)
    account(dwell, 1)
  end
end
redis.call('HSET', KEYS[1], user, conns .. ':' .. start .. ':' .. left .. ':' .. dwell)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl) end
return conns
