"""``python -m server`` / ``liveshop``: run the whole service until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import socket
import ssl
import sys

from aiohttp import web

from .app import FATAL, create_app
from .auth import new_api_key, parse_api_keys
from .config import Settings, parse_settings
from .demo import ensure_demo
from .errors import ConfigError
from .gc_policy import collector_policy
from .logs import setup_logging

log = logging.getLogger("liveshop")


def prepare(settings: Settings) -> Settings:
    """Make the data dir and load (or create) the token secret kept in it."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data dir {settings.data_dir} is not writable: {exc.strerror}") from None
    if not settings.secret:
        secret_file = settings.data_dir / "secret"
        if not secret_file.exists():
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        settings.secret = secret_file.read_text().strip()
    prepare_api_keys(settings)
    return settings


def prepare_api_keys(settings: Settings) -> None:
    """Check --api-key, or load the data dir's generated key (made and printed once on first start)."""
    if not settings.api_key:
        key_file = settings.data_dir / "api_key"
        if not key_file.exists():
            key = new_api_key()
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(key + "\n")
            print(
                f"\nliveshop generated an operator API key (kept in {key_file}; shown only now):\n"
                f"  {key}\n"
                "  create shows with: Authorization: Bearer <that key>\n",
                flush=True,
            )
        settings.api_key = [line for line in key_file.read_text().split() if line]
    try:
        parse_api_keys(settings.api_key)
    except ValueError as exc:
        raise ConfigError(f"--api-key: {exc}") from None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context from --tls-cert/--tls-key (None: plain HTTP)."""
    if not settings.tls_cert and not settings.tls_key:
        return None
    if not settings.tls_cert or not settings.tls_key:
        raise ConfigError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    return context


def check_port_free(host: str, port: int) -> None:
    """Fail before starting Redis when the port is taken."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _bind_error(exc, host, port) from None


def _bind_error(exc: OSError, host: str, port: int) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"port {port} on {host} is already in use: pick another with --port")
    return ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}")


async def serve(settings: Settings) -> None:
    prepare(settings)
    ssl_context = tls_context(settings)
    if not settings.reuse_port:
        check_port_free(settings.host, settings.port)
    app = create_app(settings)
    fatal = app[FATAL]
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(
            runner,
            settings.host,
            settings.port,
            reuse_port=settings.reuse_port or None,
            ssl_context=ssl_context,
        )
        try:
            await site.start()
        except OSError as exc:
            raise _bind_error(exc, settings.host, settings.port) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        log.info("liveshop listening", extra={"url": settings.base_url, "pid": os.getpid()})
        if settings.demo:
            urls = await ensure_demo(app, fresh=not settings.demo_keep)
            state = (
                "started fresh (chat, sales and giveaways of the last run are gone; "
                "--demo-keep keeps them)"
                if urls["fresh"] == "yes"
                else "kept as the last run left it (--demo-keep)"
            )
            print(
                f"\nliveshop demo is ready, {state}:\n"
                f"  host studio : {urls['host_url']}\n"
                f"  viewer page : {urls['viewer_url']}\n",
                flush=True,
            )
        async with collector_policy(settings.gc_thaw_s):
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(fatal.event.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
        log.info("shutting down")
    finally:
        await runner.cleanup()
    if fatal.reason:
        raise NodeFailed(fatal.reason)


class NodeFailed(Exception):
    """The node cannot go on (its embedded Redis is gone for good): exit 1 to be restarted."""


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    setup_logging(settings.log_json, settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"liveshop: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except NodeFailed as exc:
        log.error("stopped: %s", exc)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    log.info("stopped")


if __name__ == "__main__":
    main()
