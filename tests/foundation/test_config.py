"""Settings come from flags over LIVESHOP_* environment over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Settings, parse_settings


def test_defaults() -> None:
    settings = parse_settings([], env={})
    assert (settings.host, settings.port, settings.redis_url, settings.data_dir) == (
        "127.0.0.1",
        8080,
        "",
        Path("./data"),
    )
    assert settings.demo is False


def test_environment_then_flags() -> None:
    env = {
        "LIVESHOP_PORT": "9000",
        "LIVESHOP_DEMO": "true",
        "LIVESHOP_ICE_ADDRESSES": "127.0.0.1, 10.0.0.2",
    }
    settings = parse_settings([], env=env)
    assert settings.port == 9000 and settings.demo is True
    assert settings.ice_addresses == ["127.0.0.1", "10.0.0.2"]
    settings = parse_settings(["--port", "9100", "--no-demo", "--data-dir", "/tmp/x"], env=env)
    assert settings.port == 9100 and settings.demo is False and settings.data_dir == Path("/tmp/x")


def test_bad_flag_value_exits_with_usage() -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--port", "eighty"], env={})
    assert exit_info.value.code == 2


def test_base_url() -> None:
    assert Settings(host="0.0.0.0", port=81).base_url == "http://0.0.0.0:81"
    assert Settings(public_url="https://shop.example/").base_url == "https://shop.example"
