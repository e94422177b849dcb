-- PK battles (server/pk.py). Every call touches the keys of ONE Cluster slot: either one show's
-- keys ({show:ID}: claim, release) or one PK's record ({pk:ID}: create, activate, score, finish).
-- Times come from the Redis clock (TIME), so every node counts the same battle window.
-- ARGV[1] is the operation.
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function state(pk)
  local raw = redis.call('HGETALL', pk)
  local out = {}
  for i = 1, #raw, 2 do out[raw[i]] = raw[i + 1] end
  return out
end

local function scores_event(kind, s, extra)
  local a, b = s.a, s.b
  local event = {
    type = kind, pk_id = s.id, seq = tonumber(s.seq or 0),
    scores = {[a] = tonumber(s['score:a'] or 0), [b] = tonumber(s['score:b'] or 0)},
    likes = {[a] = tonumber(s['likes:a'] or 0), [b] = tonumber(s['likes:b'] or 0)},
    gmv = {[a] = tonumber(s['gmv:a'] or 0), [b] = tonumber(s['gmv:b'] or 0)},
    ends_at = tonumber(s.ends_at or 0), remaining_ms = math.max(0, tonumber(s.ends_at or 0) - now),
  }
  for k, v in pairs(extra or {}) do event[k] = v end
  return event
end

local function publish_both(s, event)  -- broker_publish: server/broker.lua, prepended by the loader
  broker_publish(s.channel_a, event, 0)
  broker_publish(s.channel_b, event, 0)
end

if op == 'claim' then
  -- KEYS: show's pk pointer, meta, media origin. ARGV: 2 pk id, 3 ttl ms
  if redis.call('HGET', KEYS[2], 'status') ~= 'live' or redis.call('EXISTS', KEYS[3]) == 0 then
    return {'not_live', ''}
  end
  local current = redis.call('GET', KEYS[1])
  if current and current ~= ARGV[2] then return {'busy', current} end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {'ok', ''}
elseif op == 'release' then
  -- KEYS: show's pk pointer. ARGV: 2 pk id. Compare-and-delete: never another PK's pointer.
  if redis.call('GET', KEYS[1]) == ARGV[2] then return redis.call('DEL', KEYS[1]) end
  return 0
elseif op == 'create' then
  -- KEYS: pk hash. ARGV: 2.. field, value pairs. An invite is used once: the record exists after.
  if redis.call('EXISTS', KEYS[1]) == 1 then return 'used' end
  redis.call('HSET', KEYS[1], 'status', 'starting', 'created_at', now, unpack(ARGV, 2))
  redis.call('PEXPIRE', KEYS[1], 60000)  -- a start that never finishes leaves nothing for long
  return 'ok'
elseif op == 'abort' then
  -- KEYS: pk hash. A start that failed half-way: its record goes, so the invite may be retried.
  if redis.call('HGET', KEYS[1], 'status') == 'starting' then return redis.call('DEL', KEYS[1]) end
  return 0
elseif op == 'activate' then
  -- KEYS: pk hash. ARGV: 2 keep ms after the end. starting → active, the clock starts now.
  local s = state(KEYS[1])
  if s.status ~= 'starting' then return false end
  local ends = now + tonumber(s.duration_ms)
  redis.call('HSET', KEYS[1], 'status', 'active', 'started_at', now, 'ends_at', ends, 'seq', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(s.duration_ms) + tonumber(ARGV[2]))
  s = state(KEYS[1])
  local event = scores_event('pk.started', s, {
    started_at = now, duration_ms = tonumber(s.duration_ms), now = now,
    sides = {{show_id = s.a, title = s.title_a, host_name = s.host_a},
             {show_id = s.b, title = s.title_b, host_name = s.host_b}},
  })
  publish_both(s, event)
  return cjson.encode(event)
elseif op == 'score' then
  -- KEYS: pk hash. ARGV: 2 show id, 3 likes, 4 paid amount (minor units).
  -- Points = likes × like_points + amount × gmv_points / 100 (gmv_points per 1.00 paid).
  local s = state(KEYS[1])
  if s.status ~= 'active' or now >= tonumber(s.ends_at) then return false end
  local side
  if ARGV[2] == s.a then side = 'a' elseif ARGV[2] == s.b then side = 'b' else return false end
  local likes, gmv = tonumber(ARGV[3]), tonumber(ARGV[4])
  local points = likes * tonumber(s.like_points) + math.floor(gmv * tonumber(s.gmv_points) / 100)
  redis.call('HINCRBY', KEYS[1], 'likes:' .. side, string.format('%d', likes))
  redis.call('HINCRBY', KEYS[1], 'gmv:' .. side, string.format('%d', gmv))
  redis.call('HINCRBY', KEYS[1], 'score:' .. side, string.format('%d', points))
  redis.call('HINCRBY', KEYS[1], 'seq', 1)
  s = state(KEYS[1])
  local event = scores_event('pk.score', s)
  publish_both(s, event)
  return cjson.encode(event)
elseif op == 'finish' then
  -- KEYS: pk hash. ARGV: 2 reason (time_up | ended_by_host | host_left), 3 by (user id or '').
  -- The one transition to ended: whoever makes it announces the result; later calls get false.
  local s = state(KEYS[1])
  if s.status ~= 'active' then return false end
  if ARGV[2] == 'time_up' and now < tonumber(s.ends_at) then return false end
  local sa, sb = tonumber(s['score:a'] or 0), tonumber(s['score:b'] or 0)
  local result, winner = 'cancelled', ''
  if ARGV[2] == 'time_up' then
    if sa > sb then result, winner = 'win', s.a
    elseif sb > sa then result, winner = 'win', s.b
    else result = 'draw' end
  end
  redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_at', now, 'result', result,
             'winner', winner, 'reason', ARGV[2], 'ended_by', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  s = state(KEYS[1])
  local event = scores_event('pk.ended', s, {
    result = result, winner = (winner ~= '' and winner) or cjson.null, reason = ARGV[2],
    ended_at = now, remaining_ms = 0,
  })
  publish_both(s, event)
  return cjson.encode(event)
end
return redis.error_reply('unknown pk op ' .. tostring(op))
