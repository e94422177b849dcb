-- Pin a product if it exists and fewer than the maximum are pinned.
-- KEYS: 1 products, 2 pinned    ARGV: 1 product id, 2 max pinned
-- Returns "pinned", "already_pinned", "unknown_product" or "pin_limit".
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'unknown_product' end
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 'already_pinned' end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 'pin_limit' end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return 'pinned'
