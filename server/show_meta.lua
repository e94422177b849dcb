-- A show's meta hash is written in one step, so no reader ever sees half a show.
-- KEYS: 1 {show:ID}:meta    ARGV: 1 "create" (only if absent) | "update" (only if present),
--                                 then field, value pairs. Returns 1 if written, 0 if not.
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (ARGV[1] == 'create') == exists then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
