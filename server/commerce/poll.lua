-- Polls: one vote per user in Redis counters, frozen at the close. One script, several operations.
-- KEYS: 1 polls, 2 poll_votes, 3 seq, 4 interactive_live, 5 funnel:voted, 6 counters
-- ARGV: 1 operation, then its arguments. Returns one JSON object (see each branch).
local op = ARGV[1]

local function tallies(q, n)
  local names = {}
  for i = 0, n - 1 do names[#names + 1] = q .. ':t:' .. i end
  local raw = redis.call('HMGET', KEYS[1], unpack(names))
  local out = {}
  for i = 1, n do out[i] = tonumber(raw[i] or '0') end
  return out
end

if op == 'create' then
  -- ARGV: 2 show id, 3 definition JSON, 4 option count, 5 changeable 1|0, 6 now ms, 7 duration ms
  local q = ARGV[2] .. '.q' .. redis.call('HINCRBY', KEYS[3], 'poll', 1)
  local n, now = tonumber(ARGV[4]), tonumber(ARGV[6])
  redis.call('HSET', KEYS[1], q .. ':def', ARGV[3], q .. ':n', n, q .. ':changeable', ARGV[5],
    q .. ':start', now, q .. ':end', now + tonumber(ARGV[7]), q .. ':status', 'open', q .. ':total', 0)
  for i = 0, n - 1 do redis.call('HSET', KEYS[1], q .. ':t:' .. i, 0) end
  redis.call('SADD', KEYS[4], q)
  return cjson.encode({ ok = true, id = q })

elseif op == 'votes' then
  -- ARGV: 2 now ms, 3 n, 4 msgpack array of n × (poll id, user id, option index): a micro-batch,
  -- decided one after the other. Returns n JSON answers {outcome[, option]}.
  local now, n = tonumber(ARGV[2]), tonumber(ARGV[3])
  local votes = cmsgpack.unpack(ARGV[4])
  local polls, out = {}, {}
  for i = 0, n - 1 do
    local q, uid, opt = votes[1 + i * 3], votes[2 + i * 3], tonumber(votes[3 + i * 3])
    local f = polls[q]
    if f == nil then
      f = redis.call('HMGET', KEYS[1], q .. ':n', q .. ':changeable', q .. ':end', q .. ':status')
      polls[q] = f
    end
    local res
    if not f[1] then
      res = { outcome = 'unknown_poll' }
    elseif f[4] ~= 'open' or now >= tonumber(f[3]) then
      res = { outcome = 'closed' }
    elseif opt >= tonumber(f[1]) then
      res = { outcome = 'bad_option' }
    else
      local vk = q .. '|' .. uid
      local prev = redis.call('HGET', KEYS[2], vk)
      redis.call('SADD', KEYS[5], uid)
      if prev then
        prev = tonumber(prev)
        if prev == opt then
          res = { outcome = 'voted', option = opt }
        elseif f[2] ~= '1' then
          res = { outcome = 'already_voted', option = prev }
        else
          redis.call('HINCRBY', KEYS[1], q .. ':t:' .. prev, -1)
          redis.call('HINCRBY', KEYS[1], q .. ':t:' .. opt, 1)
          redis.call('HSET', KEYS[2], vk, opt)
          res = { outcome = 'changed', option = opt }
        end
      else
        redis.call('HINCRBY', KEYS[1], q .. ':t:' .. opt, 1)
        redis.call('HINCRBY', KEYS[1], q .. ':total', 1)
        redis.call('HINCRBY', KEYS[6], 'votes', 1)
        redis.call('HSET', KEYS[2], vk, opt)
        res = { outcome = 'voted', option = opt }
      end
    end
    out[i + 1] = cjson.encode(res)
  end
  return out

elseif op == 'close' then
  -- ARGV: 2 poll id, 3 now ms, 4 "1" = close now (staff), "0" = only if the end has passed.
  -- The tallies are frozen into :final exactly once; votes are refused from the end on, so the
  -- frozen numbers are the tallies at the end whenever the close runs.
  local q, now = ARGV[2], tonumber(ARGV[3])
  local f = redis.call('HMGET', KEYS[1], q .. ':n', q .. ':end', q .. ':status', q .. ':final')
  if not f[1] then return cjson.encode({ outcome = 'unknown_poll' }) end
  if f[3] == 'closed' then return cjson.encode({ outcome = 'already_closed', final = cjson.decode(f[4]) }) end
  if ARGV[4] ~= '1' and now < tonumber(f[2]) then return cjson.encode({ outcome = 'open' }) end
  local final = tallies(q, tonumber(f[1]))
  local stop = math.min(now, tonumber(f[2]))
  redis.call('HSET', KEYS[1], q .. ':status', 'closed', q .. ':end', stop, q .. ':final', cjson.encode(final))
  redis.call('SREM', KEYS[4], q)
  return cjson.encode({ outcome = 'closed', final = final })
end
return cjson.encode({ outcome = 'bad_op' })
