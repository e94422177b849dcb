"""ICE configuration: host addresses, announced address, UDP port range, STUN/TURN servers.

No public STUN server by default (aiortc's default uses one): loopback and LAN work
without it, and real deployments configure their own servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiortc import RTCConfiguration, RTCIceServer

from .aiortc_internals import configure_ice


@dataclass
class IceConfig:
    """What ICE gathers, announces and hands to clients."""

    addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    announced_address: str = ""
    port_min: int = 0
    port_max: int = 0
    servers: list[str] = field(default_factory=list)  # stun:host:port, turn:user:pass@host:port

    def apply(self) -> None:
        """Install the gathering policy (process wide: aioice has no per-connection hook)."""
        configure_ice(self.addresses, self.announced_address, self.port_min, self.port_max)

    def ice_servers(self) -> list[RTCIceServer]:
        servers = []
        for url in self.servers:
            parts = urlsplit(url.replace(":", "://", 1)) if "://" not in url else urlsplit(url)
            if parts.username:
                host = f"{parts.scheme}:{parts.hostname}" + (f":{parts.port}" if parts.port else "")
                if parts.query:  # turn:host:3478?transport=tcp (RFC 7065 §3.1) keeps its query
                    host += f"?{parts.query}"
                servers.append(
                    RTCIceServer(
                        urls=host, username=parts.username, credential=parts.password or ""
                    )
                )
            else:
                servers.append(RTCIceServer(urls=url))
        return servers

    def rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=self.ice_servers())

    def link_headers(self) -> list[str]:
        """``Link: <url>; rel="ice-server"`` values for WHIP/WHEP responses (RFC 9725 §4.6)."""
        out = []
        for server in self.ice_servers():
            value = f'<{server.urls}>; rel="ice-server"'
            if server.username:
                value += (
                    f'; username="{server.username}"; credential="{server.credential}"'
                    '; credential-type="password"'
                )
            out.append(value)
        return out
