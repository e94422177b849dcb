"""liveshop media relay: WHIP ingest, WHEP playback, passthrough SFU with a keyframe cache.

Vocabulary (after mediasoup): a :class:`~media.router.Router` per show, a
:class:`~media.producer.Producer` per published track, a :class:`~media.consumer.Consumer`
per viewer track; :class:`~media.relay.Relay` owns the routers of one process.
"""
