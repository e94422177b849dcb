-- Add a node's aggregated likes and publish the new total (publish order = total order).
-- KEYS: 1 counters hash. ARGV: 1 likes to add, 2 channel
local total = redis.call('HINCRBY', KEYS[1], 'likes', ARGV[1])
redis.call('PUBLISH', ARGV[2], cjson.encode({d = 0, s = 0, e = {type = 'likes', total = total}}))
return total
