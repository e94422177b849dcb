-- Live auctions (after interactive_lib.lua). KEYS 1..11: see interactive_lib.lua;
-- 12 auctions, 13 auction_keys, 14 auction_bids, 15 funnel:bid.
-- ARGV: 1 operation, then its arguments. Returns one JSON object.
local op = ARGV[1]
local A = KEYS[12]
local NAMES = { 'product', 'title', 'currency', 'start_price', 'inc', 'reserve', 'start', 'end', 'cap',
  'soft', 'price', 'bids', 'leader', 'leader_name', 'ceiling', 'status' }

local function load_auction(id)
  local names = {}
  for i, name in ipairs(NAMES) do names[i] = id .. ':' .. name end
  local raw = redis.call('HMGET', A, unpack(names))
  if not raw[1] then return nil end
  local a = {}
  for i, name in ipairs(NAMES) do a[name] = raw[i] end
  for _, name in ipairs({ 'start_price', 'inc', 'reserve', 'start', 'end', 'cap', 'soft', 'price',
                          'bids', 'ceiling' }) do
    a[name] = tonumber(a[name])
  end
  return a
end

local function answer(outcome, a)
  return cjson.encode({ outcome = outcome, price = a.price, leader_name = a.leader_name,
                        bids = a.bids, ends_at = a['end'] })
end

-- One bid (the rules: see the 'bid' branch); returns its JSON answer, recorded under its key.
local function bid_one(id, uid, name, key, amount, max_amount, now)
  local ik = id .. '|' .. uid .. '|' .. key
  local prev = redis.call('HGET', KEYS[13], ik)
  if prev then return prev end
  local a = load_auction(id)
  if not a then return cjson.encode({ outcome = 'unknown_auction' }) end
  local outcome
  if a.status ~= 'live' or now >= a['end'] then
    outcome = 'ended'
  elseif now < a.start then
    outcome = 'not_started'
  else
    local least = a.bids == 0 and a.start_price or a.price + a.inc
    local ceiling = math.max(amount, max_amount)
    if amount < least then
      outcome = 'too_low'
    elseif a.leader == uid then
      a.price = amount
      a.ceiling = math.max(a.ceiling, ceiling)
      outcome = 'leading'
    elseif a.leader == '' then
      a.price, a.ceiling, a.leader, a.leader_name = amount, ceiling, uid, name
      outcome = 'leading'
    elseif ceiling > a.ceiling then
      a.price = math.max(amount, math.min(ceiling, a.ceiling + a.inc))
      a.ceiling, a.leader, a.leader_name = ceiling, uid, name
      outcome = 'leading'
    else
      a.price = math.min(a.ceiling, ceiling + a.inc)
      outcome = 'outbid_by_higher'
    end
    if outcome ~= 'too_low' then
      a.bids = a.bids + 1
      if a['end'] - now < a.soft then
        a['end'] = math.max(a['end'], math.min(now + a.soft, a.cap))  -- anti-sniping, up to the cap
      end
      redis.call('HSET', A, id .. ':price', a.price, id .. ':ceiling', a.ceiling, id .. ':leader', a.leader,
        id .. ':leader_name', a.leader_name, id .. ':bids', a.bids, id .. ':end', a['end'])
      redis.call('SADD', KEYS[15], uid)
      redis.call('HINCRBY', KEYS[6], 'bids', 1)
    end
  end
  local res = answer(outcome, a)
  redis.call('HSET', KEYS[13], ik, res)
  if outcome == 'leading' or outcome == 'outbid_by_higher' or outcome == 'too_low' then
    redis.call('RPUSH', KEYS[14], cjson.encode({ a = id, u = uid, amount = amount, ceiling = math.max(amount, max_amount),
      outcome = outcome, price = a.price, leader = a.leader, at = now, ends_at = a['end'] }))
  end
  return res
end

