-- Claim a coupon: first come, one per user, limited count, before expiry.
-- KEYS: 1 coupons, 2 coupon_claims    ARGV: 1 coupon id, 2 user id, 3 now (the app clock, server/lua.py)
-- Returns {outcome, left}: claimed, already_claimed, exhausted, expired, unknown_coupon.
local cid, uid = ARGV[1], ARGV[2]
local f = redis.call('HMGET', KEYS[1], cid .. ':left', cid .. ':expires')
if not f[1] then return { 'unknown_coupon', 0 } end
local left = tonumber(f[1])
if redis.call('HEXISTS', KEYS[2], cid .. '|' .. uid) == 1 then return { 'already_claimed', left } end
if now >= tonumber(f[2]) then return { 'expired', left } end
if left <= 0 then return { 'exhausted', 0 } end
redis.call('HINCRBY', KEYS[1], cid .. ':left', -1)
redis.call('HSET', KEYS[2], cid .. '|' .. uid, 'claimed')
return { 'claimed', left - 1 }
