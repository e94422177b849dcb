-- Create a flash sale, taking its quantity out of the product's stock, all or nothing.
-- KEYS: 1 products, 2 stock, 3 sales, 4 seq
-- ARGV: 1 show id, 2 product id, 3 quantity, 4 sale price, 5 per-user limit, 6 starts in (ms),
--       7 duration (ms), 8 now (ms, the app clock: appended by server/lua.py, read into `now`)
-- Returns {"ok", sale id, start ms, end ms} or {error code}.
local raw = redis.call('HGET', KEYS[1], ARGV[2])
if not raw then return { 'unknown_product' } end
local product = cjson.decode(raw)
local qty = tonumber(ARGV[3])
local have = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if have <= 0 then return { 'out_of_stock' } end
if have < qty then return { 'insufficient_stock', tostring(have) } end
redis.call('HINCRBY', KEYS[2], ARGV[2], -qty)
local sid = ARGV[1] .. '.s' .. redis.call('HINCRBY', KEYS[4], 'sale', 1)
local start = now + tonumber(ARGV[6])
local stop = start + tonumber(ARGV[7])
redis.call('HSET', KEYS[3],
  sid .. ':product', ARGV[2], sid .. ':title', product.title, sid .. ':currency', product.currency,
  sid .. ':price', ARGV[4], sid .. ':list_price', product.price, sid .. ':qty', qty, sid .. ':left', qty,
  sid .. ':reserved', 0, sid .. ':sold', 0, sid .. ':limit', ARGV[5], sid .. ':start', start,
  sid .. ':end', stop, sid .. ':status', 'active', sid .. ':created', now)
return { 'ok', sid, tostring(start), tostring(stop) }
