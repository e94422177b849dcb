"""Publisher streams of a show: ``main`` (the host) and ``cohost`` (a second camera, issue 20).

Each stream is its own :class:`~media.router.Router`, keyed in the relay by a *media id*:
the show id for ``main`` (unchanged, so everything that knew one router per show still
does) and ``{show}~{stream}`` for the others. Show ids never contain ``~``
(``[A-Za-z0-9_-]``), so the media id names exactly one (show, stream). Because a stream is
just another router, the GOP cache and instant join, the origin directory and edges across
nodes, media workers and trickle ICE work per stream without knowing about streams.
"""

from __future__ import annotations

MAIN = "main"
COHOST = "cohost"
STREAMS: tuple[str, ...] = (MAIN, COHOST)
SEPARATOR = "~"


def media_id(show_id: str, stream: str = MAIN) -> str:
    """The relay's key for one stream of a show."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    return show_id if stream == MAIN else f"{show_id}{SEPARATOR}{stream}"


def split(media: str) -> tuple[str, str]:
    """``(show id, stream)`` of a media id."""
    show_id, sep, stream = media.partition(SEPARATOR)
    return (show_id, stream) if sep else (show_id, MAIN)


def is_main(media: str) -> bool:
    """The host's stream: the one that is recorded and packaged as LL-HLS."""
    return SEPARATOR not in media
