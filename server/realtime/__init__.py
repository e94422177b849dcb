"""The real-time services of a show: each the only reader and writer of its Redis keys.

- :mod:`.chat` (+ ``chat.lua``, :mod:`.banned_words`): danmaku — validation, banned words, the
  atomic rate limit + append + publish, history and recovery;
- :mod:`.moderation`: delete, mute, ban, pin, the audit stream, closing a banned user's sockets;
- :mod:`.presence` (+ ``presence.lua``): viewers now and the peak, summed over live nodes, and
  who is here; its reporter counts the hubs' connections every second;
- :mod:`.likes` (+ ``likes.lua``): taps summed per node, flushed as one total;
- :mod:`.pk` (+ ``pk.lua``): PK battles between two live shows (docs/pk.md).

Each adds its WebSocket commands to the protocol registry and its part of the join snapshot in
its ``setup(app)``; none knows another's keys, and none writes to a socket (the hub does).
"""
