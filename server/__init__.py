"""liveshop server: the aiohttp application, WebSocket gateway and real-time services over Redis."""

__version__ = "0.1.0"
