-- Prepended to auction.lua and group.lua (see server/commerce/interactive.py).
-- KEYS 1..11 are the same in both: 1 sales, 2 sale_users, 3 reservations, 4 expiries,
-- 5 orders stream, 6 counters, 7 funnel:reserved, 8 seq, 9 products, 10 stock, 11 interactive_live.

-- Take `qty` units of a product's stock for an auction or a group deal (all or nothing), like
-- sale_create.lua does for a flash sale. Returns product table, or nil and an error code.
local function take_stock(product_id, qty)
  local raw = redis.call('HGET', KEYS[9], product_id)
  if not raw then return nil, 'unknown_product' end
  local have = tonumber(redis.call('HGET', KEYS[10], product_id) or '0')
  if have <= 0 then return nil, 'out_of_stock' end
  if have < qty then return nil, 'insufficient_stock:' .. have end
  redis.call('HINCRBY', KEYS[10], product_id, -qty)
  return cjson.decode(raw)
end

-- Units of an auction / deal counted where order.lua releases and confirms them: the sales hash.
local function unit_counters(id, qty)
  redis.call('HSET', KEYS[1], id .. ':left', qty, id .. ':reserved', 0, id .. ':sold', 0)
end

-- A reservation of one unit of `entity` (auction or deal id) at `price`: the same record buy.lua
-- writes, so checkout, expiry and cancel (order.lua) treat it like a flash-sale reservation.
-- The caller moves the unit from `left`/held to `reserved` in its counters.
local function reserve_unit(show, entity, product, title, uid, name, key, price, currency, now, ttl)
  local rid = show .. '.r' .. redis.call('HINCRBY', KEYS[8], 'reservation', 1)
  local exp = now + ttl
  local order = { id = rid, sale_id = entity, product_id = product, title = title, user_id = uid,
                  name = name, key = key, quantity = 1, price = price, amount = price,
                  currency = currency, status = 'reserved', created_at = now, expires_at = exp, v = 1 }
  local js = cjson.encode(order)
  redis.call('HSET', KEYS[3], rid, js)
  redis.call('ZADD', KEYS[4], exp, rid)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 500000, '*', 'type', 'reserved', 'order', js)
  redis.call('SADD', KEYS[7], uid)
  redis.call('HINCRBY', KEYS[2], entity .. '|' .. uid, 1)
  redis.call('HINCRBY', KEYS[6], 'reservations', 1)
  redis.call('HINCRBY', KEYS[1], entity .. ':reserved', 1)
  return rid, exp
end

