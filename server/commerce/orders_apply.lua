-- Apply order events to the order records, keeping the newest version of each order.
-- KEYS: 1 order_records, 2 order_index, 3.. the per-sale order indexes named by ARGV
-- ARGV: n × (reservation id, version, JSON, created ms, position in KEYS of its sale's index)
local applied = 0
for i = 1, #ARGV, 5 do
  local rid, v = ARGV[i], tonumber(ARGV[i + 1])
  local cur = redis.call('HGET', KEYS[1], rid)
  if (not cur) or tonumber(cjson.decode(cur).v) < v then
    redis.call('HSET', KEYS[1], rid, ARGV[i + 2])
    redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[i + 3]), rid)
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 4])], 'NX', tonumber(ARGV[i + 3]), rid)
    applied = applied + 1
  end
end
return applied
