-- The broker's envelope (server/broker.py), for scripts that publish inside their atomic step.
-- The loader (server/lua.py) prepends this file to every script declared with the broker library.
local function broker_publish(channel, event, droppable)
  redis.call('PUBLISH', channel, cjson.encode({d = droppable, s = 0, e = event}))
end
