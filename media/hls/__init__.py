"""Low-Latency HLS from the passthrough stream: CMAF fMP4 parts, segments and playlists in memory.

:class:`~media.hls.packager.HlsPackager` hangs on a show's producers like the recorder does
(``forward(packet)`` per RTP packet), remuxes H.264 + Opus into fragmented MP4 with PyAV (no
decode, no re-encode) and keeps a bounded window of segments for ``server/hls_api.py``.
"""

from .packager import HlsConfig, HlsPackager, HlsUnavailable, follow_hls, stop_hls

__all__ = ["HlsConfig", "HlsPackager", "HlsUnavailable", "follow_hls", "stop_hls"]
