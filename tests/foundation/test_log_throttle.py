"""Repeated log lines are throttled; an oversized request header is one warning, not a traceback."""

from __future__ import annotations

import io
import logging
import socket

from server.logs import TextFormatter, Throttle, retry_failed


def test_throttle_bounds_repeats_and_reports_what_it_held_back() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    throttle = Throttle(every_s=0.2, burst=3)
    handler.addFilter(throttle)
    logger = logging.getLogger("liveshop.test.throttle")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(1000):
            try:
                raise ConnectionError(f"refused {i}")
            except ConnectionError:
                retry_failed(logger, "pub/sub read failed; resubscribing")
        logger.warning("another line")
        lines = [line for line in out.getvalue().splitlines() if " warning " in line]
        assert len(lines) == 4  # 3 of the repeated line, 1 of the other
        assert out.getvalue().count("Traceback") == 1  # only the first showing has one
        key = (logger.name, logging.WARNING, "pub/sub read failed; resubscribing: %s")
        throttle.windows[key][0] -= 1  # the window is over (instead of sleeping through it)
        try:
            raise ConnectionError("again")
        except ConnectionError:
            retry_failed(logger, "pub/sub read failed; resubscribing")
        assert "suppressed=997" in out.getvalue().splitlines()[-1]
    finally:
        logger.removeHandler(handler)


def test_oversized_header_is_one_warning_line(server_proc) -> None:
    node = server_proc()
    long_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    long_line = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    for i in range(50):
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
            sock.sendall(long_header if i % 2 else long_line)
            assert sock.recv(100).split(b" ")[1] == b"400"
    log = node.log()
    assert "Traceback" not in log and " error " not in log, log[-2000:]
    warnings = [line for line in log.splitlines() if "bad HTTP request" in line]
    assert 1 <= len(warnings) <= 4, log[-2000:]  # 50 bad requests: throttled to a few lines
    assert "LineTooLong" in warnings[0] and " warning " in warnings[0]