if op == 'create' then
  -- ARGV: 2 show, 3 product id, 4 start price, 5 increment, 6 reserve (0 = none), 7 starts in ms,
  --       8 duration ms, 9 soft close ms, 10 extension cap ms, 11 now ms
  local product, err = take_stock(ARGV[3], 1)
  if not product then return cjson.encode({ error = err }) end
  local id = ARGV[2] .. '.a' .. redis.call('HINCRBY', KEYS[8], 'auction', 1)
  local now = tonumber(ARGV[11])
  local start = now + tonumber(ARGV[7])
  local stop = start + tonumber(ARGV[8])
  redis.call('HSET', A, id .. ':product', ARGV[3], id .. ':title', product.title,
    id .. ':currency', product.currency, id .. ':start_price', ARGV[4], id .. ':inc', ARGV[5],
    id .. ':reserve', ARGV[6], id .. ':start', start, id .. ':end', stop,
    id .. ':cap', stop + tonumber(ARGV[10]), id .. ':soft', ARGV[9], id .. ':price', ARGV[4],
    id .. ':bids', 0, id .. ':leader', '', id .. ':leader_name', '', id .. ':ceiling', 0,
    id .. ':status', 'live', id .. ':created', now)
  unit_counters(id, 1)
  redis.call('SADD', KEYS[11], id)
  return cjson.encode({ id = id })

elseif op == 'bid' then
  -- ARGV: 2 auction, 3 user, 4 name, 5 key, 6 amount, 7 proxy maximum (0 = none), 8 now ms.
  -- Decided one at a time: a bid is accepted when amount >= start price (first bid) or
  -- price + increment. A challenger whose ceiling (max or amount) beats the leader's takes the
  -- lead at the least price that beats it; otherwise the leader's proxy answers, price rising to
  -- just above the challenger (at most the leader's ceiling; a tie keeps the earlier bidder).
  return bid_one(ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))

elseif op == 'bids' then
  -- ARGV: 2 now ms, 3 n, 4 msgpack array of n × (auction, user, name, key, amount, maximum):
  -- a micro-batch, decided one after the other. Returns n JSON answers.
  local now, n = tonumber(ARGV[2]), tonumber(ARGV[3])
  local bids = cmsgpack.unpack(ARGV[4])
  local out = {}
  for i = 0, n - 1 do
    local b = 1 + i * 6
    out[i + 1] = bid_one(bids[b], bids[b + 1], bids[b + 2], bids[b + 3], tonumber(bids[b + 4]),
      tonumber(bids[b + 5]), now)
  end
  return out

elseif op == 'close' then
  -- ARGV: 2 show, 3 auction, 4 now ms, 5 "1" = now (staff) / "0" = only once the end has passed,
  --       6 reservation ttl ms. Exactly one close: the status moves live → ended once. The leader
  --       wins if the price reaches the reserve and gets a reservation at the winning price.
  local show, id, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
  local a = load_auction(id)
  if not a then return cjson.encode({ outcome = 'unknown_auction' }) end
  if a.status ~= 'live' then return cjson.encode({ outcome = 'already_ended' }) end
  if ARGV[5] ~= '1' and now < a['end'] then return cjson.encode({ outcome = 'open' }) end
  local stop = math.min(now, a['end'])
  redis.call('HSET', A, id .. ':status', 'ended', id .. ':end', stop, id .. ':closed_at', now)
  redis.call('SREM', KEYS[11], id)
  local result = { outcome = 'ended', price = a.price, bids = a.bids, reserve_met = false }
  if a.bids > 0 and a.price >= a.reserve then
    local rid, exp = reserve_unit(show, id, a.product, a.title, a.leader, a.leader_name,
      'auction:' .. id, a.price, a.currency, now, tonumber(ARGV[6]))
    redis.call('HINCRBY', KEYS[1], id .. ':left', -1)
    redis.call('HSET', A, id .. ':winner', a.leader, id .. ':winner_name', a.leader_name, id .. ':reservation', rid)
    result.reserve_met = true
    result.winner = a.leader
    result.winner_name = a.leader_name
    result.reservation_id = rid
    result.expires_at = exp
  end
  return cjson.encode(result)
end
return cjson.encode({ outcome = 'bad_op' })
