-- Buy after the show (replay.py): one unit of a product at its list price, as a normal order.
-- Prepended with interactive_lib.lua: KEYS 1..11 as there (1 sales, 2 sale_users, 3 reservations,
-- 4 expiries, 5 orders stream, 6 counters, 7 funnel:reserved, 8 seq, 9 products, 10 stock,
-- 11 interactive_live), 12 buy_keys.
-- ARGV: 1 show id, 2 product id, 3 user id, 4 name, 5 idempotency key, 6 now ms, 7 hold ms.
-- The order's "sale" is the product's replay shelf: its counters live in the sales hash under the
-- product id, so order.lua pays, expires and cancels it like any reservation. A released unit
-- lands in the shelf's `left`; the next replay buy hands such units back to the product's stock.
-- Never touches a flash sale: an ended sale stays ended. Returns the JSON answer (kept per key).
local show, pid, uid, name, key = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now, hold = tonumber(ARGV[6]), tonumber(ARGV[7])
local seen_key = pid .. '|' .. uid .. '|' .. key
local seen = redis.call('HGET', KEYS[12], seen_key)
if seen then return seen end

local back = tonumber(redis.call('HGET', KEYS[1], pid .. ':left') or '0')
if back > 0 then
  redis.call('HINCRBY', KEYS[10], pid, back)
  redis.call('HSET', KEYS[1], pid .. ':left', 0)
end
local product, err = take_stock(pid, 1)
if not product then
  if err == 'unknown_product' then return cjson.encode({ outcome = err }) end
  local answer = cjson.encode({ outcome = 'sold_out' })
  redis.call('HSET', KEYS[12], seen_key, answer)
  return answer
end
local rid, exp = reserve_unit(show, pid, pid, product.title, uid, name, key, product.price,
                              product.currency, now, hold)
local answer = cjson.encode({ outcome = 'reserved', reservation_id = rid, expires_at = exp,
                              product_id = pid, price = product.price, currency = product.currency })
redis.call('HSET', KEYS[12], seen_key, answer)
return answer
