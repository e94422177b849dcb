-- Group buys (after interactive_lib.lua). KEYS 1..11: see interactive_lib.lua;
-- 12 group_deals, 13 group_members, 14 groups, 15 funnel:group_joined.
-- A deal takes `qty` units of a product's stock. Its groups form one after another: the first
-- join opens group N with a window; a join holds one unit (deal :left → :held); the size-th join
-- forms the group (every member's unit becomes a reservation at the group price); a window that
-- ends short fails the group and releases every held unit once (the status moves open → failed
-- once, in the same call). Units: qty = left + held + reserved + sold (reserved/sold in sales).
-- ARGV: 1 operation, then its arguments. Returns one JSON object; `events` lists what to publish.
local op = ARGV[1]
local D = KEYS[12]
local INTS = { 'price', 'size', 'qty', 'window', 'start', 'end', 'held', 'group', 'groups', 'formed', 'failed' }

local function load_deal(id)
  local names = { id .. ':status', id .. ':product', id .. ':title', id .. ':currency' }
  for _, name in ipairs(INTS) do names[#names + 1] = id .. ':' .. name end
  local raw = redis.call('HMGET', D, unpack(names))
  if not raw[1] then return nil end
  local d = { id = id, status = raw[1], product = raw[2], title = raw[3], currency = raw[4] }
  for i, name in ipairs(INTS) do d[name] = tonumber(raw[4 + i]) end
  d.left = tonumber(redis.call('HGET', KEYS[1], id .. ':left'))
  return d
end

local function load_group(d)
  if d.group == 0 then return nil end
  return cjson.decode(redis.call('HGET', KEYS[14], d.id .. '#' .. d.group))
end

local function save_group(d, g)
  redis.call('HSET', KEYS[14], d.id .. '#' .. g.n, cjson.encode(g))
end

-- Fail the open group if its window ended (or `force`), then end the deal if it is over.
local function settle(d, now, force, events)
  local g = load_group(d)
  if g and g.status == 'open' and (force or now >= g.ends) then
    local users = {}
    for i, m in ipairs(g.members) do
      users[i] = m[1]
      redis.call('HDEL', KEYS[13], d.id .. '|' .. m[1])
    end
    local n = #g.members
    redis.call('HINCRBY', KEYS[1], d.id .. ':left', n)
    d.left = d.left + n
    d.held = d.held - n
    d.failed = d.failed + 1
    d.group = 0
    g.status = 'failed'
    g.closed_at = now
    save_group(d, g)
    redis.call('HSET', D, d.id .. ':held', d.held, d.id .. ':group', 0, d.id .. ':failed', d.failed)
    events[#events + 1] = { type = 'group.failed', deal_id = d.id, group = g.n, members = users,
                            released = n }
  end
  if d.status == 'live' and (force or now >= d['end']) then
    d.status = 'ended'
    redis.call('HSET', D, d.id .. ':status', 'ended', d.id .. ':closed_at', now)
    redis.call('SREM', KEYS[11], d.id)
    events[#events + 1] = { type = 'group.ended', deal_id = d.id, formed = d.formed, failed = d.failed }
  end
end

local function answer(outcome, d, g, events, extra)
  local out = { outcome = outcome, deal_id = d.id, left = d.left, size = d.size, events = events }
  if g then
    out.group = g.n
    out.joined = #g.members
    out.ends_at = g.ends
  end
  for name, v in pairs(extra or {}) do out[name] = v end
  return cjson.encode(out)
end

if op == 'create' then
  -- ARGV: 2 show, 3 product, 4 group price, 5 size, 6 quantity, 7 window ms, 8 starts in ms,
  --       9 duration ms, 10 now ms
  local qty = tonumber(ARGV[6])
  local product, err = take_stock(ARGV[3], qty)
  if not product then return cjson.encode({ error = err }) end
  local id = ARGV[2] .. '.g' .. redis.call('HINCRBY', KEYS[8], 'group_buy', 1)
  local now = tonumber(ARGV[10])
  local start = now + tonumber(ARGV[8])
  redis.call('HSET', D, id .. ':status', 'live', id .. ':product', ARGV[3], id .. ':title', product.title,
    id .. ':currency', product.currency, id .. ':list_price', product.price, id .. ':price', ARGV[4],
    id .. ':size', ARGV[5], id .. ':qty', qty, id .. ':window', ARGV[7], id .. ':start', start,
    id .. ':end', start + tonumber(ARGV[9]), id .. ':held', 0, id .. ':group', 0, id .. ':groups', 0,
    id .. ':formed', 0, id .. ':failed', 0, id .. ':created', now)
  unit_counters(id, qty)
  redis.call('SADD', KEYS[11], id)
  return cjson.encode({ id = id })
end

-- One join (the rules: see the header); returns its JSON answer with the events to publish.
local function join_one(id, uid, name, now, ttl, show)
  local d = load_deal(id)
  if not d then return cjson.encode({ outcome = 'unknown_deal' }) end
  local events = {}
  settle(d, now, false, events)
  if d.status ~= 'live' then return answer('ended', d, nil, events) end
  if now < d.start then return answer('not_started', d, nil, events) end
  local mine = redis.call('HGET', KEYS[13], id .. '|' .. uid)
  if mine then
    return answer('already_joined', d, load_group(d), events, { member_of = tonumber(mine) })
  end
  if d.left <= 0 then return answer('sold_out', d, load_group(d), events) end
  local g = load_group(d)
  if not g then
    d.groups = d.groups + 1
    d.group = d.groups
    g = { n = d.group, status = 'open', members = {}, opened = now,
          ends = math.min(now + d.window, d['end']) }
  end
  g.members[#g.members + 1] = { uid, name }
  redis.call('HSET', KEYS[13], id .. '|' .. uid, g.n)
  redis.call('HINCRBY', KEYS[1], id .. ':left', -1)
  redis.call('SADD', KEYS[15], uid)
  redis.call('HINCRBY', KEYS[6], 'group_joins', 1)
  d.left = d.left - 1
  d.held = d.held + 1
  local outcome, extra = 'joined', {}
  if #g.members >= d.size then
    local members = {}
    for i, m in ipairs(g.members) do
      local rid, exp = reserve_unit(show, id, d.product, d.title, m[1], m[2], 'group:' .. id .. '#' .. g.n,
        d.price, d.currency, now, ttl)
      members[i] = { user_id = m[1], name = m[2], reservation_id = rid, expires_at = exp }
      if m[1] == uid then extra.reservation_id = rid; extra.expires_at = exp end
    end
    d.held = d.held - #g.members
    d.formed = d.formed + 1
    d.group = 0
    g.status = 'formed'
    g.closed_at = now
    g.reservations = members
    outcome = 'formed'
    events[#events + 1] = { type = 'group.formed', deal_id = id, group = g.n, members = members,
                            price = d.price, currency = d.currency }
  end
  save_group(d, g)
  redis.call('HSET', D, id .. ':held', d.held, id .. ':group', d.group, id .. ':groups', d.groups,
    id .. ':formed', d.formed)
  return answer(outcome, d, g, events, extra)
end

if op == 'joins' then
  -- ARGV: 2 now ms, 3 n, 4 msgpack array of n × (deal, user, name), 5 reservation ttl ms, 6 show:
  -- a micro-batch, decided one after the other. Returns n JSON answers.
  local now, n, ttl, show = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[6]
  local joins = cmsgpack.unpack(ARGV[4])
  local out = {}
  for i = 0, n - 1 do
    out[i + 1] = join_one(joins[1 + i * 3], joins[2 + i * 3], joins[3 + i * 3], now, ttl, show)
  end
  return out
end

if op == 'join' then
  -- ARGV: 2 deal, 3 user, 4 name, 5 now ms, 6 reservation ttl ms, 7 show
  return join_one(ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7])
end

local id = ARGV[2]
local d = load_deal(id)
if not d then return cjson.encode({ outcome = 'unknown_deal' }) end
local events = {}

if op == 'leave' then
  -- ARGV: 2 deal, 3 user, 4 now ms. Only from a group that has not formed.
  local uid, now = ARGV[3], tonumber(ARGV[4])
  settle(d, now, false, events)
  local mine = redis.call('HGET', KEYS[13], id .. '|' .. uid)
  if not mine then return answer('not_joined', d, nil, events) end
  local g = load_group(d)
  if not g or g.n ~= tonumber(mine) then return answer('already_formed', d, nil, events) end
  local kept = {}
  for _, m in ipairs(g.members) do
    if m[1] ~= uid then kept[#kept + 1] = m end
  end
  g.members = kept
  redis.call('HDEL', KEYS[13], id .. '|' .. uid)
  redis.call('HINCRBY', KEYS[1], id .. ':left', 1)
  d.left = d.left + 1
  d.held = d.held - 1
  if #kept == 0 then  -- an empty group closes: the next join opens a fresh window
    g.status = 'empty'
    g.closed_at = now
    d.group = 0
  end
  save_group(d, g)
  redis.call('HSET', D, id .. ':held', d.held, id .. ':group', d.group)
  return answer('left', d, g, events)

elseif op == 'settle' then
  -- ARGV: 2 deal, 3 now ms, 4 "1" = end the deal now (staff)
  settle(d, tonumber(ARGV[3]), ARGV[4] == '1', events)
  return answer(d.status, d, load_group(d), events)
end
return cjson.encode({ outcome = 'bad_op' })
