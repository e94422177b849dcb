-- Every state change of a reservation after the buy: reserved → paying → paid | failed,
-- reserved → expired | cancelled. A unit goes back to stock exactly once, because the release
-- happens only on a transition out of reserved/paying, atomically with the state change.
-- KEYS: 1 sales, 2 sale_users, 3 reservations, 4 expiries, 5 orders stream, 6 counters,
--       7 funnel:paid, 8 pay_keys, 9 coupon_claims, 10 coupons
-- ARGV: 1 operation, then its arguments (see each branch), then now (ms, the app clock: appended
-- by server/lua.py, read into `now`). Returns {code, order JSON or ""}.
local op = ARGV[1]
local PAY_GRACE_MS = 60000

local function save(o, event)
  o.v = o.v + 1
  local js = cjson.encode(o)
  redis.call('HSET', KEYS[3], o.id, js)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 500000, '*', 'type', event, 'order', js)
  return js
end

local function release(o, status)
  o.status = status
  o.closed_at = now
  redis.call('HINCRBY', KEYS[1], o.sale_id .. ':left', o.quantity)
  redis.call('HINCRBY', KEYS[1], o.sale_id .. ':reserved', -o.quantity)
  redis.call('HINCRBY', KEYS[2], o.sale_id .. '|' .. o.user_id, -o.quantity)
  redis.call('ZREM', KEYS[4], o.id)
  if o.coupon_id then
    redis.call('HSET', KEYS[9], o.coupon_id .. '|' .. o.user_id, 'claimed')
  end
  return save(o, status)
end

local function load(rid)
  local raw = redis.call('HGET', KEYS[3], rid)
  if not raw then return nil end
  return cjson.decode(raw), raw
end

if op == 'cancel' then
  -- ARGV: 2 reservation id, 3 user id of the caller ("" for staff)
  local o, raw = load(ARGV[2])
  if not o then return { 'not_found', '' } end
  if ARGV[3] ~= '' and o.user_id ~= ARGV[3] then return { 'forbidden', '' } end
  if o.status ~= 'reserved' then return { 'not_cancellable', raw } end
  return { 'cancelled', release(o, 'cancelled') }

elseif op == 'sweep' then
  -- ARGV: 2 max entries. Expires due reservations; returns {"swept", n, stale paying ids...}.
  local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  local result = { 'swept', 0 }
  local expired = 0
  for _, rid in ipairs(due) do
    local o = load(rid)
    if not o then
      redis.call('ZREM', KEYS[4], rid)
    elseif o.status == 'reserved' then
      release(o, 'expired')
      expired = expired + 1
    elseif o.status == 'paying' then
      -- A payment that never finished (its node died): hand it back for a provider lookup.
      redis.call('ZADD', KEYS[4], now + PAY_GRACE_MS, rid)
      result[#result + 1] = rid
    else
      redis.call('ZREM', KEYS[4], rid)
    end
  end
  result[2] = expired
  return result

elseif op == 'pay_begin' then
  -- ARGV: 2 reservation id, 3 user id, 4 idempotency key, 5 coupon id or ""
  local rid, uid, key, cid = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  -- Ownership first: a stored answer (with its buyer, amount, charge id) is only ever replayed
  -- to the reservation's own buyer, whoever else learns the key.
  local o, raw = load(rid)
  if not o then return { 'not_found', '' } end
  if o.user_id ~= uid then return { 'forbidden', '' } end
  local seen = redis.call('HGET', KEYS[8], rid .. '|' .. key)
  if seen then return { 'replay', seen } end
  if o.status == 'paid' then return { 'already_paid', raw } end
  if o.status == 'paying' then return { 'in_progress', raw } end
  if o.status ~= 'reserved' then return { 'not_payable', raw } end
  if now >= o.expires_at then return { 'not_payable', release(o, 'expired') } end
  local amount = o.price * o.quantity
  if cid ~= '' then
    local claim = redis.call('HGET', KEYS[9], cid .. '|' .. uid)
    if not claim then return { 'coupon_not_claimed', raw } end
    if claim ~= 'claimed' then return { 'coupon_used', raw } end
    local f = redis.call('HMGET', KEYS[10], cid .. ':expires', cid .. ':percent_off', cid .. ':amount_off', cid .. ':currency')
    if not f[1] then return { 'coupon_not_claimed', raw } end
    if now >= tonumber(f[1]) then return { 'coupon_expired', raw } end
    local pct, off = tonumber(f[2] or '0'), tonumber(f[3] or '0')
    if off > 0 and f[4] ~= o.currency then return { 'coupon_not_applicable', raw } end
    local discount = math.floor(amount * pct / 100) + off
    if discount > amount then discount = amount end
    amount = amount - discount
    o.coupon_id = cid
    o.discount = discount
    redis.call('HSET', KEYS[9], cid .. '|' .. uid, 'used:' .. rid)
  end
  o.amount = amount
  o.status = 'paying'
  o.pay_key = key
  o.paying_since = now
  redis.call('ZADD', KEYS[4], now + PAY_GRACE_MS, rid)
  o.v = o.v + 1
  local js = cjson.encode(o)
  redis.call('HSET', KEYS[3], rid, js)
  return { 'charge', js }

elseif op == 'pay_finish' then
  -- ARGV: 2 reservation id, 3 key, 4 "1" paid / "0" failed, 5 charge id, 6 failure reason
  local rid, key = ARGV[2], ARGV[3]
  local o, raw = load(rid)
  if not o then return { 'not_found', '' } end
  if o.status ~= 'paying' or o.pay_key ~= key then return { 'stale', raw } end
  local js
  if ARGV[4] == '1' then
    o.status = 'paid'
    o.paid_at = now
    o.charge_id = ARGV[5]
    redis.call('HINCRBY', KEYS[1], o.sale_id .. ':sold', o.quantity)
    redis.call('HINCRBY', KEYS[1], o.sale_id .. ':reserved', -o.quantity)
    redis.call('ZREM', KEYS[4], rid)
    redis.call('HINCRBY', KEYS[6], 'paid_orders', 1)
    redis.call('HINCRBY', KEYS[6], 'gmv:' .. o.currency, o.amount)
    redis.call('SADD', KEYS[7], o.user_id)
    js = save(o, 'paid')
  else
    o.failure = ARGV[6]
    js = release(o, 'failed')
  end
  redis.call('HSET', KEYS[8], rid .. '|' .. key, js)
  return { o.status, js }
end
return { 'bad_op', '' }
