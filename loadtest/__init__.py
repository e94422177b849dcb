"""liveshop load tester: simulates the crowd of a live-commerce show over the public protocols.

It never imports ``server``: it speaks HTTP, the ``liveshop.msgpack`` WebSocket protocol and
WHEP exactly as a browser or a phone would, and checks business invariants afterwards.
"""

from .version import __version__

__all__ = ["__version__"]
