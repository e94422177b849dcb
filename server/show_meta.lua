-- A show's meta hash is written in one step, so no reader ever sees half a show.
-- KEYS: 1 {show:ID}:meta    ARGV: 1 "create" (only if absent) | "update" (only if present),
--                                 then field, value pairs. Returns 1 if written, 0 if not.
-- A show exists when its record is whole (it has created_at): a partial record left by the old
-- two-step create (HSETNX id, then HSET) counts as absent and is replaced.
local exists = redis.call('HEXISTS', KEYS[1], 'created_at') == 1
if (ARGV[1] == 'create') == exists then return 0 end
if ARGV[1] == 'create' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
