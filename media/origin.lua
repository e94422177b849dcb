-- The origin directory entry of one show: a hash leased with PEXPIRE (media/origin.py).
-- KEYS[1] the show's origin hash; ARGV[1] op (claim | renew | release); ARGV[2] our epoch;
-- ARGV[3] lease in ms; ARGV[4..] field, value pairs (claim only).
-- Returns 1 done, 0 no entry (renew: lease lapsed), -1 another publisher's entry (left alone).
local op = ARGV[1]
if op == 'claim' then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
local current = redis.call('HGET', KEYS[1], 'epoch')
if not current then
  return 0
end
if current ~= ARGV[2] then
  return -1
end
if op == 'renew' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('DEL', KEYS[1])
end
return 1
