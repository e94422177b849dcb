-- Decide a micro-batch of flash-sale buy attempts atomically, one after the other.
-- KEYS: 1 sales, 2 sale_users, 3 buy_keys, 4 reservations, 5 expiries, 6 orders stream,
--       7 counters, 8 funnel:reserved, 9 seq
-- ARGV: 1 show id, 2 reservation ttl (ms), 3 n, 4 msgpack array of n × (sale id, user id, name, key),
--       5 now (ms, the app clock: appended by server/lua.py, read into `now`)
--       (one packed argument: the caller encodes a batch in one C call instead of 4n arguments)
-- Returns n outcomes: "reserved|RID|EXPIRES_MS", "sold_out", "limit_reached", "not_started",
-- "ended" or "unknown_sale". A key already seen for (sale, user) returns its first outcome.
local show = ARGV[1]
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local attempts = cmsgpack.unpack(ARGV[4])
local sales = {}
local out = {}
local reserved = 0
for i = 0, n - 1 do
  local b = 1 + i * 4
  local sid, uid, name, key = attempts[b], attempts[b + 1], attempts[b + 2], attempts[b + 3]
  local s = sales[sid]
  if s == nil then
    local f = redis.call('HMGET', KEYS[1], sid .. ':start', sid .. ':end', sid .. ':limit', sid .. ':left',
      sid .. ':reserved', sid .. ':status', sid .. ':price', sid .. ':currency', sid .. ':product', sid .. ':title')
    if not f[1] then
      s = false
    else
      s = { start = tonumber(f[1]), stop = tonumber(f[2]), limit = tonumber(f[3]), left = tonumber(f[4]),
            reserved = tonumber(f[5]), status = f[6], price = tonumber(f[7]), currency = f[8],
            product = f[9], title = f[10], dirty = false }
    end
    sales[sid] = s
  end
  if not s then
    out[i + 1] = 'unknown_sale'
  else
    local ik = sid .. '|' .. uid .. '|' .. key
    local prev = redis.call('HGET', KEYS[3], ik)
    if prev then
      out[i + 1] = prev
    else
      local res
      if s.status == 'ended' or now >= s.stop then
        res = 'ended'
      elseif now < s.start then
        res = 'not_started'
      else
        local uk = sid .. '|' .. uid
        local have = tonumber(redis.call('HGET', KEYS[2], uk) or '0')
        if have >= s.limit then
          res = 'limit_reached'
        elseif s.left <= 0 then
          res = 'sold_out'
        else
          s.left = s.left - 1
          s.reserved = s.reserved + 1
          s.dirty = true
          redis.call('HINCRBY', KEYS[2], uk, 1)
          local rid = show .. '.r' .. redis.call('HINCRBY', KEYS[9], 'reservation', 1)
          local exp = now + ttl
          local order = { id = rid, sale_id = sid, product_id = s.product, title = s.title, user_id = uid,
                          name = name, key = key, quantity = 1, price = s.price, amount = s.price,
                          currency = s.currency, status = 'reserved', created_at = now, expires_at = exp, v = 1 }
          local js = cjson.encode(order)
          redis.call('HSET', KEYS[4], rid, js)
          redis.call('ZADD', KEYS[5], exp, rid)
          redis.call('XADD', KEYS[6], 'MAXLEN', '~', 500000, '*', 'type', 'reserved', 'order', js)
          redis.call('SADD', KEYS[8], uid)
          reserved = reserved + 1
          res = 'reserved|' .. rid .. '|' .. exp
        end
      end
      redis.call('HSET', KEYS[3], ik, res)
      out[i + 1] = res
    end
  end
end
for sid, s in pairs(sales) do
  if s and s.dirty then
    redis.call('HSET', KEYS[1], sid .. ':left', s.left, sid .. ':reserved', s.reserved)
  end
end
if reserved > 0 then
  redis.call('HINCRBY', KEYS[7], 'reservations', reserved)
end
return out
