-- Record the keys of attempts a node answered `sold_out` without Redis (see sales.SoldOut).
-- KEYS: 1 buy_keys. ARGV: 1 msgpack array of `SALE|USER|KEY` fields. HSETNX: a key that already
-- has an answer keeps its first one. Returns how many were new.
local fields = cmsgpack.unpack(ARGV[1])
local added = 0
for _, name in ipairs(fields) do
  added = added + redis.call('HSETNX', KEYS[1], name, 'sold_out')
end
return added
