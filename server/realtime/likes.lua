-- Add a node's aggregated likes and publish the new total (publish order = total order).
-- KEYS: 1 counters hash. ARGV: 1 likes to add, 2 channel
local total = redis.call('HINCRBY', KEYS[1], 'likes', ARGV[1])
broker_publish(ARGV[2], {type = 'likes', total = total}, 0)
return total
